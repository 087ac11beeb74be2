"""The hub's relational store: engine, sessions and the declarative base.

One ``Database`` per process. The Flask app removes its session after each request; Celery
workers dispose the engine after fork (pooled connections must not be shared between processes)
and remove the session after each task.
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

from sqlalchemy import DateTime, MetaData, create_engine, event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, scoped_session, sessionmaker

logger = logging.getLogger(__name__)

# Explicit constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every hub table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: DateTime(timezone=True)}


def utcnow() -> datetime:
    """Return the current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


def new_id() -> uuid.UUID:
    """Return a new random primary key."""
    return uuid.uuid4()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection, _record):  # pragma: no cover - exercised on every connect
        cursor = dbapi_connection.cursor()
        # WAL lets the API read while a worker writes; busy_timeout waits for the writer instead
        # of failing at once; foreign keys are off by default in SQLite.
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def make_engine(database_url: str) -> Engine:
    """Create the engine for ``database_url`` with the hub's pool settings."""
    if database_url.startswith("sqlite"):
        engine = create_engine(database_url, connect_args={"check_same_thread": False})
        _configure_sqlite(engine)
        return engine
    # pre_ping: a PostgreSQL restart must not surface as one failed request per pooled connection.
    return create_engine(database_url, pool_pre_ping=True, pool_size=5, max_overflow=10)


class Database:
    """An engine and a thread-local session factory bound to it."""

    def __init__(self, database_url: str):
        self.engine = make_engine(database_url)
        self.session = scoped_session(sessionmaker(bind=self.engine, expire_on_commit=False))

    def remove_session(self) -> None:
        """End the current thread's session (after a request or a task). A database that went
        away meanwhile must not turn the end of a request into an error page: the session is
        dropped (its connection is invalidated by the pool) and the next one starts fresh."""
        try:
            self.session.remove()
        except SQLAlchemyError:
            logger.warning("session ended with the database unavailable")
            self.session.registry.clear()

    def dispose_after_fork(self) -> None:
        """Drop pooled connections inherited from the parent process."""
        self.engine.dispose(close=False)

    def new_session(self) -> Session:
        """Return a session independent of the thread-local one."""
        return self.session.session_factory()



def alembic_config(database_url: str):
    """Return the Alembic configuration of the hub's migrations, aimed at ``database_url``."""
    from alembic.config import Config

    from app.settings import PROJECT_ROOT

    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    # The hub's own JSON logging is already configured; keep alembic.ini's from replacing it.
    config.attributes["configure_logger"] = False
    return config


def upgrade_schema(database_url: str, revision: str = "head") -> None:
    """Apply the Alembic migrations up to ``revision`` on ``database_url``."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)
