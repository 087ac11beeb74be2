"""``/v1/jobs``: submit, poll, list and cancel jobs; ``/v1/dead-letters``: inspect and replay."""

from __future__ import annotations

from datetime import datetime

from flask import url_for

from app.api import HubBlueprint
from app.auth.principal import current_principal, requires_scopes
from app.canonical.parameters import NoParametersSchema
from app.extensions import resources
from app.jobs import service
from app.jobs.schemas import (
    DeadLetterSchema,
    IdempotencyHeaderSchema,
    JobListQuerySchema,
    JobPageSchema,
    JobRequestSchema,
    JobSchema,
)
from app.observability.context import request_id_var
from app.paging import CursorKind, decode_cursor, encode_cursor, invalid_cursor, text

blp = HubBlueprint("jobs", __name__, url_prefix="/v1", audit_resource_type="jobs",
                   description="Asynchronous jobs over the tenant's hospital systems, and the "
                               "dead letters of their failed units.")


def _shown(job) -> dict:
    view = service.job_view(db_session=resources().database.session, job=job)
    view["status_url"] = url_for("jobs.get_job", job_id=view["id"], _external=True)
    return view


# The last job of a page: its creation time (as the database gave it) and its id.
JOBS_CURSOR = CursorKind("jobs", {
    "created": text(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
                    r"([+-][0-9]{2}:[0-9]{2})?$"),
    "job": text(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")})


def _cursor_binding(query: dict) -> dict:
    return {"key": resources().settings.hub_secret_key,
            "tenant_id": current_principal().tenant_id,
            "query": {"status": query.get("status"), "type": query.get("type")}}


def _encode(job, query: dict) -> str:
    return encode_cursor(JOBS_CURSOR, {"created": job.created_at.isoformat(),
                                       "job": str(job.id)}, **_cursor_binding(query))


def _decode(cursor: str, query: dict) -> tuple[datetime, str]:
    position = decode_cursor(JOBS_CURSOR, cursor, **_cursor_binding(query))
    try:
        return datetime.fromisoformat(position["created"]), position["job"]
    except ValueError:
        raise invalid_cursor() from None


@blp.post("/jobs")
@requires_scopes("jobs:write")
@blp.arguments(IdempotencyHeaderSchema, location="headers")
@blp.arguments(JobRequestSchema)
@blp.arguments(NoParametersSchema, location="query")
@blp.response(202, JobSchema, description="Accepted: the job is stored and will run (sent to "
              "the workers now, or by the outbox dispatcher if the broker is down); poll "
              "`status_url`. The same Idempotency-Key with the same body answers the same job "
              "(200).",
              headers={"Location": {"description": "The job's status URL.", "required": True,
                                    "schema": {"type": "string", "format": "uri-reference"}}})
@blp.alt_response(200, schema=JobSchema, description="The job this Idempotency-Key made.")
@blp.alt_response(409, description="The Idempotency-Key was used with a different body.")
@blp.alt_response(422, description="Invalid type or params (window over 31 days, unknown "
                  "units…); `errors` names each field.")
@blp.alt_response(403, description="Scope jobs:write missing, or the tenant does not own "
                  "every product the job reads.")
@blp.alt_response(429, description="This client already has `HUB_MAX_ACTIVE_JOBS_PER_CLIENT` "
                  "jobs queued or running; `Retry-After` says when to try again.")
@blp.alt_response(503, description="The hub's database is unavailable: nothing was stored; "
                  "submit again with the same Idempotency-Key after `Retry-After` seconds.")
def submit_job(headers: dict, body: dict, _query: dict):
    """Submit a job (`administration_counts` or `dose_reconciliation`) over a time window."""
    principal = current_principal()
    hub = resources()
    submission = service.submit_and_dispatch(
        db_session=hub.database.session, redis_client=hub.redis, settings=hub.settings,
        tenant_id=principal.tenant_id, client_id=principal.client_id, job_type=body["type"],
        raw_params=body["params"], idempotency_key=headers["idempotency_key"],
        request_id=request_id_var.get())
    shown = _shown(submission.job)
    return shown, (202 if submission.created else 200), {"Location": shown["status_url"]}


@blp.get("/jobs/<string:job_id>")
@requires_scopes("jobs:read")
@blp.response(200, JobSchema)
@blp.alt_response(404, description="No such job for this tenant.")
@blp.arguments(NoParametersSchema, location="query")
def get_job(_query: dict, job_id: str):
    """A job's status, progress (units done / total), timestamps, PHI-free error, and its
    de-identified result once succeeded."""
    job = service.get_job(db_session=resources().database.session,
                          tenant_id=current_principal().tenant_id, job_id=job_id)
    return _shown(job)


@blp.get("/jobs")
@requires_scopes("jobs:read")
@blp.arguments(JobListQuerySchema, location="query")
@blp.response(200, JobPageSchema)
def list_jobs(query: dict):
    """The tenant's jobs, newest first, by status and type."""
    jobs, more = service.list_jobs(
        db_session=resources().database.session, tenant_id=current_principal().tenant_id,
        status=query.get("status"), job_type=query.get("type"),
        after=_decode(query["cursor"], query) if query.get("cursor") else None,
        page_size=query["page_size"])
    return {"items": [_shown(job) for job in jobs],
            "next_cursor": _encode(jobs[-1], query) if more else None}


@blp.delete("/jobs/<string:job_id>")
@requires_scopes("jobs:write")
@blp.response(200, JobSchema, description="The cancelled job.")
@blp.alt_response(404, description="No such job for this tenant.")
@blp.alt_response(409, description="The job has already finished.")
@blp.arguments(NoParametersSchema, location="query")
def cancel_job(_query: dict, job_id: str):
    """Cancel a queued or running job: units not started are revoked."""
    session = resources().database.session
    job = service.get_job(db_session=session, tenant_id=current_principal().tenant_id,
                          job_id=job_id)
    service.cancel_job(db_session=session, job=job)
    return _shown(job)


@blp.get("/dead-letters")
@blp.audits("dead_letters")
@requires_scopes("admin")
@blp.response(200, DeadLetterSchema(many=True))
@blp.arguments(NoParametersSchema, location="query")
def list_dead_letters(_query: dict):
    """The tenant's open dead letters: units that exhausted their retries."""
    return service.list_dead_letters(db_session=resources().database.session,
                                     tenant_id=current_principal().tenant_id)


@blp.post("/dead-letters/<string:dead_letter_id>/replay")
@blp.audits("dead_letters")
@requires_scopes("admin")
@blp.response(202, DeadLetterSchema)
@blp.alt_response(404, description="No such dead letter for this tenant.")
@blp.alt_response(403, description="The tenant is no longer entitled to a product the job "
                  "reads, or the job's client was disabled.")
@blp.alt_response(409, description="Already replayed, or its job was cancelled.")
@blp.arguments(NoParametersSchema, location="query")
def replay_dead_letter(_query: dict, dead_letter_id: str):
    """Run the dead-lettered unit again; the job finishes once its last unit succeeds."""
    hub = resources()
    return service.replay_dead_letter(db_session=hub.database.session, settings=hub.settings,
                                      tenant_id=current_principal().tenant_id,
                                      dead_letter_id=dead_letter_id)
