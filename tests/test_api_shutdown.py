"""The API's graceful drain (gunicorn.conf.py ``graceful_timeout``): on SIGTERM gunicorn stops
taking connections at once, lets the requests in flight finish, and exits."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import psutil
import pytest
import requests

from tests.fixtures.processes import wait_until
from tests.fixtures.services import running_gunicorn

pytestmark = [pytest.mark.faults, pytest.mark.usefixtures("clean_lookup_state")]

INVENTORY = "north-general-inventory"  # reads administrations (System B)
DOWNSTREAM_LATENCY_MS = 3000  # under the hub's 5 s read timeout, well under graceful_timeout
GRACEFUL_TIMEOUT = 10  # gunicorn.conf.py


def _refuses_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            # Accepted by the kernel into a listener nobody serves: not refused yet.
            connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: hub\r\n\r\n")
            connection.recv(1)
            return False
    except ConnectionRefusedError:
        return True
    except OSError:  # reset when the last copy of the listening socket closed
        return False


def _gunicorn_master(port: int) -> psutil.Process:
    """The gunicorn master serving ``port``: the one of its processes whose parent is not."""
    serving = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("HUB_API_PORT") == str(port):
                serving.append(process)
        except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
            continue
    (master,) = [process for process in serving
                 if process.ppid() not in {other.pid for other in serving}]
    return master


def test_sigterm_drains_the_request_in_flight_and_refuses_new_connections(
        hub_environment, migrated_database, tokens, demo_administration, tmp_path):
    log_path = tmp_path / "gunicorn.log"
    with running_gunicorn(hub_environment, log_path, HUB_API_WORKERS="2", HUB_API_THREADS="2",
                          PROMETHEUS_MULTIPROC_DIR=None) as port:
        master = _gunicorn_master(port)
        demo_administration.admin.set_faults(latency_ms=DOWNSTREAM_LATENCY_MS)
        answer = {}

        def slow_lookup() -> None:
            answer["response"] = requests.get(
                f"http://127.0.0.1:{port}/v1/administrations?unit=ICU-3&page_size=2",
                headers=tokens.headers(INVENTORY), timeout=30)

        in_flight = threading.Thread(target=slow_lookup)
        in_flight.start()
        # In flight: the hub is waiting on System B's (slowed) answer.
        wait_until(lambda: demo_administration.admin.requests_count()["total"] >= 1, timeout=10,
                   description="the lookup to reach System B")
        os.kill(master.pid, signal.SIGTERM)
        signalled = time.monotonic()

        wait_until(lambda: _refuses_connections(port), timeout=3, interval=0.05,
                   description="new connections refused")
        refused_after = time.monotonic() - signalled
        in_flight.join(timeout=GRACEFUL_TIMEOUT + 5)
        master.wait(timeout=GRACEFUL_TIMEOUT + 5)
        exited_after = time.monotonic() - signalled

        assert answer["response"].status_code == 200, answer["response"].text
        assert answer["response"].json()["items"]
        assert refused_after < DOWNSTREAM_LATENCY_MS / 1000  # while the request was in flight
        assert exited_after < GRACEFUL_TIMEOUT
