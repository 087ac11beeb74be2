"""Schedule specs: the one text form of a sync's schedule, in settings, the API and the CLI.

A spec is either a whole number of seconds between runs (``"300"``) or a five-field crontab,
``minute hour day-of-month month day-of-week``, evaluated in UTC (``"30 6 * * *"``).
"""

from __future__ import annotations

from datetime import timedelta

from celery.schedules import crontab, schedule

from app.settings import SETTINGS, Settings, SettingsError

# A day: the longest interval a sync may be given (longer cadences are crontabs).
MAX_INTERVAL_SECONDS = 86_400
# A crontab run that no worker took within this long is dropped rather than run late.
CRONTAB_EXPIRES_SECONDS = 3_600


class InvalidSchedule(ValueError):
    """A schedule spec that is neither seconds nor a valid crontab; the message says why."""


def is_interval(spec: str) -> bool:
    return spec.strip().isdigit()


def parse_schedule(spec: str, *, min_interval: int = 1) -> schedule | crontab:
    """Return the Celery schedule a spec describes, or raise ``InvalidSchedule``."""
    text = (spec or "").strip()
    if is_interval(text):
        seconds = int(text)
        if not min_interval <= seconds <= MAX_INTERVAL_SECONDS:
            raise InvalidSchedule(f"an interval must be between {min_interval} and "
                                  f"{MAX_INTERVAL_SECONDS} seconds")
        return schedule(run_every=timedelta(seconds=seconds))
    fields = text.split()
    if len(fields) != 5:
        raise InvalidSchedule("expected seconds between runs (\"300\") or a crontab of five "
                              "fields (\"30 6 * * *\")")
    minute, hour, day_of_month, month_of_year, day_of_week = fields
    try:
        # By keyword: celery's positional order is minute, hour, day_of_week, day_of_month…
        return crontab(minute=minute, hour=hour, day_of_month=day_of_month,
                       month_of_year=month_of_year, day_of_week=day_of_week)
    except (ValueError, IndexError) as invalid:
        raise InvalidSchedule(f"not a valid crontab: {invalid}") from None


def normalized(spec: str) -> str:
    """The spec as stored: digits for an interval, single-spaced fields for a crontab."""
    text = spec.strip()
    return str(int(text)) if is_interval(text) else " ".join(text.split())


def described(spec: str) -> dict:
    """The spec as the API shows it: ``{"every_seconds": 300}`` or ``{"crontab": "…"}``."""
    return {"every_seconds": int(spec)} if is_interval(spec) else {"crontab": spec}


def expires_seconds(spec: str) -> int:
    """How long a due run may wait for a worker before it is dropped: its own interval (the
    next run is due by then), or an hour for a crontab."""
    return int(spec) if is_interval(spec) else CRONTAB_EXPIRES_SECONDS


def check_default_schedules(settings: Settings) -> None:
    """Refuse to start when a ``HUB_SYNC_*`` default schedule is not a valid spec (the error
    names the variable). Run at app start: the syncs own this grammar, not the settings."""
    for setting in SETTINGS:
        if setting.name.startswith("HUB_SYNC_") and setting.kind == "str":
            try:
                parse_schedule(getattr(settings, setting.attr))
            except InvalidSchedule as invalid:
                raise SettingsError(f"{setting.name}: {invalid}") from None
