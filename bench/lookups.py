"""Time the hub's lookup API under load on loopback (prints figures and ratios, asserts nothing).

    .venv/bin/python bench/lookups.py [--duration 6] [--connections 32] [--latency-ms 50]

Starts everything in a temporary folder on free ports: an embedded Redis (or ``REDIS_URL``),
SQLite (or ``DATABASE_URL``; a PostgreSQL server gets a throwaway database), both demo systems
seeded small, the migrated hub database with the demo tenants onboarded, and the hub's API
under gunicorn (``python -m gunicorn -c gunicorn.conf.py wsgi:app``, worker class and counts
overridden on the command line). Then, with a bounded, self-stopping load generator (one
Python asyncio process, N keep-alive connections, fixed duration per scenario):

  1. baseline   GET /healthz (a bare Flask endpoint)
  2. cached     GET /v1/administrations?unit=ICU-3&page_size=20 with a bearer token, X-Cache HIT
  3. miss       the same lookup with a unique ``since`` per request (every request a cache
                miss) while System B answers 50 ms late: gthread 2x8 (the project's default)
                against sync 5, and the sync cap workers / latency

Every process (by process group) and the temporary folder are removed at the end, also on
Ctrl-C or error. The load generator shares the machine's cores with the server: the figures
are what this machine does with both on it, not the server's ceiling.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import functools
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

import requests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT))

CLIENT_ID = "north-general-inventory"
LOOKUP_PATH = "/v1/administrations?unit=ICU-3&page_size=20"
# Administrations of the demo world fall in the 14 days before 2026-11-20T00:00Z; a unique
# ``since`` inside that window makes every request a distinct cache key with a full page.
MISS_SINCE_BASE = datetime(2026, 11, 6, tzinfo=UTC)
# The project's worker class (gthread that answers gunicorn's own errors as problem+json).
GTHREAD = ("gthread 2x8", ["--worker-class", "app.edge.server.ProblemThreadWorker", "--workers",
                           "2", "--threads", "8"], 16)
# --threads 1 matters: gunicorn.conf.py sets threads=8, and gunicorn silently turns "sync" with
# more than one thread into gthread.
SYNC = ("sync 5", ["--worker-class", "sync", "--workers", "5", "--threads", "1"], 5)
REQUEST_TIMEOUT_SECONDS = 10.0
START_TIMEOUT_SECONDS = 45.0


def say(message: str) -> None:
    print(f"[bench] {message}", flush=True)


# --------------------------------------------------------------------------------------------
# Processes: own process group each, stopped as a group; they also die if this process dies.
# --------------------------------------------------------------------------------------------

def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class Managed:
    """A child process in its own process group, with its log file."""

    name: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, characters: int = 3000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-characters:]
        except OSError:
            return ""

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        # Workers left behind by a master that died first.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)


def spawn(name: str, command: list[str], *, env: dict[str, str], log_dir: Path) -> Managed:
    log_path = log_dir / f"{name}.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True, preexec_fn=_die_with_parent)
    return Managed(name, process, log_path)


def wait_healthy(managed: Managed, url: str, timeout: float = START_TIMEOUT_SECONDS) -> bool:
    """Poll ``url`` until it answers 200; False if the process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if managed.process.poll() is not None:
            return False
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return True
        time.sleep(0.05)
    raise RuntimeError(f"{managed.name} did not answer {url} within {timeout:.0f}s; log:\n"
                       f"{managed.log_tail()}")


def start_until_healthy(name: str, build: Callable[[int], list[str]], health_path: str, *,
                        env: dict[str, str], log_dir: Path) -> tuple[Managed, int]:
    """Start a server on a free port (a few tries: another process may take the port)."""
    for attempt in range(3):
        port = free_port()
        managed = spawn(f"{name}-{attempt}", build(port), env=env, log_dir=log_dir)
        if wait_healthy(managed, f"http://127.0.0.1:{port}{health_path}"):
            return managed, port
        managed.stop()
    raise RuntimeError(f"{name} exited at start; log:\n{managed.log_tail()}")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (/proc/stat; 0 where there is none)."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return 0.0
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest time is already counted in user time
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pgids: dict[str, int]) -> dict[str, float]:
    """User+system CPU seconds of every live process in each process group (Linux /proc)."""
    totals = dict.fromkeys(pgids, 0.0)
    by_pgid = {pgid: name for name, pgid in pgids.items()}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields_ = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        name = by_pgid.get(int(fields_[2]))
        if name:
            totals[name] += (int(fields_[11]) + int(fields_[12])) / tick
    return totals


# --------------------------------------------------------------------------------------------
# The load generator: one asyncio event loop, N connections, raw HTTP/1.1 with keep-alive.
# --------------------------------------------------------------------------------------------

def _parse_head(head: bytes) -> tuple[int, int, bool, str | None]:
    lines = head.split(b"\r\n")
    version, status = lines[0].split(b" ", 2)[:2]
    length, close, cache = 0, version == b"HTTP/1.0", None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            close = value.strip().lower() == b"close"
        elif name == b"x-cache":
            cache = value.strip().decode()
        elif name == b"transfer-encoding":
            raise ValueError("chunked answers are not supported by this load generator")
    return int(status), length, close, cache


class _Client(asyncio.Protocol):
    """One connection; sends the next request as soon as the answer to the last one is in."""

    def __init__(self, run: _LoadRun, first_start: float):
        self.run = run
        self.first_start: float | None = first_start
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.head: tuple[int, int, bool, str | None, int] | None = None
        self.sent_at: float | None = None
        self.retired = False

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.run.clients.add(self)
        start, self.first_start = self.first_start, None
        self.run.issue(self, start)

    def data_received(self, data: bytes) -> None:
        if self.retired or self.sent_at is None:
            return
        buffer = self.buffer
        buffer += data
        if self.head is None:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            try:
                self.head = (*_parse_head(bytes(buffer[:end])), end + 4)
            except ValueError as error:
                self.run.errors[f"unreadable answer: {error}"] += 1
                self.sent_at = None
                self.retire(abort=True)
                self.run.replace(time.perf_counter())
                return
        status, length, close, cache, body_start = self.head
        if len(buffer) < body_start + length:
            return
        del buffer[:body_start + length]
        self.head = None
        now = time.perf_counter()
        sent_at, self.sent_at = self.sent_at, None
        self.run.record(now - sent_at, status, cache, now)
        if close:
            self.retire()
            self.run.replace(now)
        else:
            self.run.issue(self, now)

    def connection_lost(self, exc) -> None:
        self.run.clients.discard(self)
        if self.retired:
            return
        self.retired = True
        if self.sent_at is not None:
            self.sent_at = None
            self.run.errors["connection lost mid-request"] += 1
        self.run.replace(time.perf_counter())

    def retire(self, *, abort: bool = False) -> None:
        self.retired = True
        if self.transport is not None:
            (self.transport.abort if abort else self.transport.close)()


@dataclass
class LoadResult:
    seconds: float
    in_window: int
    latencies: list[float]
    errors: Counter
    statuses: Counter
    cache: Counter
    client_cpu: float

    @property
    def rate(self) -> float:
        return self.in_window / self.seconds

    def percentile(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))] * 1000

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class _LoadRun:
    def __init__(self, *, port: int, make_request: Callable[[], bytes], connections: int,
                 duration: float):
        self.loop = asyncio.get_running_loop()
        self.port = port
        self.make_request = make_request
        self.connections = connections
        self.duration = duration
        self.clients: set[_Client] = set()
        self.tasks: set[asyncio.Task] = set()
        self.live = connections
        self.finished = self.loop.create_future()
        self.latencies: list[float] = []
        self.errors: Counter = Counter()
        self.statuses: Counter = Counter()
        self.cache: Counter = Counter()
        self.in_window = 0
        self.started = self.deadline = 0.0

    @property
    def active(self) -> bool:
        return time.perf_counter() < self.deadline

    def _retire_slot(self) -> None:
        self.live -= 1
        if self.live == 0 and not self.finished.done():
            self.finished.set_result(None)

    def issue(self, client: _Client, start: float) -> None:
        if not self.active:
            client.retire()
            self._retire_slot()
            return
        client.sent_at = start
        client.transport.write(self.make_request())

    def replace(self, start: float) -> None:
        """Open a new connection for a slot whose connection closed; its next request's latency
        counts from ``start`` (connect time included, as a real client would see it)."""
        if not self.active:
            self._retire_slot()
            return
        task = self.loop.create_task(self._open(start))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _open(self, start: float) -> None:
        while True:
            try:
                await self.loop.create_connection(functools.partial(_Client, self, start),
                                                  "127.0.0.1", self.port)
                return
            except OSError as error:
                self.errors[f"connect: {type(error).__name__}"] += 1
                if not self.active:
                    self._retire_slot()
                    return
                await asyncio.sleep(0.01)
                start = time.perf_counter()

    def record(self, latency: float, status: int, cache: str | None, now: float) -> None:
        self.latencies.append(latency)
        self.statuses[status] += 1
        if cache:
            self.cache[cache] += 1
        if status >= 400:
            self.errors[f"HTTP {status}"] += 1
        elif now <= self.deadline:
            self.in_window += 1

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.perf_counter()
            for client in list(self.clients):
                if client.sent_at is not None and now - client.sent_at > REQUEST_TIMEOUT_SECONDS:
                    client.sent_at = None
                    self.errors["timeout"] += 1
                    client.retire(abort=True)
                    self.replace(now)

    async def run(self) -> LoadResult:
        cpu_before = time.process_time()
        self.started = time.perf_counter()
        self.deadline = self.started + self.duration
        for _ in range(self.connections):
            self.replace(self.started)
        watchdog = self.loop.create_task(self._watchdog())
        try:
            await asyncio.wait_for(asyncio.shield(self.finished),
                                   self.duration + REQUEST_TIMEOUT_SECONDS + 2)
        except TimeoutError:
            self.errors["unfinished at the end"] += sum(c.sent_at is not None for c in self.clients)
        finally:
            watchdog.cancel()
            for client in list(self.clients):
                client.retire(abort=True)
            for task in list(self.tasks):
                task.cancel()
            await asyncio.sleep(0)
        wall = time.perf_counter() - self.started
        return LoadResult(seconds=self.duration, in_window=self.in_window,
                          latencies=self.latencies, errors=self.errors, statuses=self.statuses,
                          cache=self.cache, client_cpu=(time.process_time() - cpu_before) / wall)


def generate_load(*, port: int, make_request: Callable[[], bytes], connections: int,
                  duration: float) -> LoadResult:
    async def main() -> LoadResult:
        return await _LoadRun(port=port, make_request=make_request, connections=connections,
                              duration=duration).run()

    return asyncio.run(main())


# --------------------------------------------------------------------------------------------
# The stack under test.
# --------------------------------------------------------------------------------------------

@dataclass
class Stack:
    scratch: Path
    log_dir: Path
    env: dict[str, str]
    processes: list[Managed] = field(default_factory=list)
    redis_pid: int | None = None
    admin_url: str = ""
    admin_token: str = ""
    admin_pgid: int | None = None
    drop_database: Callable[[], None] | None = None
    notes: list[str] = field(default_factory=list)

    def stop_all(self) -> None:
        for managed in reversed(self.processes):
            try:
                managed.stop()
            except Exception as error:  # keep stopping the others
                say(f"could not stop {managed.name}: {error}")
        self.processes.clear()
        if self.drop_database:
            try:
                self.drop_database()
            except Exception as error:
                say(f"could not drop the benchmark database: {type(error).__name__}")
            self.drop_database = None


def _prepare_redis(stack: Stack) -> str:
    import redis

    configured = os.environ.get("REDIS_URL")
    if configured:
        redis.Redis.from_url(configured, socket_connect_timeout=2).ping()
        stack.notes.append("redis: REDIS_URL (not flushed; the benchmark's keys expire within "
                           "~90 s)")
        return configured
    from devstack.embedded_redis import redis_server_command

    password = secrets.token_urlsafe(24)
    for attempt in range(3):
        port = free_port()
        command = redis_server_command(port=port, data_dir=stack.scratch / "redis", persist=False,
                                       password=password)
        managed = spawn(f"redis-{attempt}", command, env=dict(os.environ), log_dir=stack.log_dir)
        stack.processes.append(managed)
        url = f"redis://:{password}@127.0.0.1:{port}/0"
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and managed.process.poll() is None:
            with contextlib.suppress(redis.RedisError):
                client = redis.Redis.from_url(url, socket_connect_timeout=0.5)
                if client.ping():
                    version = client.info("server").get("redis_version", "?")
                    stack.redis_pid = managed.process.pid
                    stack.notes.append(f"redis: embedded redis-server {version}")
                    return url
            time.sleep(0.05)
        managed.stop()
    raise RuntimeError(f"the embedded Redis did not start; log:\n{managed.log_tail()}")


def _prepare_database(stack: Stack) -> str:
    configured = os.environ.get("DATABASE_URL", "")
    if configured.startswith("postgresql"):
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url

        server_url = make_url(configured)
        name = f"hub_bench_{uuid.uuid4().hex[:10]}"
        admin = create_engine(server_url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))

        def drop() -> None:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()

        stack.drop_database = drop
        stack.notes.append(f"database: PostgreSQL, throwaway database {name}")
        return server_url.set(database=name).render_as_string(hide_password=False)
    if configured:
        stack.notes.append("database: DATABASE_URL as given")
        return configured
    stack.notes.append("database: SQLite file in the temporary folder")
    return f"sqlite:///{stack.scratch / 'hub' / 'hub.db'}"


def prepare_stack(stack: Stack, *, administrations: int) -> str:
    """Start Redis and the demo systems, migrate, onboard; return the client's secret."""
    redis_url = _prepare_redis(stack)
    database_url = _prepare_database(stack)
    data_dir = stack.scratch / "hub"
    stack.env.update({
        "HUB_ENV": "development",
        "HUB_DATA_DIR": str(data_dir),
        "HUB_SECRETS_DIR": str(data_dir / "secrets"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": os.environ.get("CELERY_BROKER_URL") or redis_url,
        "CELERY_RESULT_BACKEND": os.environ.get("CELERY_RESULT_BACKEND") or redis_url,
        # One client drives all the load: the default 1200/minute would answer 429s after
        # the first second. The limiter still runs (a Redis round trip per lookup).
        "HUB_RATE_LIMIT": "1000000/minute",
        # Cache entries outlive their fresh TTL by this much; keep a shared Redis clean.
        "HUB_CACHE_STALE_SECONDS": "60",
        "PYTHONUNBUFFERED": "1",
    })
    stack.env.pop("GUNICORN_CMD_ARGS", None)
    os.environ.update(stack.env)  # this process resolves the same settings (secrets dir)

    from app.database import Database, upgrade_schema
    from app.settings import load_settings
    from demo_systems.seeding import seed
    from devstack.demo_tenants import onboard_demo_sites

    settings = load_settings(stack.env)
    settings.hub_data_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    upgrade_schema(settings.database_url)
    stack.notes.append(f"migrated in {time.perf_counter() - started:.1f}s")

    demo_dir = stack.scratch / "demo"
    summary = seed(data_dir=demo_dir, seed=20261120, administrations=administrations,
                   keys_out=demo_dir / "keys")
    stack.notes.append(f"demo systems seeded: {summary.administrations:,} administrations "
                       f"({summary.seconds:.1f}s)")
    stack.admin_token = secrets.token_urlsafe(16)
    demo_env = {**stack.env, "DEMO_ADMIN_TOKEN": stack.admin_token}
    urls = {}
    for system in ("inventory", "administration"):
        managed, port = start_until_healthy(
            f"demo-{system}",
            lambda port, system=system: [sys.executable, "-m", "demo_systems", "serve", system,
                                         "--data-dir", str(demo_dir), "--host", "127.0.0.1",
                                         "--port", str(port)],
            "/_admin/health", env=demo_env, log_dir=stack.log_dir)
        stack.processes.append(managed)
        urls[system] = f"http://127.0.0.1:{port}"
        if system == "administration":
            stack.admin_pgid = managed.process.pid
    stack.admin_url = urls["administration"]

    database = Database(settings.database_url)
    try:
        credentials = onboard_demo_sites(
            db_session=database.session, manifest_path=demo_dir / "manifest.json",
            system_urls=urls, secrets_dir=settings.hub_secrets_dir)
    finally:
        database.remove_session()
        database.engine.dispose()
    return next(c.client_secret for c in credentials if c.client_id == CLIENT_ID)


@dataclass
class Hub:
    label: str
    managed: Managed
    port: int
    worker_class: str
    workers: int


def start_hub(stack: Stack, label: str, worker_args: list[str]) -> Hub:
    metrics_dir = stack.scratch / f"prometheus-{label.replace(' ', '-')}"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    metrics_dir.mkdir(parents=True)
    env = {**stack.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}

    def command(port: int) -> list[str]:
        env["HUB_API_PORT"] = str(port)
        # --no-control-socket: gunicorn's control socket is one path per user; a `make run`
        # stack on this machine has it. --log-level info: to read back the worker class.
        return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
                "--no-control-socket", "--log-level", "info", *worker_args, "wsgi:app"]

    managed, port = start_until_healthy(f"hub-{label.replace(' ', '-')}", command, "/healthz",
                                        env=env, log_dir=stack.log_dir)
    stack.processes.append(managed)
    log = managed.log_tail(200_000)
    used = re.findall(r"Using worker: (\S+)", log)
    workers = len(re.findall(r"Booting worker with pid", log))
    return Hub(label, managed, port, used[-1] if used else "?", workers)


def stop_hub(stack: Stack, hub: Hub) -> None:
    hub.managed.stop()
    with contextlib.suppress(ValueError):
        stack.processes.remove(hub.managed)


def get_token(port: int, secret: str) -> str:
    answer = requests.post(f"http://127.0.0.1:{port}/v1/oauth/token", timeout=30, data={
        "grant_type": "client_credentials", "client_id": CLIENT_ID, "client_secret": secret})
    if answer.status_code != 200:
        raise RuntimeError(f"token endpoint answered {answer.status_code}: {answer.text[:500]}")
    return answer.json()["access_token"]


def set_latency(stack: Stack, latency_ms: int) -> None:
    headers = {"X-Admin-Token": stack.admin_token}
    if latency_ms:
        requests.put(f"{stack.admin_url}/_admin/faults", json={"latency_ms": latency_ms},
                     headers=headers, timeout=10).raise_for_status()
    else:
        requests.delete(f"{stack.admin_url}/_admin/faults", headers=headers,
                        timeout=10).raise_for_status()


def downstream_requests(stack: Stack, *, reset: bool = False) -> int:
    headers = {"X-Admin-Token": stack.admin_token}
    if reset:
        requests.post(f"{stack.admin_url}/_admin/requests/reset", headers=headers,
                      timeout=10).raise_for_status()
        return 0
    answer = requests.get(f"{stack.admin_url}/_admin/requests", headers=headers, timeout=10)
    answer.raise_for_status()
    return int(answer.json()["total"])


# --------------------------------------------------------------------------------------------
# Scenarios and the report.
# --------------------------------------------------------------------------------------------

def request_bytes(port: int, target: str, token: str | None = None) -> bytes:
    lines = [f"GET {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: application/json",
             "User-Agent: hub-bench"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def unique_since_requests(port: int, token: str, counter: Iterator[int]) -> Callable[[], bytes]:
    head = f"GET {LOOKUP_PATH}&since="
    tail = (f" HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\n"
            f"User-Agent: hub-bench\r\nAuthorization: Bearer {token}\r\n\r\n")

    def make() -> bytes:
        since = MISS_SINCE_BASE + timedelta(seconds=next(counter))
        return (head + quote(since.strftime("%Y-%m-%dT%H:%M:%SZ")) + tail).encode()

    return make


@dataclass
class Row:
    number: str
    scenario: str
    server: str
    result: LoadResult
    cpu: dict[str, float]
    note: str = ""


def measure(stack: Stack, hub: Hub, *, number: str, scenario: str,
            make_request: Callable[[], bytes], options: argparse.Namespace, note: str = "",
            before_measured: Callable[[], object] | None = None) -> Row:
    say(f"{number} {scenario} on {hub.label}: {options.warmup:g}s warm-up, "
        f"{options.duration:g}s measured")
    generate_load(port=hub.port, make_request=make_request, connections=options.connections,
                  duration=options.warmup)
    if before_measured:
        before_measured()
    pgids = {"hub": hub.managed.process.pid}
    if stack.admin_pgid:
        pgids["demo B"] = stack.admin_pgid
    if stack.redis_pid:
        pgids["redis"] = stack.redis_pid
    before, busy_before, started = cpu_seconds(pgids), machine_busy_seconds(), time.perf_counter()
    result = generate_load(port=hub.port, make_request=make_request,
                           connections=options.connections, duration=options.duration)
    wall = time.perf_counter() - started
    after, busy_after = cpu_seconds(pgids), machine_busy_seconds()
    cpu = {name: max(0.0, after[name] - before[name]) / wall for name in pgids}
    cpu["loadgen"] = result.client_cpu
    # Whatever else ran on the machine meanwhile (other test runs, builds): high values mean
    # the figures of this row are low for reasons outside the hub.
    cpu["other"] = max(0.0, (busy_after - busy_before) / wall - sum(cpu.values()))
    return Row(number, scenario, hub.label, result, cpu, note)


def lookup_check(port: int, token: str, target: str) -> tuple[str, int, float]:
    started = time.perf_counter()
    answer = requests.get(f"http://127.0.0.1:{port}{target}", timeout=30,
                          headers={"Authorization": f"Bearer {token}"})
    elapsed = (time.perf_counter() - started) * 1000
    if answer.status_code != 200:
        raise RuntimeError(f"{target} answered {answer.status_code}: {answer.text[:500]}")
    return answer.headers.get("X-Cache", "?"), len(answer.json().get("items", [])), elapsed


def run_server(stack: Stack, hub: Hub, token: str, options: argparse.Namespace,
               counter: Iterator[int], rows: list[Row]) -> None:
    rows.append(measure(stack, hub, number="1", scenario="baseline GET /healthz",
                        make_request=lambda: request_bytes(hub.port, "/healthz"),
                        options=options))

    lookup_check(hub.port, token, LOOKUP_PATH)  # fills the cache (MISS or already HIT)
    cache, items, elapsed = lookup_check(hub.port, token, LOOKUP_PATH)
    cached = request_bytes(hub.port, LOOKUP_PATH, token)
    rows.append(measure(stack, hub, number="2", scenario="cached lookup (HIT)",
                        make_request=lambda: cached, options=options,
                        note=f"check call: X-Cache {cache}, {items} items, {elapsed:.1f} ms"))

    set_latency(stack, options.latency_ms)
    try:
        make = unique_since_requests(hub.port, token, counter)
        cache, items, elapsed = lookup_check(hub.port, token, make().decode().split(" ")[1])
        row = measure(stack, hub, number="3", scenario=f"miss, downstream +{options.latency_ms} ms",
                      make_request=make, options=options,
                      before_measured=lambda: downstream_requests(stack, reset=True))
        calls = downstream_requests(stack)
        misses = row.result.cache.get("MISS", 0)
        row.note = (f"check call: X-Cache {cache}, {items} items, {elapsed:.0f} ms; System B "
                    f"calls during the measured run: {calls:,} for {misses:,} misses")
        rows.append(row)
    finally:
        set_latency(stack, 0)


def _fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def conclude(text: str, indent: str = "  ") -> None:
    print(textwrap.fill(text, width=108, initial_indent=indent,
                        subsequent_indent=indent + "   "))


def print_report(rows: list[Row], options: argparse.Namespace, setup: list[str],
                 hubs: dict[str, Hub]) -> None:
    cpus = os.cpu_count()
    print()
    print("=" * 108)
    print("Hub lookup benchmark (loopback)")
    print(f"  machine: {cpus} CPU cores; load generator: one Python asyncio process, "
          f"{options.connections} concurrent connections,")
    print(f"  keep-alive where the server allows it (sync workers close after every answer), "
          f"{options.duration:g} s per scenario after {options.warmup:g} s warm-up.")
    print(f"  NOTE: the load generator runs on the same {cpus} cores as gunicorn, the demo "
          "systems and Redis; the CPU")
    print("  columns show who used them (in cores; 'hub' = gunicorn master + workers, "
          "'demo B' = System B,")
    print("  'other' = everything else on the machine: when it is high, the row is low for "
          "reasons outside the hub).")
    with contextlib.suppress(OSError):
        print(f"  load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for line in setup:
        print(f"  {line}")
    for hub in hubs.values():
        print(f"  server '{hub.label}': gunicorn worker class {hub.worker_class}, "
              f"{hub.workers} workers booted")
    print()
    header = (f"{'#':<2} {'scenario':<30} {'server':<12} {'req/s':>8} {'p50 ms':>8} "
              f"{'p99 ms':>8} {'errors':>7}  {'X-Cache':<16} CPU hub/demoB/redis/loadgen/other")
    print(header)
    print("-" * len(header))
    for row in rows:
        result = row.result
        cache = " ".join(f"{name}:{count}" for name, count in sorted(result.cache.items())) or "-"
        cpu = "/".join(f"{row.cpu.get(name, 0.0):.2f}"
                       for name in ("hub", "demo B", "redis", "loadgen", "other"))
        print(f"{row.number:<2} {row.scenario:<30} {row.server:<12} {_fmt_rate(result.rate):>8} "
              f"{result.percentile(0.5):>8.1f} {result.percentile(0.99):>8.1f} "
              f"{result.error_count:>7}  {cache:<16} {cpu}")
    print()
    for row in rows:
        if row.note:
            print(f"  {row.number} {row.server}: {row.note}")
        if row.result.errors:
            print(f"  {row.number} {row.server}: errors " + ", ".join(
                f"{name}: {count}" for name, count in row.result.errors.most_common()))
    print()

    def find(number: str, server: str) -> Row | None:
        return next((r for r in rows if r.number == number and r.server == server), None)

    def hub_ms(row: Row) -> float:
        """Hub CPU (all gunicorn processes) per answered request, in ms."""
        return row.cpu.get("hub", 0.0) / row.result.rate * 1000 if row.result.rate else 0.0

    default, sync = GTHREAD[0], SYNC[0]
    latency = options.latency_ms / 1000
    print("Conclusions")
    base, sync_base = find("1", default), find("1", sync)
    if base:
        extra = (f"; {sync} does {_fmt_rate(sync_base.result.rate)} req/s, p99 "
                 f"{sync_base.result.percentile(0.99):.1f} ms, paying a new connection per "
                 "request") if sync_base else ""
        conclude(f"1. baseline: /healthz on {default} serves {_fmt_rate(base.result.rate)} req/s, "
                 f"p99 {base.result.percentile(0.99):.1f} ms, {hub_ms(base):.2f} ms of hub CPU "
                 f"per request{extra}. This is the ceiling of any hub endpoint here: /healthz "
                 "still runs every request hook (request id, access log line, metrics, limiter "
                 "check). For reference, DESIGN.md measured a bare Flask app on 2 sync workers "
                 "at about 5,400 req/s on this kind of machine.")
    hit, sync_hit = find("2", default), find("2", sync)
    if base and hit:
        extra = (f"; on {sync}: {_fmt_rate(sync_hit.result.rate)} req/s = "
                 f"{sync_hit.result.rate / sync_base.result.rate:.2f} x its baseline"
                 ) if sync_hit and sync_base else ""
        conclude(f"2. cached lookup: {_fmt_rate(hit.result.rate)} req/s = "
                 f"{hit.result.rate / base.result.rate:.2f} x baseline, p99 "
                 f"{hit.result.percentile(0.99):.1f} ms{extra}. A HIT costs {hub_ms(hit):.2f} ms "
                 f"of hub CPU against {hub_ms(base):.2f} ms for /healthz (bearer check, "
                 "entitlement, rate limit, Redis GET, serialization). DESIGN.md's ceiling for an "
                 "endpoint doing one Redis GET is about 0.69 x bare Flask.")
    miss_default, miss_sync = find("3", default), find("3", sync)
    if miss_default and miss_sync:
        sync_cap = SYNC[2] / latency
        thread_cap = GTHREAD[2] / latency
        fast, slow = miss_default.result.rate, miss_sync.result.rate
        conclude(f"3. cache miss with System B {options.latency_ms} ms slow: {default} "
                 f"{_fmt_rate(fast)} req/s (p99 {miss_default.result.percentile(0.99):.0f} ms) vs "
                 f"{sync} {_fmt_rate(slow)} req/s (p99 {miss_sync.result.percentile(0.99):.0f} "
                 f"ms): {default} / {sync} = {fast / slow:.2f}. Sync cap = {SYNC[2]} workers / "
                 f"{latency:.3f} s = {sync_cap:.0f} req/s (measured {slow / sync_cap:.0%} of it); "
                 f"gthread cap = {GTHREAD[2]} threads / {latency:.3f} s = {thread_cap:.0f} req/s "
                 f"(measured {fast / thread_cap:.0%} of it). Hub CPU per miss: "
                 f"{hub_ms(miss_default):.1f} ms ({default}), {hub_ms(miss_sync):.1f} ms ({sync}).")
        # Little's law: downstream calls in flight on average = rate x downstream latency.
        for label, row, slots in ((default, miss_default, GTHREAD[2]), (sync, miss_sync, SYNC[2])):
            in_flight = row.result.rate * latency
            verdict = ("the slots are NOT waiting on System B concurrently; look for a lock held "
                       "across the downstream call, or CPU saturation (see the CPU column)"
                       if in_flight < 0.5 * slots else "most slots are waiting on System B at once")
            conclude(f"{label}: ~{in_flight:.1f} downstream calls in flight on average "
                     f"(req/s x latency), of {slots} slots: {verdict}.", indent="     ")
    print("=" * 108)


def _interrupt(_signum, _frame) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=6.0, help="measured seconds per "
                        "scenario (default 6)")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured seconds of the "
                        "same load before each scenario (default 1)")
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--latency-ms", type=int, default=50, help="System B's injected latency "
                        "in scenario 3")
    parser.add_argument("--administrations", type=int, default=3000, help="demo world size")
    parser.add_argument("--keep-logs", action="store_true", help="copy the server logs to "
                        "./bench-lookups-logs before the temporary folder is removed")
    options = parser.parse_args()

    # Ctrl-C and SIGTERM (e.g. from `timeout`) raise KeyboardInterrupt wherever this process
    # is, also inside the load generator's event loop (asyncio.run only cancels its main task
    # on SIGINT, which a finishing run can swallow), and the `finally` below cleans up.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    begun = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix="hub-bench-lookups-"))
    stack = Stack(scratch=scratch, log_dir=scratch / "logs",
                  env={k: v for k, v in os.environ.items() if k != "GUNICORN_CMD_ARGS"})
    stack.log_dir.mkdir()
    rows: list[Row] = []
    hubs: dict[str, Hub] = {}
    status = 0
    try:
        say(f"temporary folder {scratch}")
        secret = prepare_stack(stack, administrations=options.administrations)
        counter = iter(range(10**9))
        token = None
        for label, worker_args, _ in (GTHREAD, SYNC):
            say(f"starting the hub API: gunicorn {' '.join(worker_args)}")
            hub = start_hub(stack, label, worker_args)
            hubs[label] = hub
            token = token or get_token(hub.port, secret)
            try:
                run_server(stack, hub, token, options, counter, rows)
            finally:
                stop_hub(stack, hub)
        stack.notes.append(f"total run time {time.perf_counter() - begun:.0f} s")
        print_report(rows, options, stack.notes, hubs)
        print(json.dumps({"results": [
            {"scenario": row.scenario, "server": row.server, "req_per_s": round(row.result.rate, 1),
             "p50_ms": round(row.result.percentile(0.5), 2),
             "p99_ms": round(row.result.percentile(0.99), 2), "errors": row.result.error_count,
             "x_cache": dict(row.result.cache),
             "cpu_cores": {name: round(value, 2) for name, value in row.cpu.items()}}
            for row in rows]}))
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        status = 130
    except Exception as error:
        say(f"failed: {type(error).__name__}: {error}")
        for managed in stack.processes:
            if managed.process.poll() is not None:
                say(f"{managed.name} exited ({managed.process.returncode}); log tail:\n"
                    f"{managed.log_tail()}")
        status = 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stack.stop_all()
        if options.keep_logs:
            shutil.copytree(stack.log_dir, Path("bench-lookups-logs"), dirs_exist_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    sys.exit(status)


if __name__ == "__main__":
    main()
