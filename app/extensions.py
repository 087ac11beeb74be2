"""The long-lived connections one hub process holds, reachable from views, services and tasks."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from flask import current_app

from app.auth.tokens import SigningKeys
from app.database import Database
from app.redis_connection import make_redis
from app.settings import Settings


@dataclass
class HubResources:
    """Settings, database, Redis and token signing keys of this process."""

    settings: Settings
    database: Database
    redis: redis.Redis
    signing_keys: SigningKeys

    @classmethod
    def from_settings(cls, settings: Settings) -> HubResources:
        return cls(settings=settings, database=Database(settings.database_url),
                   redis=make_redis(settings.redis_url),
                   signing_keys=SigningKeys.parse(settings.hub_jwt_signing_keys))


def resources() -> HubResources:
    """Return the current Flask app's resources."""
    return current_app.extensions["hub"]
