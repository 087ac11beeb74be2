"""Tables of jobs, job results and dead letters. None of them holds PHI."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.database import Base, new_id, utcnow


class Job(Base):
    """A tenant's request for heavy work, tracked from queued to a final status."""

    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("tenant_id", "idempotency_key"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"),
                                                 index=True)
    client_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("clients.id",
                                                                   ondelete="SET NULL"))
    type: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    # Hash of the request body, so a reused key with a different body is told apart (409).
    request_hash: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    units_total: Mapped[int] = mapped_column(Integer, default=0)
    units_done: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    expires_at: Mapped[datetime | None] = mapped_column(index=True)


class JobResult(Base):
    """The de-identified result of a finished job (checked PHI-free before it is stored)."""

    __tablename__ = "job_results"

    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                              primary_key=True)
    result: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(index=True)


class DeadLetter(Base):
    """Work that exhausted its retries, kept for operators to inspect and replay."""

    __tablename__ = "dead_letters"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    task_name: Mapped[str] = mapped_column(String(200))
    tenant_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("tenants.id",
                                                                   ondelete="CASCADE"), index=True)
    job_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    unit: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The exception's class and a PHI-free message; never the raw downstream payload.
    error: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    replayed_at: Mapped[datetime | None] = mapped_column()


class JobUnit(Base):
    """One hospital unit's share of a job: its state, attempts and de-identified partial.

    Unit tasks upsert their partial here (so a redelivered task overwrites rather than adds),
    and the merge reads partials from here, not from Celery's result backend.
    """

    __tablename__ = "job_units"
    __table_args__ = (UniqueConstraint("job_id", "unit"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                              index=True)
    unit: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # none_as_null: "no partial" is SQL NULL, not the JSON text null, so it can be queried.
    partial: Mapped[dict | None] = mapped_column(JSON(none_as_null=True))
    task_id: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class OutboxMessage(Base):
    """A task the hub has promised to send (the transactional outbox): written in the same
    transaction as the job (or replayed unit) it starts, marked sent once the broker took it.

    Ids only (job id, unit code, task name) and an exception class name: never PHI."""

    __tablename__ = "job_outbox"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=new_id)
    task_name: Mapped[str] = mapped_column(String(200))
    job_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"),
                                              index=True)
    unit: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # NULL until the broker acknowledged the message: what the dispatcher looks for.
    sent_at: Mapped[datetime | None] = mapped_column(index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # The broker error's class name only (its message may carry a URL with a password).
    last_error: Mapped[str | None] = mapped_column(String(200))
