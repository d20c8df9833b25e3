"""Shared by the tests: what they need from the environment.

Outside CI a missing module or server skips the tests that need it; under
CI=true it fails them, since CI installs everything (.ci/run).
"""

import importlib
import os
import unittest

CI = os.environ.get("CI", "") not in ("", "0", "false")


def missing(why):
    if CI:
        raise RuntimeError(why + " (CI is set: this must not be skipped)")
    raise unittest.SkipTest(why)


def require_module(name):
    try:
        importlib.import_module(name)
    except ImportError as e:
        missing(f"cannot import {name}: {e} (apt-get install -y python3-{name})")


def server():
    """(API URL, WebSocket URL, API key, JWT secret) of the node the Go
    test started (clients/python/python_test.go)."""
    env = {k: os.environ.get(k, "") for k in ("SWITCHBOARD_URL", "SWITCHBOARD_WS_URL", "SWITCHBOARD_API_KEY", "SWITCHBOARD_JWT_SECRET")}
    if not all(env.values()):
        missing("no Switchboard node: run these tests with go test ./clients/python/, which starts one "
                "and sets SWITCHBOARD_URL, SWITCHBOARD_WS_URL, SWITCHBOARD_API_KEY and SWITCHBOARD_JWT_SECRET")
    return env["SWITCHBOARD_URL"], env["SWITCHBOARD_WS_URL"], env["SWITCHBOARD_API_KEY"], env["SWITCHBOARD_JWT_SECRET"]


def make_token(secret, user, ttl=3600, **claims):
    """An HS256 connection token for user (switchboard.token)."""
    from switchboard.token import connection_token

    return connection_token(secret, user, ttl=ttl, **claims)
