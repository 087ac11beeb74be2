"""Redis stopped and started again under lookup traffic, end to end: the API under gunicorn
on a Redis of the drill's own (cache, rate limits, breaker state), with clients reading
administrations the whole time.

While Redis is down every lookup is answered at once: the cache reads as a miss and the
answer comes from System B, rate limits fall back to each process's memory (a lookup that
cannot do without Redis would answer 503 problem+json ``redis-unavailable`` with Retry-After);
never a 500, never a hang. Once Redis is back the same API processes use the cache again on
their own, without a restart. The database, the broker and System B are the
session's; the session's own Redis is never stopped.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
import requests

from app.problems import PROBLEM_CONTENT_TYPE
from tests.fixtures.processes import wait_until
from tests.fixtures.services import running_gunicorn

pytestmark = pytest.mark.faults

READER = "north-general-inventory"  # administrations:read
UNITS = ("ICU-1", "ICU-2", "ICU-3", "ED-1")
# A request must be answered, not held, while Redis is down: the Redis client's timeouts
# bound it (the API's own socket timeouts are a few seconds).
ANSWER_BOUND_SECONDS = 10
# Once Redis answers again, lookups must succeed within this long (pooled connections that
# broke are replaced on their next use).
RECOVERY_BOUND_SECONDS = 15


@dataclass
class Answer:
    began: float
    at: float
    status: int
    seconds: float
    content_type: str = ""
    problem_type: str = ""
    retry_after: str | None = None
    cache: str = ""


@dataclass
class Traffic:
    """Clients reading administrations in a loop (cache misses and hits mixed) until stopped."""

    base: str
    headers: dict
    answers: list[Answer] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)

    def run(self, offset: int) -> None:
        step = offset
        with requests.Session() as session:
            while not self.stopping.is_set():
                step += 1
                params = {"unit": UNITS[step % len(UNITS)], "page_size": 1 + step % 12}
                began = time.monotonic()
                try:
                    response = session.get(f"{self.base}/v1/administrations", params=params,
                                           headers=self.headers, timeout=ANSWER_BOUND_SECONDS)
                except requests.RequestException as failure:
                    self.errors.append(f"{type(failure).__name__}: {failure}")
                    continue
                answer = Answer(began=began, at=time.monotonic(), status=response.status_code,
                                seconds=time.monotonic() - began,
                                content_type=response.headers.get("Content-Type", ""),
                                retry_after=response.headers.get("Retry-After"),
                                cache=response.headers.get("X-Cache", ""))
                if response.status_code != 200:
                    answer.problem_type = response.json().get("type", "")
                self.answers.append(answer)
                time.sleep(0.02)

    def between(self, start: float, end: float) -> list[Answer]:
        """The answers to requests made and answered between ``start`` and ``end``."""
        return [answer for answer in self.answers if start <= answer.began and answer.at <= end]


@pytest.fixture
def lookup_traffic(hub_environment, demo_tenants, demo_faults_cleared, tokens,
                   restartable_redis, tmp_path):
    """The API (gunicorn, as deployed) on the drill's Redis, and two clients reading."""
    environment = {**hub_environment, "REDIS_URL": restartable_redis.url}
    with running_gunicorn(environment, tmp_path / "api.log") as port:
        traffic = Traffic(f"http://127.0.0.1:{port}", tokens.headers(READER))
        readers = [threading.Thread(target=traffic.run, args=(offset,), daemon=True)
                   for offset in (0, 5)]
        for reader in readers:
            reader.start()
        try:
            yield traffic
        finally:
            traffic.stopping.set()
            for reader in readers:
                reader.join(timeout=ANSWER_BOUND_SECONDS + 5)


@pytest.mark.parametrize("outage_seconds", [
    pytest.param(4, id="4s"),
    pytest.param(30, id="30s", marks=pytest.mark.slow_fault),
])
def test_lookups_are_answered_while_redis_is_down_and_cached_again_once_it_is_back(
        lookup_traffic, restartable_redis, outage_seconds):
    traffic = lookup_traffic
    wait_until(lambda: sum(answer.cache == "HIT" for answer in traffic.answers) >= 10,
               timeout=30, description="cached lookups before the outage")

    outage_began = time.monotonic()
    with restartable_redis.down(outage_seconds):
        stopped_at = time.monotonic()
        assert not restartable_redis.answers()
        wait_until(lambda: len(traffic.between(stopped_at, time.monotonic())) >= 20,
                   timeout=outage_seconds + ANSWER_BOUND_SECONDS,
                   description="lookups answered while Redis is down")
    back_at = time.monotonic()
    # Redis was stopped from stopped_at until its restart began (the outage's length after
    # outage_began): requests made and answered in between met no Redis at all.
    during = traffic.between(stopped_at, outage_began + outage_seconds)
    wait_until(lambda: any(answer.cache == "HIT" for answer in
                           traffic.between(back_at, time.monotonic())),
               timeout=RECOVERY_BOUND_SECONDS, description="a cache HIT after Redis is back")
    recovered_at = min(answer.at for answer in traffic.between(back_at, time.monotonic())
                       if answer.cache == "HIT")
    settled_from = len(traffic.answers)
    wait_until(lambda: len(traffic.answers) >= settled_from + 20, timeout=30,
               description="lookups after the recovery")
    traffic.stopping.set()

    assert not traffic.errors, traffic.errors[:5]  # every request was answered
    # 429: the rate limit still holds, counted in each process's memory while Redis is down.
    assert {answer.status for answer in traffic.answers} <= {200, 429, 503}, sorted(
        {answer.status for answer in traffic.answers})
    assert all(answer.content_type.startswith(PROBLEM_CONTENT_TYPE)
               for answer in traffic.answers if answer.status != 200)
    refused = [answer for answer in traffic.answers if answer.status == 503]
    assert all(answer.content_type.startswith(PROBLEM_CONTENT_TYPE)
               and answer.problem_type.endswith("/redis-unavailable")
               and int(answer.retry_after or 0) >= 1 for answer in refused), refused[:3]
    # While Redis was down nothing came from the cache; lookups were still answered.
    assert not any(answer.cache == "HIT" for answer in during)
    assert any(answer.status == 200 for answer in during)
    assert max(answer.seconds for answer in traffic.answers) < ANSWER_BOUND_SECONDS
    assert any(answer.status == 200 for answer in traffic.answers[settled_from:])
    served = sum(answer.status == 200 for answer in during)
    limited = sum(answer.status == 429 for answer in during)
    print(f"\nRedis down {outage_seconds} s under lookups: {served} of {len(during)} answered "
          f"200 from System B, {limited} 429, {len(refused)} 503; slowest answer "
          f"{max(a.seconds for a in traffic.answers):.2f} s; cache HIT again "
          f"{recovered_at - back_at:.2f} s after Redis was back")
