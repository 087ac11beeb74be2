"""`make run`'s launcher brings the whole stack up with embedded defaults under supervisord,
which restarts a process that dies while the others keep running; Ctrl-C stops every process
it started."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from app.settings import PROJECT_ROOT, load_settings
from devstack.__main__ import _banner, _restrict_secrets, demo_clients_path
from devstack.supervision import RUN_ONCE, config_path
from tests.fixtures.processes import free_port, wait_until

pytestmark = pytest.mark.stack


def _processes_started_for(data_dir: str) -> list[psutil.Process]:
    mine = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("HUB_DATA_DIR") == data_dir:
                mine.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    return mine


@pytest.fixture(scope="module")
def running_stack(tmp_path_factory):
    data_dir = str(tmp_path_factory.mktemp("stack") / "var")
    ports = {name: str(free_port()) for name in (
        "HUB_API_PORT", "HUB_FLOWER_PORT", "HUB_EMBEDDED_REDIS_PORT", "DEMO_INVENTORY_PORT",
        "DEMO_ADMINISTRATION_PORT", "DEMO_SUBSCRIBER_PORT", "HUB_MLLP_PORT")}
    environment = {key: value for key, value in os.environ.items() if key not in {
        "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
        "HUB_SECRETS_DIR", "HUB_WEBHOOK_ALLOW_HTTP", "HUB_WEBHOOK_ALLOWED_NETWORKS"}}
    # Change detection every 10 s (not 60): a test sees the records it adds read soon. The
    # demo world records nothing by itself here (the idle test measures an idle stack); the
    # change-detection test adds its records through the demo system's admin API.
    environment.update(ports, HUB_DATA_DIR=data_dir, DEMO_ADMINISTRATIONS="2000",
                       HUB_WORKER_IO_CONCURRENCY="2", HUB_SYNC_ADMINISTRATION_CHANGES="10",
                       DEMO_LIVE_RECORDS_PER_MINUTE="0")
    process = subprocess.Popen([sys.executable, "-m", "devstack", "run"], cwd=PROJECT_ROOT,
                               env=environment, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout), daemon=True)
    reader.start()
    stack = {"process": process, "output": output, "data_dir": data_dir, **ports}
    try:
        wait_until(lambda: any("The medication hub is up" in line for line in output)
                   or process.poll() is not None, timeout=240, interval=0.5,
                   description="the stack's ready banner")
        assert process.poll() is None, "".join(output)[-5000:]
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
        for leftover in _processes_started_for(data_dir):
            leftover.kill()


def secret_values(secrets_dir: Path) -> set[str]:
    """Every secret in the secrets folder: generated settings, demo client secrets, the demo
    systems' API keys, and the password half of each ``user:password``."""
    values = set()
    for path in secrets_dir.rglob("*"):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8").strip()
        if path.suffix == ".json":
            values |= set(json.loads(text).values())
        else:
            values |= {text, *text.split(":", 1)[1:], *text.split(",")}
    return {value for value in values if len(value) >= 8}


def test_banner_names_the_secrets_file_but_prints_no_secret(tmp_path, monkeypatch):
    for name in ("FLOWER_BASIC_AUTH", "HUB_METRICS_BASIC_AUTH"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(f"{name}_FILE", raising=False)
    settings = load_settings({"HUB_DATA_DIR": str(tmp_path / "var")})
    clients = demo_clients_path(settings)
    clients.write_text(json.dumps({"north-general-inventory": "s3cret-inventory-0123456789",
                                   "north-general-operator": "s3cret-operator-0123456789"}))

    banner = _banner(settings, "http://127.0.0.1:8000", "http://127.0.0.1:5555", 1.0)

    assert str(clients) in banner and "north-general-operator" in banner
    assert str(settings.hub_secrets_dir / "flower_basic_auth") in banner
    leaked = [value for value in secret_values(settings.hub_secrets_dir) if value in banner]
    assert leaked == []


def test_secrets_are_made_owner_only(tmp_path):
    settings = load_settings({"HUB_DATA_DIR": str(tmp_path / "var")})
    clients = demo_clients_path(settings)
    clients.write_text("{}")
    clients.chmod(0o644)
    settings.hub_secrets_dir.chmod(0o755)

    _restrict_secrets(settings)

    assert stat.S_IMODE(clients.stat().st_mode) == 0o600
    assert stat.S_IMODE(settings.hub_secrets_dir.stat().st_mode) == 0o700


IDLE_BUDGET_PER_MINUTE = 5


def test_an_idle_stack_writes_at_most_five_log_lines_a_minute(running_stack):
    output = running_stack["output"]

    def startup_snapshots_logged() -> bool:  # the first syncs run as beat starts
        return sum('"sync": "inventory_snapshot"' in line for line in output) >= 2

    wait_until(startup_snapshots_logged, timeout=120, interval=0.5,
               description="the start-up inventory snapshots")
    start = len(output)
    window_ends = time.monotonic() + 60
    # A measurement over one minute of idling, not a wait for something to happen.
    wait_until(lambda: time.monotonic() >= window_ends, timeout=90, interval=1,
               description="one idle minute")
    written = [line for line in output[start:] if " supervisor " not in line[:30]]

    assert len(written) <= IDLE_BUDGET_PER_MINUTE, "".join(written)[-3000:]


def test_stack_is_ready_and_prints_where_the_secrets_are_and_a_curl_example(running_stack):
    banner = "".join(running_stack["output"])
    api = f"http://127.0.0.1:{running_stack['HUB_API_PORT']}"
    secrets_dir = Path(running_stack["data_dir"]) / "secrets"

    assert requests.get(f"{api}/readyz", timeout=10).status_code == 200
    assert "north-general-operator" in banner
    assert str(secrets_dir / "demo-clients.json") in banner
    # The console prefixes each line with the time and process name.
    curl_line = next(line[line.index("curl "):].strip() for line in running_stack["output"]
                     if "curl -s" in line)
    answer = subprocess.run(shlex.split(curl_line), capture_output=True, text=True, timeout=30)
    assert answer.returncode == 0 and '"status": "ready"' in answer.stdout.replace('":"', '": "')


def test_printed_walkthrough_shows_token_miss_hit_and_403(running_stack):
    lines = [line.split(" | ", 1)[1].strip() for line in running_stack["output"]
             if " | " in line]
    start = lines.index("Try it:") + 1
    walkthrough = lines[start:lines.index("Ctrl-C stops everything.")]
    script = "set -e\n" + "\n".join(line for line in walkthrough if line)

    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)

    assert run.returncode == 0, run.stderr
    assert re.findall(r"X-Cache: (\w+)", run.stdout) == ["MISS", "HIT"]
    assert '"status":403' in run.stdout.replace(" ", "")


def test_the_stack_log_holds_no_secret_and_the_secret_files_are_owner_only(running_stack):
    log = "".join(running_stack["output"])
    secrets_dir = Path(running_stack["data_dir"]) / "secrets"
    secrets = secret_values(secrets_dir)

    assert len(secrets) >= 8  # the generated settings and every demo client's secret
    assert [value for value in secrets if value in log] == []
    assert stat.S_IMODE(secrets_dir.stat().st_mode) == 0o700
    for path in secrets_dir.glob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_each_demo_tenant_is_subscribed_to_the_running_demo_subscriber(running_stack):
    api = f"http://127.0.0.1:{running_stack['HUB_API_PORT']}"
    subscriber = f"http://127.0.0.1:{running_stack['DEMO_SUBSCRIBER_PORT']}"
    secrets_dir = Path(running_stack["data_dir"]) / "secrets"
    client_secret = json.loads((secrets_dir / "demo-clients.json").read_text())[
        "north-general-events"]

    assert requests.get(f"{subscriber}/healthz", timeout=10).json() == {"status": "ok"}
    assert set(json.loads((secrets_dir / "demo-subscriber.json").read_text())) == {
        "north-general", "river-valley", "lakeside-clinic"}
    token = requests.post(f"{api}/v1/oauth/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": "north-general-events",
        "client_secret": client_secret}).json()["access_token"]
    (subscription,) = requests.get(f"{api}/v1/subscriptions", timeout=10, headers={
        "Authorization": f"Bearer {token}"}).json()["items"]
    assert subscription["url"] == f"{subscriber}/events/north-general"
    assert subscription["status"] == "active" and len(subscription["event_types"]) == 4

def test_flower_lists_both_workers_behind_basic_auth(running_stack):
    flower = f"http://127.0.0.1:{running_stack['HUB_FLOWER_PORT']}"
    secret_file = Path(running_stack["data_dir"]) / "secrets" / "flower_basic_auth"
    user, password = secret_file.read_text(encoding="utf-8").strip().split(":", 1)

    assert requests.get(f"{flower}/api/workers", timeout=10).status_code == 401
    workers = requests.get(f"{flower}/api/workers", auth=(user, password), timeout=10).json()
    assert {name.split("@")[0] for name in workers} >= {"io", "compute"}


def test_stack_runs_the_smoke_pipeline_on_its_workers(running_stack):
    environment = {**os.environ, "HUB_DATA_DIR": running_stack["data_dir"],
                   "HUB_EMBEDDED_REDIS_PORT": running_stack["HUB_EMBEDDED_REDIS_PORT"]}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                 "HUB_SECRETS_DIR"):
        environment.pop(name, None)

    smoke = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "hub", "smoke"],
                           cwd=PROJECT_ROOT, env=environment, capture_output=True, text=True,
                           timeout=120)

    assert smoke.returncode == 0, smoke.stderr[-3000:]
    assert '"value": 42' in smoke.stdout


def test_the_demo_systems_keep_recording_and_change_detection_reads_it(running_stack):
    environment = {**os.environ, "HUB_DATA_DIR": running_stack["data_dir"],
                   "HUB_EMBEDDED_REDIS_PORT": running_stack["HUB_EMBEDDED_REDIS_PORT"]}
    for name in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                 "HUB_SECRETS_DIR"):
        environment.pop(name, None)
    reports: list[dict] = []

    def records_read() -> bool:
        shown = subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", "hub", "syncs",
                                "show", "administration_changes", "north-general"],
                               cwd=PROJECT_ROOT, env=environment, capture_output=True,
                               text=True, timeout=60)
        runs = json.loads(shown.stdout)["recent_runs"]
        reports[:] = [run["report"] for run in runs if run["outcome"] == "succeeded"]
        return any(report["records_read"] for report in reports)

    # Records charted before the feed's first run would be behind its starting point: wait
    # for a succeeded run (the first one starts the feed).
    wait_until(lambda: records_read() or bool(reports), timeout=150, interval=3,
               description="the change feed's first run")
    charted = requests.post(
        f"http://127.0.0.1:{running_stack['DEMO_ADMINISTRATION_PORT']}/_admin/live/records",
        headers={"X-Admin-Token": os.environ.get("DEMO_ADMIN_TOKEN", "demo-admin")},
        json={"site": "north-general", "count": 3}, timeout=30)
    assert charted.status_code == 200, charted.text

    # The sync reads every 10 s; its first run only starts the feed.
    wait_until(records_read, timeout=150, interval=3,
               description="doses charted while the stack runs, read by change detection")
    # The feed is started once, never again (older runs may have left the recent list).
    assert [report["feed_started"] for report in reports].count(True) <= 1


def test_stack_redis_requires_its_password_and_no_process_logs_it(running_stack):
    password = (Path(running_stack["data_dir"]) / "secrets" /
                "hub_embedded_redis_password").read_text(encoding="utf-8").strip()

    with socket.create_connection(("127.0.0.1", int(running_stack["HUB_EMBEDDED_REDIS_PORT"])),
                                  timeout=5) as connection:
        connection.sendall(b"PING\r\n")
        reply = connection.makefile("rb").readline()

    assert reply.startswith(b"-NOAUTH")
    # Every process of the stack (API, workers, beat, Flower, announce) logs to the console.
    assert len(password) >= 32 and password not in "".join(running_stack["output"])


def _supervised_pids(stack) -> dict[str, int]:
    """``{process: pid}`` of the processes running under supervisord, as its status command
    lists them (supervisorctl itself: ``python -m devstack ctl status`` without the settings)."""
    supervisorctl = str(Path(sys.executable).parent / "supervisorctl")
    status = subprocess.run(
        [supervisorctl, "--configuration", str(config_path(Path(stack["data_dir"]))), "status"],
        capture_output=True, text=True, timeout=30).stdout
    return {name.split(":")[-1]: int(pid) for name, pid in re.findall(
        r"^(\S+)\s+(?:RUNNING|STARTING)\s+pid (\d+),", status, re.MULTILINE)}


def _run_job(stack) -> dict:
    """Submit a one-unit administration count as the demo operator; the job once final."""
    api = f"http://127.0.0.1:{stack['HUB_API_PORT']}"
    secrets_dir = Path(stack["data_dir"]) / "secrets"
    client = "north-general-operator"
    client_secret = json.loads((secrets_dir / "demo-clients.json").read_text())[client]
    token = requests.post(f"{api}/v1/oauth/token", timeout=10, data={
        "grant_type": "client_credentials", "client_id": client,
        "client_secret": client_secret}).json()["access_token"]
    truth = requests.get(
        f"http://127.0.0.1:{stack['DEMO_ADMINISTRATION_PORT']}/_admin/export/ground-truth",
        params={"site": "north-general"}, timeout=30,
        headers={"X-Admin-Token": os.environ.get("DEMO_ADMIN_TOKEN", "demo-admin")}).json()
    headers = {"Authorization": f"Bearer {token}"}
    submitted = requests.post(f"{api}/v1/jobs", timeout=30, json={
        "type": "administration_counts", "params": {
            "window": {"since": truth["window_start"], "until": truth["window_end"]},
            "units": ["ED-1"]}},
        headers={**headers, "Idempotency-Key": f"after-restart-{time.time():.6f}"})
    assert submitted.status_code == 202, submitted.text
    seen = {}

    def final() -> bool:
        seen.update(requests.get(f"{api}/v1/jobs/{submitted.json()['id']}", headers=headers,
                                 timeout=10).json())
        return seen["status"] in {"succeeded", "failed", "cancelled"}

    wait_until(final, timeout=90, interval=0.5, description="the job submitted after restarts")
    return seen


@pytest.mark.faults
def test_a_killed_worker_parent_and_beat_are_restarted_while_the_rest_keeps_running(
        running_stack):
    output = running_stack["output"]
    start = len(output)
    before = _supervised_pids(running_stack)
    killed = ("worker_io", "beat")
    assert set(before) >= {"redis", "api", "hl7", "worker_io", "worker_compute", "beat"}

    for name in killed:
        os.kill(before[name], signal.SIGKILL)

    def restarted() -> bool:
        now = _supervised_pids(running_stack)
        return all(now.get(name) not in (None, before[name]) for name in killed)

    wait_until(restarted, timeout=15, interval=0.1, description="worker_io and beat restarted")
    after = _supervised_pids(running_stack)
    # supervisord's own lines, through the console: how each ended, and its new process.
    for name in killed:
        wait_until(lambda name=name: any(
            f"exited: {name} (terminated by SIGKILL; not expected)" in line for line in output)
            and any(f"spawned: '{name}' with pid {after[name]}" in line for line in output),
            timeout=5, description=f"{name}'s restart in the console")
    # Nothing else was stopped or restarted (`ready` ends by itself once it has printed).
    unchanged = set(before) - set(killed) - RUN_ONCE
    assert {name: after.get(name) for name in unchanged} == {
        name: before[name] for name in unchanged}
    api = f"http://127.0.0.1:{running_stack['HUB_API_PORT']}"
    assert requests.get(f"{api}/readyz", timeout=10).status_code == 200
    # The restarted io worker takes work again: a job's unit tasks run on it.
    assert _run_job(running_stack)["status"] == "succeeded"
    assert any(line[9:].startswith("worker_io ") and '"io@' in line and ' ready."' in line
               for line in output[start:])
    # Each was restarted once, not in a loop; the operators' status command shows them.
    now = _supervised_pids(running_stack)
    assert {name: now.get(name) for name in killed} == {name: after[name] for name in killed}
    status = subprocess.run([sys.executable, "-m", "devstack", "ctl", "status"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "HUB_DATA_DIR": running_stack["data_dir"]}).stdout
    assert re.search(rf"^workers:worker_io\s+RUNNING\s+pid {after['worker_io']},", status,
                     re.MULTILINE), status


def test_ctrl_c_stops_every_process_of_the_stack(running_stack):
    process = running_stack["process"]
    assert len(_processes_started_for(running_stack["data_dir"])) >= 9

    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)

    wait_until(lambda: not _processes_started_for(running_stack["data_dir"]), timeout=15,
               description="every stack process to exit")
