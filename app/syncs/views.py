"""``/v1/admin/syncs``: each scheduled sync's schedule, last run, next due time and health;
operators change a tenant's schedule, switch a sync off, or run it now."""

from __future__ import annotations

from app.api import HubBlueprint
from app.auth.principal import current_principal, requires_scopes
from app.canonical.parameters import NoParametersSchema
from app.extensions import resources
from app.syncs import service
from app.syncs.schemas import SyncChangeSchema, SyncListSchema, SyncSchema, SyncTriggeredSchema

blp = HubBlueprint("syncs", __name__, url_prefix="/v1/admin", audit_resource_type="syncs",
                   description="Scheduled syncs (beat): the tenant's own and the hub-wide ones.")


@blp.get("/syncs")
@requires_scopes("admin")
@blp.response(200, SyncListSchema)
@blp.arguments(NoParametersSchema, location="query")
def list_syncs(_query: dict):
    """Every sync of the caller's tenant, and the hub-wide ones, with their status."""
    hub = resources()
    return {"items": service.list_syncs(db_session=hub.database.session, settings=hub.settings,
                                        tenant_id=current_principal().tenant_id)}


@blp.get("/syncs/<sync_id>")
@requires_scopes("admin")
@blp.response(200, SyncSchema)
@blp.alt_response(404, description="No such sync for this tenant.")
@blp.arguments(NoParametersSchema, location="query")
def get_sync(_query: dict, sync_id: str):
    """One sync, with its most recent runs."""
    hub = resources()
    return service.get_sync(db_session=hub.database.session, settings=hub.settings,
                            schedule_id=sync_id, tenant_id=current_principal().tenant_id)


@blp.patch("/syncs/<sync_id>")
@requires_scopes("admin")
@blp.arguments(SyncChangeSchema)
@blp.arguments(NoParametersSchema, location="query")
@blp.response(200, SyncSchema)
@blp.alt_response(403, description="A hub-wide sync (changed with the CLI), or scope admin "
                  "missing.")
@blp.alt_response(404, description="No such sync for this tenant.")
@blp.alt_response(422, description="Invalid schedule; `errors` says why.")
def change_sync(body: dict, _query: dict, sync_id: str):
    """Change the schedule (`null`: back to the default) or switch the sync on or off. Beat
    follows within `HUB_BEAT_MAX_LOOP_INTERVAL` seconds."""
    principal = current_principal()
    changes = {key: body[key] for key in ("schedule", "enabled") if key in body}
    hub = resources()
    return service.update_sync(db_session=hub.database.session, settings=hub.settings,
                               schedule_id=sync_id, tenant_id=principal.tenant_id,
                               actor=f"client:{principal.client_id}", **changes)


@blp.post("/syncs/<sync_id>/run")
@requires_scopes("admin")
@blp.response(202, SyncTriggeredSchema)
@blp.alt_response(403, description="A hub-wide sync, or scope admin missing.")
@blp.alt_response(404, description="No such sync for this tenant.")
@blp.arguments(NoParametersSchema, location="query")
def run_sync(_query: dict, sync_id: str):
    """Run the sync now (skipped and counted if its previous run is still going)."""
    return service.trigger_sync(db_session=resources().database.session, schedule_id=sync_id,
                                tenant_id=current_principal().tenant_id)
