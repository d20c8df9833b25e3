#!/usr/bin/env python3
"""Publish to Switchboard from a Python backend with the Python SDK.

    python3 publish.py                          # a goal to demo-match:1 on http://127.0.0.1:8080
    python3 publish.py --url https://rt.example.com --room match:42
    SWITCHBOARD_API_KEY=... python3 publish.py

The SDK's server API client (clients/python, standard library only) gives
every publish an idempotency key, so a retry after a timeout or a 503 can
never deliver an event twice: the server answers a repeated key with the
first event's id and "duplicate": true.
"""

import argparse
import dataclasses
import json
import os
import sys
import uuid

try:
    import switchboard
except ImportError:  # run from a checkout without `pip install ./clients/python`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
    import switchboard


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default=os.environ.get("SWITCHBOARD_URL", "http://127.0.0.1:8080"))
    p.add_argument("--room", default="demo-match:1")
    args = p.parse_args()
    sb = switchboard.APIClient(args.url, os.environ.get("SWITCHBOARD_API_KEY"))
    match_id = args.room.rsplit(":", 1)[-1]
    try:
        # A goal: the score and a line of commentary. The same key sent
        # twice (as a retry would) publishes the event once.
        key = "goal-" + uuid.uuid4().hex
        goal = {"match_id": match_id, "score": {"home": 1, "away": 0}, "minute": 23, "status": "live"}
        first = sb.publish(args.room, goal, type="score_update", idempotency_key=key)
        again = sb.publish(args.room, goal, type="score_update", idempotency_key=key)
        print("score_update", json.dumps(dataclasses.asdict(first)))
        print("score_update again", json.dumps(dataclasses.asdict(again)))
        batch = sb.publish_many([
            {"room": args.room, "type": "commentary", "data": {"match_id": match_id, "minute": 23, "text": "GOAL! A header from the corner."}},
            {"room": args.room, "type": "commentary", "data": {"match_id": match_id, "minute": 24, "text": "The restart is delayed."}},
        ])
        print("batch", json.dumps(dataclasses.asdict(batch)))
        node = sb.stats()["node"]
        print("stats", json.dumps({k: node[k] for k in ("connections", "rooms", "publications")}))
    except switchboard.SwitchboardError as e:
        print(f"publish.py: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
