#!/usr/bin/python3
"""A client written the seeds' way, against a Switchboard node.

The seeds' FastAPI guide tests its server with a Python `websockets` client
that subscribes with {"type": "subscribe", "room": ...} and answers every
{"type": "ping"} with {"type": "pong"}; its backend publishes with
POST /broadcast/{room}, and its server broadcasts a client's message to the
room with exclude=websocket. This script does the same against Switchboard
(JSON heartbeats asked for with ?json_ping=1, exclude_self for the
exclusion) and exits 0 when everything behaves as the seeds expect, 1 with
a message on stderr otherwise.

    /usr/bin/python3 interop/seed_client.py ws://127.0.0.1:PORT/ws PINGS

interop/interop_test.go starts a node with a 5 s heartbeat and runs this
script; every receive is bounded, so nothing hangs.
"""

import asyncio
import json
import sys
import urllib.request

import websockets

TIMEOUT = 15.0  # seconds per expected frame: a heartbeat is at most 5 s away
ROOM = "match:456"


class CheckFailed(Exception):
    pass


def check(cond, what, got=None):
    if not cond:
        raise CheckFailed(what + ("" if got is None else ": got %r" % (got,)))


class SeedClient:
    """Receives frames; answers JSON pings as the seeds' clients do."""

    def __init__(self, ws):
        self.ws = ws
        self.pings = 0
        self.errors = []

    async def next(self, what, want):
        """The next frame of type want, answering pings on the way."""
        while True:
            try:
                raw = await asyncio.wait_for(self.ws.recv(), TIMEOUT)
            except asyncio.TimeoutError:
                raise CheckFailed("no %s within %.0f s" % (what, TIMEOUT))
            data = json.loads(raw)
            if data["type"] == "ping":
                self.pings += 1
                await self.ws.send(json.dumps({"type": "pong"}))
                if want == "ping":
                    return data
                continue
            if data["type"] == "error":
                self.errors.append(data)
            if data["type"] in ("user_joined", "user_left"):
                continue
            check(data["type"] == want, "waiting for " + what, data)
            return data


async def main(url, want_pings):
    http = url.replace("ws://", "http://").replace("/ws", "")
    async with websockets.connect(url + "?json_ping=1") as a, websockets.connect(url + "?json_ping=1") as b:
        ca, cb = SeedClient(a), SeedClient(b)
        for c in (ca, cb):
            hello = await c.next("connection_established", "connection_established")
            check(hello["data"].get("json_ping") is True, "connection_established announces json_ping", hello)
            await c.ws.send(json.dumps({"type": "subscribe", "room": ROOM}))
            await c.next("subscribed", "subscribed")

        # The seeds' chat: a's message goes to the rest of the room.
        await a.send(json.dumps({"type": "message", "id": "m1", "room": ROOM, "data": {"text": "hi"}, "exclude_self": True}))
        ack = await ca.next("ack", "ack")
        got = await cb.next("a's message", "message")
        check(got["id"] == ack["data"]["event_id"] and got["data"] == {"text": "hi"}, "b gets a's message", got)

        # The seeds' backend: POST /broadcast/{room} with a JSON object.
        req = urllib.request.Request(http + "/broadcast/" + ROOM, data=json.dumps({"score": "1-0"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
            answer = json.loads(resp.read())
        check(answer["status"] == "sent" and answer["room"] == ROOM and answer["recipients"] == 2, "broadcast answer", answer)
        for c in (ca, cb):
            # a's first room event is this one: its own message never came.
            ev = await c.next("the backend's broadcast", "broadcast")
            check(ev["data"] == {"score": "1-0"} and ev["id"] == answer["event_id"], "broadcast event", ev)

        # Heartbeats: answer JSON pings and stay connected through them.
        while ca.pings < want_pings:
            await ca.next("a JSON ping", "ping")
        while cb.pings < want_pings:
            await cb.next("a JSON ping", "ping")
        await a.send(json.dumps({"type": "ping"}))  # the seeds' client-side heartbeat
        await ca.next("the pong to a's ping", "pong")
        for c in (ca, cb):
            check(not c.errors, "no error events for the pongs", c.errors)
    print("seed-style client: ok (%d and %d JSON pings answered)" % (ca.pings, cb.pings))


if __name__ == "__main__":
    try:
        asyncio.run(main(sys.argv[1], int(sys.argv[2])))
    except CheckFailed as e:
        print("seed_client.py: FAIL: %s" % e, file=sys.stderr)
        sys.exit(1)
