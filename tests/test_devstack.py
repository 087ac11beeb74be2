"""`make run`'s launcher brings the whole stack up with embedded defaults, and Ctrl-C stops
every process it started."""

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
        "DEMO_ADMINISTRATION_PORT", "HUB_MLLP_PORT")}
    environment = {key: value for key, value in os.environ.items() if key not in {
        "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
        "HUB_SECRETS_DIR"}}
    environment.update(ports, HUB_DATA_DIR=data_dir, DEMO_ADMINISTRATIONS="2000",
                       HUB_WORKER_IO_CONCURRENCY="2")
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
    written = [line for line in output[start:] if " system " not in line[:30]]

    assert len(written) <= IDLE_BUDGET_PER_MINUTE, "".join(written)[-3000:]


def test_stack_is_ready_and_prints_where_the_secrets_are_and_a_curl_example(running_stack):
    banner = "".join(running_stack["output"])
    api = f"http://127.0.0.1:{running_stack['HUB_API_PORT']}"
    secrets_dir = Path(running_stack["data_dir"]) / "secrets"

    assert requests.get(f"{api}/readyz", timeout=10).status_code == 200
    assert "north-general-operator" in banner
    assert str(secrets_dir / "demo-clients.json") in banner
    # honcho prefixes each line with the time and process name.
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


def test_stack_redis_requires_its_password_and_no_process_logs_it(running_stack):
    password = (Path(running_stack["data_dir"]) / "secrets" /
                "hub_embedded_redis_password").read_text(encoding="utf-8").strip()

    with socket.create_connection(("127.0.0.1", int(running_stack["HUB_EMBEDDED_REDIS_PORT"])),
                                  timeout=5) as connection:
        connection.sendall(b"PING\r\n")
        reply = connection.makefile("rb").readline()

    assert reply.startswith(b"-NOAUTH")
    # Every process of the stack (API, workers, beat, Flower, announce) logs through honcho.
    assert len(password) >= 32 and password not in "".join(running_stack["output"])


def test_ctrl_c_stops_every_process_of_the_stack(running_stack):
    process = running_stack["process"]
    assert len(_processes_started_for(running_stack["data_dir"])) >= 9

    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)

    wait_until(lambda: not _processes_started_for(running_stack["data_dir"]), timeout=15,
               description="every stack process to exit")
