"""The local stack's supervision (devstack/supervision.py): the Procfile becomes a supervisord
configuration that restarts a process that dies, backs off one that keeps dying at start and
stops the stack tier by tier; the console prints every process's lines with its name."""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import psutil
import pytest

from app.settings import PROJECT_ROOT
from devstack.supervision import (
    RUN_ONCE,
    TIERS,
    config_path,
    log_dir,
    read_procfile,
    supervisord_config,
    write_config,
)
from tests.fixtures.processes import stop_process_group, wait_until

PROCFILE = PROJECT_ROOT / "Procfile"


def parsed(text: str) -> configparser.ConfigParser:
    # supervisord reads its file with the same %-interpolation as configparser's default.
    config = configparser.ConfigParser()
    config.read_string(text)
    return config


def test_every_procfile_process_becomes_a_program_running_its_procfile_command(tmp_path):
    procfile = read_procfile(PROCFILE)

    config = parsed(supervisord_config(procfile=procfile, processes=list(procfile),
                                       data_dir=tmp_path, working_dir=PROJECT_ROOT,
                                       python=sys.executable))

    for name, command in procfile.items():
        program = config[f"program:{name}"]
        assert shlex.split(program["command"]) == ["/bin/sh", "-c", command]
        assert program["stopsignal"] == "TERM"
        assert program["autorestart"] == ("false" if name in RUN_ONCE else "true")
        assert program["stdout_logfile"] == str(log_dir(tmp_path) / f"{name}.log")
    # Celery's %h (its host name) reaches the command as written, not as a supervisord name.
    assert "--hostname io@%h" in config["program:worker_io"]["command"]


def test_the_stack_stops_api_and_listener_first_then_workers_then_demo_systems_then_redis(
        tmp_path):
    procfile = read_procfile(PROCFILE)
    config = parsed(supervisord_config(procfile=procfile, processes=list(procfile),
                                       data_dir=tmp_path, working_dir=PROJECT_ROOT,
                                       python=sys.executable))

    def priority(process: str) -> int:
        group = next(tier.name for tier in TIERS if process in tier.processes)
        return int(config[f"group:{group}"]["priority"])

    # supervisord stops the highest priority first, and the next group only once it has stopped.
    assert priority("api") == priority("hl7") > priority("worker_io") == priority("beat")
    assert priority("beat") > priority("inventory") > priority("redis")
    assert int(config["program:console"]["priority"]) < priority("redis")
    # The grace periods cover gunicorn's graceful_timeout and Celery's soft shutdown.
    assert int(config["program:api"]["stopwaitsecs"]) > 10
    assert int(config["program:worker_io"]["stopwaitsecs"]) > 20


def test_a_process_without_a_tier_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mystery"):
        supervisord_config(procfile={"mystery": "exec true"}, processes=["mystery"],
                           data_dir=tmp_path, working_dir=PROJECT_ROOT, python=sys.executable)


def _spawn_times(supervisor_log: str, process: str) -> list[datetime]:
    return [datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f") for stamp in re.findall(
        rf"^(\S+ \S+) INFO spawned: '{process}' with pid", supervisor_log, re.MULTILINE)]


def test_a_process_that_exits_at_once_is_backed_off_then_given_up_while_others_run(tmp_path):
    supervisord = shutil.which("supervisord", path=str(Path(sys.executable).parent))
    procfile = tmp_path / "Procfile"
    # Names of the stack's tiers, with commands of the test's own: one exits at once every
    # time, one keeps running.
    procfile.write_text("beat: echo starting; exit 3\napi: exec sleep 120\n", encoding="utf-8")
    data_dir = tmp_path / "var"
    path = write_config(procfile_path=procfile, processes=["api", "beat"], data_dir=data_dir,
                        working_dir=tmp_path, python=sys.executable)
    text = path.read_text(encoding="utf-8").replace("startretries=5", "startretries=3")
    path.write_text(text, encoding="utf-8")
    supervisor_log = log_dir(data_dir) / "supervisor.log"
    process = subprocess.Popen([supervisord, "--configuration", str(path)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        wait_until(lambda: "gave up: beat entered FATAL state" in supervisor_log.read_text(),
                   timeout=30, interval=0.2, description="supervisord to give up on beat")
        log = supervisor_log.read_text()
        spawns = _spawn_times(log, "beat")
        gaps = [(later - earlier).total_seconds()
                for earlier, later in zip(spawns, spawns[1:], strict=False)]
        (steady_pid,) = re.findall(r"spawned: 'api' with pid (\d+)", log)
        steady = psutil.Process(int(steady_pid))

        # The first start and 3 retries, each after a longer pause (1 s, 2 s, 3 s): no tight
        # loop, and then it stays down.
        assert len(spawns) == 4, log
        assert gaps[0] >= 0.9 and gaps[1] >= 1.9 and gaps[2] >= 2.9, gaps
        assert log.count("exited: beat (exit status 3; not expected)") == 4
        # Supervisord itself and the other process are untouched.
        assert process.poll() is None
        assert steady.is_running() and steady.ppid() == process.pid
        assert "starting" in (log_dir(data_dir) / "beat.log").read_text()
    finally:
        stop_process_group(process, timeout=20)
    assert not steady.is_running()


def test_the_config_is_owner_only_and_previous_logs_are_kept_aside(tmp_path):
    procfile = tmp_path / "Procfile"
    procfile.write_text("api: exec sleep 1\n", encoding="utf-8")
    data_dir = tmp_path / "var"
    log_dir(data_dir).mkdir(parents=True)
    (log_dir(data_dir) / "api.log").write_text("an earlier run\n")

    path = write_config(procfile_path=procfile, processes=["api"], data_dir=data_dir,
                        working_dir=tmp_path, python=sys.executable)

    assert path == config_path(data_dir) and path.stat().st_mode & 0o077 == 0
    assert (log_dir(data_dir) / "api.log.previous").read_text() == "an earlier run\n"
    assert not (log_dir(data_dir) / "api.log").exists()


def test_the_console_prints_each_line_once_with_its_process_name_across_a_rotation(tmp_path):
    logs = tmp_path / "log"
    logs.mkdir()
    api_log = logs / "api.log"
    api_log.write_text("first line\nsecond ")
    console = subprocess.Popen([sys.executable, "-m", "devstack.supervision", "console",
                                str(logs)], cwd=PROJECT_ROOT, stdout=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        wait_until(lambda: (logs / ".console-started").exists(), timeout=10,
                   description="the console to start")
        with api_log.open("a") as log:
            log.write("half\n")
        # supervisord rotates: renames the file and begins a new one.
        api_log.rename(logs / "api.log.1")
        api_log.write_text("after rotation\n")
        (logs / "worker_io.log").write_text("io@host ready.\nno newline yet")
        console.send_signal(signal.SIGTERM)
        output, _ = console.communicate(timeout=10)
    finally:
        stop_process_group(console, timeout=5)

    lines = [line.split(" ", 1)[1] for line in output.splitlines()]
    api_lines = [line for line in lines if line.startswith("api ")]
    assert [line.split(" | ", 1)[1] for line in api_lines] == [
        "first line", "second half", "after rotation"]
    assert [line.split(" | ", 1)[1] for line in lines if line.startswith("worker_io ")] == [
        "io@host ready.", "no newline yet"]
    assert all(re.match(r"^\d\d:\d\d:\d\d ", line) for line in output.splitlines())
