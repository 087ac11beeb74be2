"""``/v1/jobs``: submit, poll, list and cancel jobs; ``/v1/dead-letters``: inspect and replay."""

from __future__ import annotations

from datetime import datetime

from flask import url_for

from app.api import HubBlueprint
from app.auth.principal import current_principal, requires_scopes
from app.extensions import resources
from app.jobs import dispatch, service
from app.jobs.schemas import (
    DeadLetterSchema,
    IdempotencyHeaderSchema,
    JobListQuerySchema,
    JobPageSchema,
    JobRequestSchema,
    JobSchema,
)
from app.observability.context import request_id_var
from app.paging import InvalidCursor, decode_cursor, encode_cursor

blp = HubBlueprint("jobs", __name__, url_prefix="/v1", audit_resource_type="jobs",
                   description="Asynchronous jobs over the tenant's hospital systems, and the "
                               "dead letters of their failed units.")


def _shown(job) -> dict:
    view = service.job_view(db_session=resources().database.session, job=job)
    view["status_url"] = url_for("jobs.get_job", job_id=view["id"], _external=True)
    return view


def _encode(job) -> str:
    return encode_cursor({"created": job.created_at.isoformat(), "job": str(job.id)})


def _decode(cursor: str) -> tuple[datetime, str]:
    try:
        position = decode_cursor(cursor, expected_keys={"created", "job"})
        return datetime.fromisoformat(position["created"]), str(position["job"])
    except (InvalidCursor, ValueError, TypeError):
        raise service.JobProblem(422, "The request has invalid fields; see errors.",
                                 errors={"query": {"cursor": ["not a cursor from this API"]}}
                                 ) from None


@blp.post("/jobs")
@requires_scopes("jobs:write")
@blp.arguments(IdempotencyHeaderSchema, location="headers")
@blp.arguments(JobRequestSchema)
@blp.response(202, JobSchema, description="Accepted: poll `status_url`. The same "
              "Idempotency-Key with the same body answers the same job (200).",
              headers={"Location": {"description": "The job's status URL.", "required": True,
                                    "schema": {"type": "string", "format": "uri-reference"}}})
@blp.alt_response(200, schema=JobSchema, description="The job this Idempotency-Key made.")
@blp.alt_response(409, description="The Idempotency-Key was used with a different body.")
@blp.alt_response(422, description="Invalid type or params (window over 31 days, unknown "
                  "units…); `errors` names each field.")
@blp.alt_response(403, description="Scope jobs:write missing, or the tenant does not own "
                  "every product the job reads.")
def submit_job(headers: dict, body: dict):
    """Submit a job (`administration_counts` or `dose_reconciliation`) over a time window."""
    principal = current_principal()
    hub = resources()
    submission = service.submit_job(
        db_session=hub.database.session, redis_client=hub.redis, settings=hub.settings,
        tenant_id=principal.tenant_id, client_pk=None, job_type=body["type"], raw_params=body["params"],
        idempotency_key=headers["idempotency_key"], request_id=request_id_var.get())
    if submission.created:
        dispatch.submit_job_pipeline(job_id=str(submission.job.id),
                                     tenant_id=principal.tenant_id)
    shown = _shown(submission.job)
    return shown, (202 if submission.created else 200), {"Location": shown["status_url"]}


@blp.get("/jobs/<string:job_id>")
@requires_scopes("jobs:read")
@blp.response(200, JobSchema)
@blp.alt_response(404, description="No such job for this tenant.")
def get_job(job_id: str):
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
        after=_decode(query["cursor"]) if query.get("cursor") else None,
        page_size=query["page_size"])
    return {"items": [_shown(job) for job in jobs],
            "next_cursor": _encode(jobs[-1]) if more else None}


@blp.delete("/jobs/<string:job_id>")
@requires_scopes("jobs:write")
@blp.response(200, JobSchema, description="The cancelled job.")
@blp.alt_response(404, description="No such job for this tenant.")
@blp.alt_response(409, description="The job has already finished.")
def cancel_job(job_id: str):
    """Cancel a queued or running job: units not started are revoked."""
    session = resources().database.session
    job = service.get_job(db_session=session, tenant_id=current_principal().tenant_id,
                          job_id=job_id)
    dispatch.revoke_unit_tasks(service.cancel_job(db_session=session, job=job))
    return _shown(job)


@blp.get("/dead-letters")
@blp.audits("dead_letters")
@requires_scopes("admin")
@blp.response(200, DeadLetterSchema(many=True))
def list_dead_letters():
    """The tenant's open dead letters: units that exhausted their retries."""
    return service.list_dead_letters(db_session=resources().database.session,
                                     tenant_id=current_principal().tenant_id)


@blp.post("/dead-letters/<string:dead_letter_id>/replay")
@blp.audits("dead_letters")
@requires_scopes("admin")
@blp.response(202, DeadLetterSchema)
@blp.alt_response(404, description="No such dead letter for this tenant.")
@blp.alt_response(409, description="Already replayed, or its job was cancelled.")
def replay_dead_letter(dead_letter_id: str):
    """Run the dead-lettered unit again; the job finishes once its last unit succeeds."""
    letter = service.prepare_replay(db_session=resources().database.session,
                                    tenant_id=current_principal().tenant_id,
                                    dead_letter_id=dead_letter_id)
    dispatch.replay_unit(job_id=str(letter.job_id), tenant_id=str(letter.tenant_id),
                         unit=letter.unit)
    return letter
