"""How the demo systems use SQLite: one bulk-load connection at seed time, read-only at serve time."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


def open_for_seeding(path: Path) -> sqlite3.Connection:
    """Open a fresh database tuned for one big bulk load in a single transaction.

    No journal and no fsync: a seed that dies half-way is simply re-run into a new file, so
    durability buys nothing here and would cost most of the seeding time.
    """
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("PRAGMA journal_mode=OFF")
    connection.execute("PRAGMA synchronous=OFF")
    connection.execute("PRAGMA locking_mode=EXCLUSIVE")
    connection.execute("PRAGMA temp_store=MEMORY")
    connection.execute("PRAGMA cache_size=-262144")  # 256 MiB, for building indexes after the load
    connection.execute("BEGIN")
    return connection


def run_statements(connection: sqlite3.Connection, script: str) -> None:
    """Run ``;``-separated DDL inside the current transaction.

    ``executescript`` would commit the open transaction first and leave the bulk load running
    in autocommit mode, one fsync-free but still separate transaction per row.
    """
    for statement in script.split(";"):
        if statement.strip():
            connection.execute(statement)


def insert_rows(connection: sqlite3.Connection, table: str, columns: Sequence[str],
                rows: Iterable[Sequence[Any]]) -> None:
    """Insert tuples in ``columns`` order into ``table``."""
    placeholders = ", ".join("?" for _ in columns)
    connection.executemany(
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({placeholders})", rows)


class ReadOnlyDatabase:
    """A seeded database opened read-only, one connection per serving thread.

    gunicorn's gthread workers answer from many threads; SQLite connections must not be shared
    across threads, and a read-only connection per thread needs no locking at all.
    """

    def __init__(self, path: Path):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; run `python -m demo_systems seed` first")
        self.path = path
        self._local = threading.local()

    def _connection(self) -> sqlite3.Connection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True,
                                         check_same_thread=False)
            connection.row_factory = sqlite3.Row
            self._local.connection = connection
        return connection

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Run a query and return every row."""
        return self._connection().execute(sql, params).fetchall()

    def one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        """Run a query and return its first row, if any."""
        return self._connection().execute(sql, params).fetchone()


class RecordingDatabase:
    """The one read-write connection of a serving process, for the records the running world
    adds (new administrations, new movements) and their change feed.

    SQLite serializes writers, and so does the lock here: a change-feed sequence is handed out
    inside the writing transaction, so sequences become visible in the order they were given
    and a reader that saw sequence N has already seen everything below it.
    """

    def __init__(self, path: Path):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist; run `python -m demo_systems seed` first")
        self.path = path
        self._lock = threading.Lock()
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below).
        self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                                           timeout=30)
        self._connection.row_factory = sqlite3.Row

    def prepare(self, script: str) -> None:
        """Run idempotent DDL (``CREATE ... IF NOT EXISTS``) once at start: a world seeded
        before the change feed existed gets its tables on first serve."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                run_statements(self._connection, script)
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise

    def write(self, work):
        """Run ``work(connection)`` in one write transaction and return what it returns."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(self._connection)
                self._connection.execute("COMMIT")
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            return result
