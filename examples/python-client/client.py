#!/usr/bin/env python3
"""A Switchboard client in Python: subscribe to rooms and print their events.

    python3 client.py                                   # demo-match:1 on ws://127.0.0.1:8080/ws
    python3 client.py --url ws://127.0.0.1:8080/ws --room chat:lobby --say "hello from Python"
    python3 client.py --room match:1 --room match:2 --max-events 10

Room events are printed to stdout, one JSON object a line; what happens to
the connection goes to stderr. It reconnects after a network failure or a
server restart, with full-jitter backoff, and subscribes again with the last
event id it saw, so the server replays what it missed (docs/protocol.md).

Needs the websockets library: Debian's python3-websockets
(apt-get install python3-websockets) with /usr/bin/python3, or
pip install websockets.
"""

import argparse
import asyncio
import json
import random
import sys

import websockets

# Close codes after which reconnecting cannot help (docs/protocol.md, close
# codes): the server would refuse again. Others (1006 network failure,
# 1011, 1012 restart, 1013, 4005 slow consumer, 4008) are retried.
STOP = {1000, 1001, 1002, 1003, 1007, 1008, 1009, 4001, 4003, 4004, 4006}


def should_retry(code, advice):
    """The server's disconnect advice wins; then the table: of the
    application codes only 4005 and 4008 are retried (4000 would need a new
    token, which this client does not have)."""
    if advice and advice.get("code") == code:
        return bool(advice.get("reconnect"))
    if code in STOP:
        return False
    return code < 4000 or code in (4005, 4008)


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def newer(event_id, last):
    """Whether event_id (EPOCH-OFFSET) is after last in the same epoch.
    An event from another epoch (the room's history was reset) is new."""
    if not last:
        return True
    e1, _, o1 = event_id.rpartition("-")
    e2, _, o2 = last.rpartition("-")
    if e1 != e2 or not o1.isdigit() or not o2.isdigit():
        return True
    return int(o1) > int(o2)


async def run(args):
    last = {}  # room -> id of the newest event seen
    seen = 0
    said = False
    attempt = 0
    while True:
        code, reason = 1006, "connection failed"
        advice = None
        try:
            async with websockets.connect(args.url, subprotocols=["switchboard.v1"], open_timeout=10, close_timeout=5) as ws:
                hello = json.loads(await asyncio.wait_for(ws.recv(), 10))
                if hello.get("type") != "connection_established":
                    log("unexpected first message:", hello)
                    return 1
                log(f"connected as {hello['data']['user_id']} (node {hello['data'].get('node')})")
                attempt = 0
                for i, room in enumerate(args.room):
                    sub = {"type": "subscribe", "id": f"sub-{i}", "room": room}
                    if room in last:
                        sub["last_event_id"] = last[room]
                    await ws.send(json.dumps(sub))
                async for raw in ws:
                    m = json.loads(raw)
                    t, room = m.get("type"), m.get("room")
                    if t == "subscribed":
                        d = m["data"]
                        log(f"subscribed to {room}: {d.get('members')} member(s)"
                            + ("" if "recovered" not in d else f", recovered={d['recovered']}, replayed={d.get('replayed', 0)}"))
                        if room not in last and d.get("recovered") is not True:
                            last[room] = d.get("position") or None
                        if args.say and not said and room == args.room[0]:
                            said = True
                            await ws.send(json.dumps({"type": "message", "id": f"py-{random.getrandbits(64):x}", "room": room,
                                                      "data": {"text": args.say, "name": "python"}}))
                    elif t == "disconnect":
                        advice = m["data"]
                    elif t == "error":
                        log("error:", json.dumps(m["data"]))
                    elif t in ("ack", "pong", "unsubscribed"):
                        pass
                    elif room in args.room:
                        eid = m.get("id")
                        if eid:
                            if not newer(eid, last.get(room)):
                                continue  # already seen before the reconnect
                            last[room] = eid
                        print(json.dumps(m), flush=True)
                        if eid:
                            seen += 1
                            if args.max_events and seen >= args.max_events:
                                await ws.close(1000)
                                return 0
                code, reason = ws.close_code or 1006, ws.close_reason or ""
        except websockets.ConnectionClosed as e:
            if e.rcvd is not None:
                code, reason = e.rcvd.code, e.rcvd.reason
        except (OSError, asyncio.TimeoutError, websockets.InvalidHandshake) as e:
            reason = str(e) or type(e).__name__
        if not should_retry(code, advice):
            log(f"closed with {code} {reason!r}: not reconnecting")
            return 0 if code in (1000, 1001) else 1
        if args.max_attempts and attempt >= args.max_attempts:
            log(f"gave up after {attempt} attempts")
            return 1
        delay = random.uniform(0, min(30.0, 0.5 * 2**attempt))
        attempt += 1
        log(f"closed with {code} {reason!r}: reconnecting in {delay:.1f} s")
        await asyncio.sleep(delay)


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


if __name__ == "__main__":
    sys.exit(main())
