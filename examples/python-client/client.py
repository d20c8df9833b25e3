#!/usr/bin/env python3
"""A Switchboard client in Python: subscribe to rooms and print their events.

    python3 client.py                                   # demo-match:1 on ws://127.0.0.1:8080/ws
    python3 client.py --url ws://127.0.0.1:8080/ws --room chat:lobby --say "hello from Python"
    python3 client.py --room match:1 --room match:2 --max-events 10

Room events are printed to stdout, one JSON object a line; what happens to
the connection goes to stderr. The Python SDK's realtime client
(clients/python, switchboard.realtime) reconnects after a network failure
or a server restart with full-jitter backoff, subscribes again with the
last event id it saw, so the server replays what it missed, and drops
duplicates (docs/protocol.md).

Needs the websockets library: Debian's python3-websockets
(apt-get install python3-websockets) with /usr/bin/python3, or
pip install websockets.
"""

import argparse
import asyncio
import json
import os
import sys

try:
    import switchboard  # noqa: F401
except ImportError:  # run from a checkout without `pip install ./clients/python`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))

from switchboard.realtime import Client


def log(*args):
    print(*args, file=sys.stderr, flush=True)


async def run(args):
    done = asyncio.Event()
    seen = 0

    def on_event(ev):
        nonlocal seen
        if ev.recovery_failed:
            log(f"{ev.room}: events were lost for good; live from {ev.id}")
            return
        print(json.dumps(dict(ev.raw)), flush=True)
        if ev.id:
            seen += 1
            if args.max_events and seen >= args.max_events:
                done.set()

    def on_state(state, err):
        if state == "open" and client.info is not None:
            log(f"connected as {client.info.user_id} (node {client.info.node})")
        elif state == "reconnecting" and err is not None:
            log(f"{err}: reconnecting")
        elif state == "closed":
            done.set()

    def on_subscribed(info):
        extra = "" if info.recovered is None else f", recovered={info.recovered}, replayed={info.replayed}"
        log(f"subscribed to {info.room}: {info.members} member(s){extra}")

    client = Client(args.url, max_attempts=args.max_attempts, on_state=on_state, on_error=lambda e: log("error:", e))
    try:
        await client.connect(timeout=60)
        for room in args.room:
            await client.subscribe(room, on_event, on_subscribed=on_subscribed)
        if args.say:
            await client.publish(args.room[0], {"text": args.say, "name": "python"})
        await done.wait()
    finally:
        await client.close()
    if client.error is not None:
        log(f"stopped: {client.error}")
        return 1
    return 0


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    p.add_argument("--room", action="append", help="room to subscribe to (repeatable); default demo-match:1")
    p.add_argument("--say", help="publish this text as a message to the first room once subscribed")
    p.add_argument("--max-events", type=int, default=0, help="exit after this many room events (0: run until stopped)")
    p.add_argument("--max-attempts", type=int, default=0, help="give up after this many failed reconnects in a row (0: never)")
    args = p.parse_args()
    args.room = args.room or ["demo-match:1"]
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0
    except Exception as e:  # the first connection failed
        log(f"client.py: {e}")
        return 1


if __name__ == "__main__":
    sys.exit(main())
