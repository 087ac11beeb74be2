"""``/v1/admin/connections``: the caller's tenant's systems, the connector that talks to each,
what the connector offers, and (on request) whether each system answers."""

from __future__ import annotations

from app.api import HubBlueprint
from app.auth.principal import current_principal, requires_scopes
from app.connectors.routing import connection_overview
from app.extensions import resources
from app.tenants.schemas import ConnectionListSchema, ConnectionsQuerySchema

blp = HubBlueprint("connections", __name__, url_prefix="/v1/admin",
                   audit_resource_type="connections",
                   description="The tenant's connections to its hospital systems.")


@blp.get("/connections")
@requires_scopes("admin")
@blp.arguments(ConnectionsQuerySchema, location="query")
@blp.response(200, ConnectionListSchema)
def list_connections(query: dict):
    """Each of the tenant's active connections with its connector; `check=true` also runs
    the connectors' health checks."""
    hub = resources()
    return {"items": connection_overview(db_session=hub.database.session, settings=hub.settings,
                                         tenant_id=current_principal().tenant_id,
                                         check=query["check"])}
