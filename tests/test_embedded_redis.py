"""The embedded Redis (devstack/embedded_redis.py) refuses clients without its password, and
every hub process works with it: the session's own Redis is such a server, so the whole suite
(API, worker, beat, Flower; Celery broker and result backend) runs authenticated. The password
never reaches a process's command line or log."""

import os
import socket
import stat

import psutil
import pytest
import redis

from tests.fixtures.services import start_embedded_redis


def anonymous_reply(port: int, command: bytes) -> bytes:
    """Send one inline command without authenticating, as any local process could, and return
    the server's first reply line."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(command + b"\r\n")
        return connection.makefile("rb").readline()


@pytest.fixture
def server(tmp_path):
    started = start_embedded_redis(tmp_path / "redis")
    yield started
    started.stop()


def test_embedded_redis_refuses_a_client_without_the_password(server):
    wrong = redis.Redis(host="127.0.0.1", port=server.port, password="guess",
                        socket_connect_timeout=2)

    assert anonymous_reply(server.port, b"PING").startswith(b"-NOAUTH")
    assert anonymous_reply(server.port, b"KEYS *").startswith(b"-NOAUTH")
    with pytest.raises(redis.AuthenticationError):
        wrong.ping()
    assert redis.Redis.from_url(server.url).ping()


def test_embedded_redis_password_stays_off_the_command_line(server, tmp_path):
    command_line = " ".join(psutil.Process(server.process.pid).cmdline())
    config = tmp_path / "redis" / "redis-auth.conf"

    assert server.password not in command_line
    assert stat.S_IMODE(os.stat(config).st_mode) == 0o600


@pytest.fixture
def session_redis(embedded_redis):
    if embedded_redis is None:
        pytest.skip("REDIS_URL names an outside Redis; its auth is its operator's")
    return embedded_redis


def test_the_session_redis_refuses_anonymous_clients_yet_the_hub_works(
        session_redis, hub_settings, api, celery_worker):
    from app.jobs.dispatch import submit_smoke_chain

    assert anonymous_reply(session_redis.port, b"LRANGE io 0 -1").startswith(b"-NOAUTH")

    # Cache/limiter Redis, broker and result backend all authenticate with the URL's password.
    assert session_redis.password in hub_settings.redis_url
    assert session_redis.password in hub_settings.celery_broker_url
    assert api.get("/readyz").status_code == 200
    assert submit_smoke_chain(21).get(timeout=60)["value"] == 42


def test_worker_beat_and_flower_logs_never_show_the_redis_password(
        session_redis, celery_worker, beats, flower):
    beat = beats.start()

    logs = {"worker": celery_worker.log_text(), "beat": beat.log_text(),
            "flower": flower.log_text()}

    for name, text in logs.items():
        assert session_redis.password not in text, name
    # Celery, redbeat and Flower print the broker and Redis URLs masked.
    assert "redis://:**@127.0.0.1" in logs["worker"]
    assert "redis://:**@127.0.0.1" in logs["beat"]
