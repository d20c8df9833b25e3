"""A minimal Django project that publishes through Switchboard.

Switchboard holds the WebSocket connections, so this project needs no
Channels, no channel layer and no ASGI consumer: it calls the server API
(the Python SDK) and receives Switchboard's webhooks. Everything comes from
the environment.
"""

import os
import sys

try:
    import switchboard  # noqa: F401
except ImportError:  # run from a checkout without `pip install ./clients/python`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "clients", "python"))

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["localhost", "127.0.0.1", "testserver"]

INSTALLED_APPS = ["matches"]
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "project.urls"
DATABASES = {}  # the example keeps nothing
USE_TZ = True

# Switchboard: the node's API (its key) and the webhook secret(s), comma
# separated while rotating.
SWITCHBOARD_URL = os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:8080")
SWITCHBOARD_API_KEY = os.environ.get("SWITCHBOARD_API_KEY", "")
SWITCHBOARD_WEBHOOK_SECRETS = [s for s in os.environ.get("SWITCHBOARD_WEBHOOK_SECRET", "").split(",") if s]
