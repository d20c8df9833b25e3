#!/usr/bin/env python3
"""Publish to Switchboard from a Python backend with the standard library only.

    python3 publish.py                          # a goal to demo-match:1 on http://127.0.0.1:8080
    python3 publish.py --url https://rt.example.com --room match:42
    SWITCHBOARD_API_KEY=... python3 publish.py

Copy the Switchboard class into your application. Every publish carries an
idempotency key, so a retry after a timeout or a 503 can never deliver an
event twice: the server answers a repeated key with the first event's id and
"duplicate": true.
"""

import argparse
import json
import os
import random
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid


class SwitchboardError(Exception):
    """An error answer of the server API: HTTP status, error code, message."""

    def __init__(self, status, code, message):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class Switchboard:
    """A client of the Switchboard server API (docs/api.md)."""

    def __init__(self, url, api_key=None, timeout=10.0, retries=3):
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.timeout = timeout
        self.retries = retries

    def broadcast(self, room, type="message", data=None, idempotency_key=None):
        """Publish an event to a room: {"event_id": ..., "recipients": N}."""
        body = {"type": type, "data": data, "idempotency_key": idempotency_key or uuid.uuid4().hex}
        return self._call("POST", "/api/broadcast/" + urllib.parse.quote(room, safe=":@=+-._"), body)

    def publish_batch(self, events):
        """Publish up to 100 events ({room, type, data, idempotency_key}) at once."""
        for ev in events:
            ev.setdefault("idempotency_key", uuid.uuid4().hex)
        return self._call("POST", "/api/publish", {"events": events})

    def disconnect_user(self, user, code=None, reason=None):
        """Close every connection of a user (default code 4006, kicked)."""
        body = {k: v for k, v in (("code", code), ("reason", reason)) if v is not None}
        return self._call("POST", "/api/users/" + urllib.parse.quote(user, safe="") + "/disconnect", body)

    def stats(self):
        return self._call("GET", "/api/stats")

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["Authorization"] = "Bearer " + self.api_key
        for attempt in range(self.retries + 1):
            req = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    return json.load(resp)
            except urllib.error.HTTPError as e:
                try:
                    err = json.load(e).get("error", {})
                except ValueError:
                    err = {}
                # 503 (engine busy, node draining) and other 5xx may be
                # retried; a 4xx will fail the same way again.
                if e.code < 500 or attempt == self.retries:
                    raise SwitchboardError(e.code, err.get("code", "http_error"), err.get("message", e.reason)) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt == self.retries:
                    raise SwitchboardError(0, "unreachable", str(e)) from None
            # Full-jitter backoff: 0.2 s, 0.4 s, 0.8 s caps.
            time.sleep(random.uniform(0, 0.2 * 2**attempt))
        raise AssertionError("unreachable")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:8080"))
    p.add_argument("--room", default="demo-match:1")
    args = p.parse_args()
    sb = Switchboard(args.url, os.environ.get("SWITCHBOARD_API_KEY"))
    match_id = args.room.rsplit(":", 1)[-1]
    try:
        # A goal: the score and a line of commentary. The same key sent
        # twice (as a retry would) publishes the event once.
        key = "goal-" + uuid.uuid4().hex
        goal = {"match_id": match_id, "score": {"home": 1, "away": 0}, "minute": 23, "status": "live"}
        first = sb.broadcast(args.room, "score_update", goal, idempotency_key=key)
        again = sb.broadcast(args.room, "score_update", goal, idempotency_key=key)
        print("score_update", json.dumps(first))
        print("score_update again", json.dumps(again))
        batch = sb.publish_batch([
            {"room": args.room, "type": "commentary", "data": {"match_id": match_id, "minute": 23, "text": "GOAL! A header from the corner."}},
            {"room": args.room, "type": "commentary", "data": {"match_id": match_id, "minute": 24, "text": "The restart is delayed."}},
        ])
        print("batch", json.dumps(batch))
        node = sb.stats()["node"]
        print("stats", json.dumps({k: node[k] for k in ("connections", "rooms", "publications")}))
    except SwitchboardError as e:
        print(f"publish.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
