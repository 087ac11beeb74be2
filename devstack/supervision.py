"""Supervision of the local stack: supervisord runs every Procfile process and restarts the
one that dies, while the others keep running.

The Procfile stays the one list of commands; this module turns it into a supervisord
configuration (``supervisord_config``) and follows the processes' log files into one console
stream whose lines carry the process name (``console``), as honcho's did.

Why supervisord (supervisor 4.3): it restarts a process that dies (``autorestart``), backs off a
process that keeps dying at start (1 s, 2 s, 3 s … then gives up: ``FATAL``), stops groups of
processes one after the other in priority order with a per-process grace period before SIGKILL,
and has a status command (``supervisorctl``). It cannot prefix the lines of several processes
into one stream: it writes each process's output to its own file, and ``console`` below does
the prefixing.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# Seconds a process must stay up to count as started. One that exits sooner is backed off
# (1 s, 2 s, 3 s … longer each time) and, after START_RETRIES such failures in a row, left
# stopped (FATAL) with a "gave up" line: a broken command never spins in a restart loop. A
# process that dies after it had started is restarted at once.
START_SECONDS = 5
START_RETRIES = 5


@dataclass(frozen=True)
class Tier:
    """Processes started and stopped together. Tiers stop from the highest priority down, each
    only after the one before has stopped, and start the other way round."""

    name: str
    priority: int
    processes: tuple[str, ...]


# The API, the MLLP listener and everything facing clients stop first (no new work comes in),
# then the workers and beat (warm shutdown, beat releases its lock), then the demo systems, and
# Redis last: the workers still need it while they finish.
TIERS = (
    Tier("datastore", 100, ("redis",)),
    Tier("demo", 200, ("inventory", "administration", "subscriber")),
    Tier("workers", 300, ("worker_io", "worker_compute", "beat")),
    Tier("edge", 400, ("api", "hl7", "pharmacy", "flower", "ready")),
)

# Seconds between SIGTERM and SIGKILL. gunicorn drains for its graceful_timeout (10 s,
# gunicorn.conf.py); a Celery worker's warm shutdown finishes its current tasks, then waits up to
# worker_soft_shutdown_timeout (celeryconfig.py) before re-queueing what is left.
STOP_WAIT_SECONDS = {"api": 15, "hl7": 15, "worker_io": 60, "worker_compute": 60, "beat": 15}
DEFAULT_STOP_WAIT_SECONDS = 10

# Processes that run once and end: never restarted.
RUN_ONCE = {"ready"}

CONSOLE = "console"
SUPERVISOR_LOG_NAME = "supervisor"


def read_procfile(path: Path) -> dict[str, str]:
    """The ``{process: command}`` entries of a Procfile (comments and blank lines skipped)."""
    entries = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if match and not line.startswith("#"):
            entries[match.group(1)] = match.group(2).strip()
    return entries


def supervisor_dir(data_dir: Path) -> Path:
    """The folder of supervisord's configuration, socket and pid file."""
    return data_dir / "supervisor"


def config_path(data_dir: Path) -> Path:
    return supervisor_dir(data_dir) / "supervisord.conf"


def log_dir(data_dir: Path) -> Path:
    """The folder of each process's log file (``<process>.log``) and supervisord's own."""
    return data_dir / "log"


def _escaped(value: str) -> str:
    # supervisord expands %(name)s in its configuration values: a literal % is written %%.
    return value.replace("%", "%%")


def supervisord_config(*, procfile: dict[str, str], processes: list[str], data_dir: Path,
                       working_dir: Path, python: str, start_retries: int = START_RETRIES,
                       start_seconds: int = START_SECONDS) -> str:
    """The supervisord configuration that runs ``processes`` (Procfile names, each command run
    by ``/bin/sh -c`` so that the Procfile's ``$VARIABLES`` expand and its ``exec`` keeps one
    pid) plus the console that prints their logs."""
    logs = log_dir(data_dir)
    directory = supervisor_dir(data_dir)
    # The control socket is owner-only; a password generated per run (this file is 0600)
    # keeps supervisord from warning that its socket has no authentication.
    password = secrets.token_urlsafe(24)
    sections = [
        "[supervisord]",
        "nodaemon=true",
        # Its own lines go to a file that the console prints, prefixed like every process's.
        "silent=true",
        f"logfile={_escaped(str(logs / (SUPERVISOR_LOG_NAME + '.log')))}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        f"pidfile={_escaped(str(directory / 'supervisord.pid'))}",
        f"directory={_escaped(str(working_dir))}",
        "",
        "[unix_http_server]",
        f"file={_escaped(str(directory / 'supervisord.sock'))}",
        "chmod=0700",
        "username=devstack",
        f"password={password}",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{_escaped(str(directory / 'supervisord.sock'))}",
        "username=devstack",
        f"password={password}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
        # Started first and stopped last, so it prints every other process's last lines.
        f"[program:{CONSOLE}]",
        # Run as this module (stdlib only): it starts in a moment, before the first lines.
        f"command={_escaped(shlex.join([python, '-m', 'devstack.supervision', 'console', str(logs)]))}",
        "priority=1",
        "autorestart=true",
        "startsecs=1",
        "stopsignal=TERM",
        "stopwaitsecs=5",
        "stdout_logfile=/dev/stdout",
        "stdout_logfile_maxbytes=0",
        "redirect_stderr=true",
        "",
    ]
    for tier in TIERS:
        members = [name for name in tier.processes if name in processes]
        if not members:
            continue
        sections += [f"[group:{tier.name}]", f"programs={','.join(members)}",
                     f"priority={tier.priority}", ""]
        for name in members:
            run_once = name in RUN_ONCE
            sections += [
                f"[program:{name}]",
                f"command={_escaped(shlex.join(['/bin/sh', '-c', procfile[name]]))}",
                "autostart=true",
                f"autorestart={'false' if run_once else 'true'}",
                f"startsecs={0 if run_once else start_seconds}",
                f"startretries={start_retries}",
                # SIGTERM to the process itself (gunicorn's master, Celery's parent): it stops
                # its own children gracefully. SIGKILL after the grace period reaches them all.
                "stopsignal=TERM",
                f"stopwaitsecs={STOP_WAIT_SECONDS.get(name, DEFAULT_STOP_WAIT_SECONDS)}",
                "killasgroup=true",
                f"stdout_logfile={_escaped(str(logs / f'{name}.log'))}",
                "stdout_logfile_maxbytes=10MB",
                "stdout_logfile_backups=2",
                "redirect_stderr=true",
                "",
            ]
    unknown = sorted(set(processes) - {name for tier in TIERS for name in tier.processes})
    if unknown:
        raise ValueError(f"processes without a tier in devstack.supervision.TIERS: {unknown}")
    return "\n".join(sections)


def write_config(*, procfile_path: Path, processes: list[str], data_dir: Path,
                 working_dir: Path, python: str) -> Path:
    """Write the configuration (owner-only: it holds the control password); start each run
    with fresh log files (the previous run's are kept as ``<process>.log.previous``)."""
    directory = supervisor_dir(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    logs = log_dir(data_dir)
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.replace(old.with_suffix(".log.previous"))
    (logs / ".console-started").unlink(missing_ok=True)
    path = config_path(data_dir)
    text = supervisord_config(procfile=read_procfile(procfile_path), processes=processes,
                              data_dir=data_dir, working_dir=working_dir, python=python)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as config:
        config.write(text)
    path.chmod(0o600)
    return path


class _FollowedLog:
    """One log file read as it grows, across supervisord's rotations."""

    def __init__(self, path: Path, *, from_end: bool) -> None:
        self.path = path
        self.name = path.stem
        self.file = open(path, "rb")  # held open while followed
        self.inode = os.fstat(self.file.fileno()).st_ino
        self.partial = b""
        if from_end:
            self.file.seek(0, os.SEEK_END)

    def read_lines(self) -> list[str]:
        chunk = self.file.read()
        try:
            current = os.stat(self.path)
        except FileNotFoundError:
            current = None
        if current is not None and (current.st_ino != self.inode
                                    or current.st_size < self.file.tell()):
            # Rotated (renamed to .1, a new file begun) or truncated: finish the old file, then
            # read the new one from its start.
            chunk += self.file.read()
            self.file.close()
            self.file = open(self.path, "rb")
            self.inode = os.fstat(self.file.fileno()).st_ino
            chunk += self.file.read()
        data = self.partial + chunk
        *lines, self.partial = data.split(b"\n")
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]

    def flush(self) -> list[str]:
        rest, self.partial = self.partial, b""
        return [rest.decode("utf-8", errors="replace")] if rest else []


def console(logs: Path, *, poll_seconds: float = 0.2) -> None:
    """Print every line of the processes' log files (and supervisord's own) to stdout as
    ``HH:MM:SS <process> | <line>``, until SIGTERM; then print what is left and end.

    Hand-written because supervisord writes each process's output to its own file and has no
    combined, name-prefixed stream (its PROCESS_LOG events drop lines when a listener falls
    behind; following files loses none)."""
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # supervisord stops the console last
    # A console restarted by supervisord goes on from where the files end now, rather than
    # printing the whole run again.
    marker = logs / ".console-started"
    restarted = marker.exists()
    marker.touch()
    followed: dict[Path, _FollowedLog] = {}
    width = 14
    while True:
        last_round = bool(stopping)
        for path in sorted(logs.glob("*.log")):
            if path not in followed:
                followed[path] = _FollowedLog(path, from_end=restarted)
        lines = []
        for log in followed.values():
            lines += [(log.name, line) for line in log.read_lines()]
            if last_round:
                lines += [(log.name, line) for line in log.flush()]
        if lines:
            stamp = time.strftime("%H:%M:%S")
            sys.stdout.write("".join(f"{stamp} {name:<{width}} | {line}\n"
                                     for name, line in lines))
            sys.stdout.flush()
        if last_round:
            return
        # Files that appear later belong to processes started since: read from their start.
        restarted = False
        time.sleep(poll_seconds)


if __name__ == "__main__":
    if sys.argv[1:2] != ["console"] or len(sys.argv) != 3:
        raise SystemExit("usage: python -m devstack.supervision console LOG_DIR")
    console(Path(sys.argv[2]))
