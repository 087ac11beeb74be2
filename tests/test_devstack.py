"""`make run`'s launcher brings the whole stack up with embedded defaults, and Ctrl-C stops
every process it started."""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest
import requests

from app.settings import PROJECT_ROOT
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
        "DEMO_ADMINISTRATION_PORT")}
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


def test_stack_is_ready_and_prints_credentials_and_a_curl_example(running_stack):
    banner = "".join(running_stack["output"])
    api = f"http://127.0.0.1:{running_stack['HUB_API_PORT']}"

    assert requests.get(f"{api}/readyz", timeout=10).status_code == 200
    assert "north-general-operator" in banner
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


def test_flower_lists_both_workers_behind_basic_auth(running_stack):
    flower = f"http://127.0.0.1:{running_stack['HUB_FLOWER_PORT']}"
    banner = "".join(running_stack["output"])
    user, password = re.search(r"user:password (\S+?):(\S+)\)", banner).groups()

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
