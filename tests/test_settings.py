"""Settings: embedded defaults, environment overrides, secrets from env or files."""

import os
import stat
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT, SETTINGS, SettingsError, load_settings, settings_table

# Every secret given, so nothing is generated into the (project-relative) data folder.
ALL_SECRETS = {"HUB_SECRET_KEY": "k", "FLOWER_BASIC_AUTH": "u:p",
               "HUB_JWT_SIGNING_KEYS": "k1:" + "k" * 40, "HUB_PSEUDONYM_KEY": "p" * 40,
               "HUB_EMBEDDED_REDIS_PASSWORD": "r" * 32, "HUB_METRICS_BASIC_AUTH": "m:p"}


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


def test_defaults_use_sqlite_and_embedded_redis_under_the_data_folder(data_dir):
    settings = load_settings({"HUB_DATA_DIR": str(data_dir)})

    assert settings.database_url == f"sqlite:///{data_dir / 'hub.db'}"
    assert settings.redis_is_embedded
    password = (data_dir / "secrets" / "hub_embedded_redis_password").read_text()
    assert settings.redis_url == f"redis://:{password}@127.0.0.1:6390/0"
    assert settings.celery_broker_url == settings.redis_url
    assert settings.celery_result_backend == settings.redis_url
    assert settings.hub_secrets_dir == data_dir / "secrets"
    assert settings.hub_env == "development"


def test_relative_data_folder_is_under_the_project_root():
    settings = load_settings({"HUB_DATA_DIR": "var-test-relative", **ALL_SECRETS})

    assert settings.hub_data_dir == PROJECT_ROOT / "var-test-relative"
    assert not (PROJECT_ROOT / "var-test-relative").exists()


def test_environment_overrides_every_url(data_dir):
    settings = load_settings({
        "HUB_DATA_DIR": str(data_dir),
        "DATABASE_URL": "postgresql+psycopg://hub@db.internal/hub",
        "REDIS_URL": "redis://cache.internal:6379/2",
        "CELERY_BROKER_URL": "amqp://guest:guest@mq.internal:5672//",
    })

    assert settings.database_url == "postgresql+psycopg://hub@db.internal/hub"
    assert not settings.redis_is_embedded
    assert settings.redis_url == "redis://cache.internal:6379/2"
    assert settings.celery_broker_url == "amqp://guest:guest@mq.internal:5672//"
    assert settings.celery_result_backend == "redis://cache.internal:6379/2"


def test_numbers_are_parsed_and_bad_numbers_name_the_variable(data_dir):
    assert load_settings({"HUB_DATA_DIR": str(data_dir), "HUB_API_PORT": "9100"}).hub_api_port == 9100

    with pytest.raises(SettingsError, match="HUB_API_PORT must be a int"):
        load_settings({"HUB_DATA_DIR": str(data_dir), "HUB_API_PORT": "ninety"})


def test_visibility_timeout_must_exceed_task_time_limit(data_dir):
    with pytest.raises(SettingsError, match="HUB_VISIBILITY_TIMEOUT"):
        load_settings({"HUB_DATA_DIR": str(data_dir), "HUB_TASK_TIME_LIMIT": "600",
                       "HUB_VISIBILITY_TIMEOUT": "600"})


def test_result_expiry_of_zero_is_refused(data_dir):
    with pytest.raises(SettingsError, match="HUB_RESULT_EXPIRES"):
        load_settings({"HUB_DATA_DIR": str(data_dir), "HUB_RESULT_EXPIRES": "0"})


def test_development_generates_secrets_once_with_owner_only_permissions(data_dir):
    first = load_settings({"HUB_DATA_DIR": str(data_dir)})
    second = load_settings({"HUB_DATA_DIR": str(data_dir)})

    assert first.hub_secret_key == second.hub_secret_key
    assert len(first.hub_secret_key) >= 32
    assert first.flower_basic_auth.startswith("operator:")
    key_file = data_dir / "secrets" / "hub_secret_key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600


def test_secrets_come_from_the_environment_or_a_file(data_dir, tmp_path):
    secret_file = tmp_path / "flower"
    secret_file.write_text("ops:from-file\n")

    settings = load_settings({"HUB_DATA_DIR": str(data_dir), "HUB_SECRET_KEY": "from-env",
                              "FLOWER_BASIC_AUTH_FILE": str(secret_file),
                              "HUB_JWT_SIGNING_KEYS": "k1:" + "k" * 40,
                              "HUB_PSEUDONYM_KEY": "p" * 40,
                              "HUB_EMBEDDED_REDIS_PASSWORD": "r" * 32,
                              "HUB_METRICS_BASIC_AUTH": "prometheus:from-env"})

    assert settings.hub_secret_key == "from-env"
    assert settings.flower_basic_auth == "ops:from-file"
    assert settings.hub_jwt_signing_keys == "k1:" + "k" * 40
    assert not (data_dir / "secrets").exists()


def test_unreadable_secret_file_is_an_error_naming_the_variable(data_dir, tmp_path):
    with pytest.raises(SettingsError, match="HUB_SECRET_KEY_FILE cannot be read"):
        load_settings({"HUB_DATA_DIR": str(data_dir),
                       "HUB_SECRET_KEY_FILE": str(tmp_path / "missing")})


def test_production_refuses_to_start_without_secrets(data_dir):
    with pytest.raises(SettingsError, match="HUB_SECRET_KEY or HUB_SECRET_KEY_FILE"):
        load_settings({"HUB_DATA_DIR": str(data_dir), "HUB_ENV": "production"})


def test_redacted_settings_hide_secrets_and_url_passwords(data_dir):
    settings = load_settings({"HUB_DATA_DIR": str(data_dir), "HUB_SECRET_KEY": "s3cret",
                              "CELERY_BROKER_URL": "amqp://hub:hunter2@mq:5672//"})

    shown = settings.redacted()

    assert shown["HUB_SECRET_KEY"] == "***"
    assert shown["CELERY_BROKER_URL"] == "amqp://hub:***@mq:5672//"
    assert "s3cret" not in repr(settings) and "hunter2" not in str(shown)


def test_readme_lists_every_setting_exactly_as_declared():
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")

    assert settings_table() in readme
    assert len(SETTINGS) == settings_table().count("\n| `")


def test_malformed_cache_ttls_are_refused(data_dir):
    with pytest.raises(SettingsError, match="HUB_CACHE_TTLS"):
        load_settings({"HUB_DATA_DIR": str(data_dir), "HUB_CACHE_TTLS": "administrations=soon"})


def test_a_malformed_default_sync_schedule_stops_the_app_at_start(data_dir):
    from app import create_app

    # The settings module reads the schedule as text; the syncs check its grammar at start.
    settings = load_settings({"HUB_DATA_DIR": str(data_dir), "HUB_SYNC_CACHE_WARMING": "hourly",
                              **ALL_SECRETS})

    with pytest.raises(SettingsError, match="HUB_SYNC_CACHE_WARMING"):
        create_app(settings)


def test_embedded_redis_gets_a_generated_password_that_its_url_carries(data_dir):
    first = load_settings({"HUB_DATA_DIR": str(data_dir)})
    second = load_settings({"HUB_DATA_DIR": str(data_dir)})

    password = first.hub_embedded_redis_password
    assert len(password) >= 32 and password == second.hub_embedded_redis_password
    password_file = data_dir / "secrets" / "hub_embedded_redis_password"
    assert stat.S_IMODE(os.stat(password_file).st_mode) == 0o600
    assert first.redis_url.startswith(f"redis://:{password}@127.0.0.1:")
    assert first.celery_broker_url == first.celery_result_backend == first.redis_url
    assert password not in repr(first) and password not in str(first.redacted())
    assert first.redacted()["REDIS_URL"] == "redis://:***@127.0.0.1:6390/0"


def test_a_configured_redis_url_needs_no_embedded_password(data_dir):
    settings = load_settings({"HUB_DATA_DIR": str(data_dir), "HUB_ENV": "production",
                              **{k: v for k, v in ALL_SECRETS.items()
                                 if k != "HUB_EMBEDDED_REDIS_PASSWORD"},
                              "REDIS_URL": "redis://:cache-secret@cache.internal:6379/0"})

    assert settings.hub_embedded_redis_password == ""
    assert settings.redis_url == "redis://:cache-secret@cache.internal:6379/0"
