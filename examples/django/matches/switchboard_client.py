"""The project's one Switchboard API client, built from settings."""

from functools import lru_cache

from django.conf import settings

from switchboard import APIClient


@lru_cache(maxsize=None)
def api() -> APIClient:
    return APIClient(settings.SWITCHBOARD_URL, settings.SWITCHBOARD_API_KEY or None)
