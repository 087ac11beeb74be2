"""``/v1/admin/parallel-runs``: how a lookup's answers compare with the legacy endpoint it
replaces (counts, mismatch rate, the fields that differ), and its sampling switched by the
tenant's admins. The legacy endpoint and its credential are set by the hub's operators (CLI)."""

from __future__ import annotations

from app.api import HubBlueprint
from app.auth.principal import current_principal, requires_scopes
from app.canonical.parameters import NoParametersSchema
from app.extensions import resources
from app.parallel_runs import service
from app.parallel_runs.schemas import (
    ParallelRunChangeSchema,
    ParallelRunListSchema,
    ParallelRunSchema,
)

blp = HubBlueprint("parallel_runs", __name__, url_prefix="/v1/admin",
                   audit_resource_type="parallel_runs",
                   description="Parallel runs: a lookup compared with the legacy link it "
                               "replaces.")


@blp.get("/parallel-runs")
@requires_scopes("admin")
@blp.response(200, ParallelRunListSchema)
@blp.arguments(NoParametersSchema, location="query")
def list_parallel_runs(_query: dict):
    """The tenant's parallel runs with their counts and mismatch rates."""
    return {"items": service.list_parallel_runs(db_session=resources().database.session,
                                                tenant_id=current_principal().tenant_id)}


@blp.get("/parallel-runs/<run_id>")
@requires_scopes("admin")
@blp.response(200, ParallelRunSchema)
@blp.alt_response(404, description="No such parallel run for this tenant.")
@blp.arguments(NoParametersSchema, location="query")
def get_parallel_run(_query: dict, run_id: str):
    """One parallel run's report: counts, mismatch rate, the fields that differ most often and
    the most recent differences (field paths and kinds; values only of non-PHI fields)."""
    return service.get_parallel_run(db_session=resources().database.session, run_id=run_id,
                                    tenant_id=current_principal().tenant_id)


@blp.patch("/parallel-runs/<run_id>")
@requires_scopes("admin")
@blp.arguments(ParallelRunChangeSchema)
@blp.arguments(NoParametersSchema, location="query")
@blp.response(200, ParallelRunSchema)
@blp.alt_response(404, description="No such parallel run for this tenant.")
@blp.alt_response(422, description="Invalid change; `errors` says why.")
def change_parallel_run(body: dict, _query: dict, run_id: str):
    """Change the sampling rate or switch the parallel run on or off."""
    principal = current_principal()
    return service.change_parallel_run(
        db_session=resources().database.session, run_id=run_id, tenant_id=principal.tenant_id,
        actor=f"client:{principal.client_id}", **body)
