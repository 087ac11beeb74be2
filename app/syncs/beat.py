"""Beat's schedule in Redis (celery-redbeat): the one module that writes or reads it.

Each enabled sync is one redbeat entry named ``sync:{kind}:{tenant slug | hub}`` whose task
gets the schedule id as its only argument. Entries carry their last run time in Redis, so a
restarted beat neither forgets a due run nor runs it twice, and a changed interval keeps the
last run it counts from. Beat reads the entries on every loop: a change here reaches it within
``HUB_BEAT_MAX_LOOP_INTERVAL`` seconds, without a deploy or a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis
from redbeat.schedulers import REDBEAT_REDIS_KEY, RedBeatSchedulerEntry, ensure_conf, get_redis

from app.jobs.dispatch import celery_client
from app.redis_connection import make_redis
from app.syncs.specs import expires_seconds, is_interval, parse_schedule

logger = logging.getLogger(__name__)

ENTRY_PREFIX = "sync:"


@dataclass(frozen=True)
class WantedEntry:
    """What one enabled sync's beat entry should say."""

    task: str
    schedule_id: str
    spec: str


@dataclass(frozen=True)
class BeatChanges:
    added: int
    changed: int
    removed: int


def _app():
    app = celery_client()
    if getattr(app, REDBEAT_REDIS_KEY, None) is None:
        ensure_conf(app)
        # The hub's own short-timeout client: an API request or a task fails fast when Redis is
        # unreachable (beat rides through outages in its scheduler, tasks/beat.py).
        setattr(app, REDBEAT_REDIS_KEY, make_redis(app.redbeat_conf.redis_url))
    return app


def _entry(app, name: str, wanted: WantedEntry) -> RedBeatSchedulerEntry:
    return RedBeatSchedulerEntry(name, wanted.task, parse_schedule(wanted.spec),
                                 args=[wanted.schedule_id],
                                 options={"expires": expires_seconds(wanted.spec)}, app=app)


def write_entries(wanted: dict[str, WantedEntry]) -> BeatChanges:
    """Make beat's sync entries exactly ``wanted``: add missing ones, rewrite changed ones
    (keeping their last run), delete the rest. Entries that already match are not touched."""
    app = _app()
    client = get_redis(app)
    prefix = app.redbeat_conf.key_prefix
    existing = {key[len(prefix):] for key in client.scan_iter(match=f"{prefix}{ENTRY_PREFIX}*")}
    removed = existing - set(wanted)
    for name in removed:
        RedBeatSchedulerEntry(name, app=app).delete()
    added = changed = 0
    for name, spec in wanted.items():
        entry = _entry(app, name, spec)
        try:
            current = RedBeatSchedulerEntry.from_key(entry.key, app=app)
        except KeyError:
            current = None
        if current is not None:
            if (current.task, list(current.args), current.options, current.schedule) == \
                    (entry.task, list(entry.args), entry.options, entry.schedule):
                continue
            entry.last_run_at = current.last_run_at
            changed += 1
        else:
            added += 1
            if is_interval(spec.spec):
                # A new (or re-enabled) interval sync runs at its first beat loop, so a new
                # tenant's snapshot exists at once; a crontab waits for its time.
                entry.last_run_at = None
        entry.save()
    return BeatChanges(added=added, changed=changed, removed=len(removed))


def next_due(names: list[str]) -> dict[str, datetime | None]:
    """When beat will next send each named entry (None: no entry, i.e. disabled, or Redis is
    unreachable: the rest of a status answer does not depend on it).

    A coming run is worked out from the entry's schedule and last run, as beat decides it:
    redbeat scores a rewritten entry early in its sorted set (by the time since its last run),
    which only makes beat look at it sooner but would show the wrong time. An entry already
    due (never run, or overdue) shows its score: the moment it fell due.
    """
    if not names:
        return {}
    app = _app()
    prefix = app.redbeat_conf.key_prefix
    try:
        with get_redis(app).pipeline() as pipe:
            for name in names:
                pipe.hmget(prefix + name, "definition", "meta")
                pipe.zscore(app.redbeat_conf.schedule_key, prefix + name)
            stored = pipe.execute()
    except redis.RedisError:
        logger.warning("beat's schedule is unreachable: next due times unknown")
        return dict.fromkeys(names)
    due: dict[str, datetime | None] = {}
    for name, (definition, meta), score in zip(names, stored[::2], stored[1::2], strict=True):
        if not definition or score is None:
            due[name] = None
            continue
        schedule = RedBeatSchedulerEntry.decode_definition(definition)["schedule"]
        last_run_at = RedBeatSchedulerEntry.decode_meta(meta)["last_run_at"]
        remaining = schedule.remaining_estimate(last_run_at) if last_run_at else None
        if remaining is not None and remaining > timedelta(0):
            due[name] = _whole_second(datetime.now(UTC) + remaining)
        else:
            # Never run or overdue: beat sends it at its next loop; the score says since when.
            due[name] = datetime.fromtimestamp(score, UTC)
    return due


def _whole_second(moment: datetime) -> datetime:
    # Celery's estimate for a crontab lands a few microseconds before the minute it means.
    return moment.replace(microsecond=0) + (timedelta(seconds=1) if moment.microsecond else
                                            timedelta(0))
