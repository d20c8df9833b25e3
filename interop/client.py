#!/usr/bin/python3
"""Switchboard protocol check from a second WebSocket implementation.

Speaks docs/protocol.md with the Python `websockets` library (Debian's
python3-websockets, 10.x or later) against a running node and exits 0 when
every check passes, 1 with a message on stderr when one fails.

    /usr/bin/python3 interop/client.py ws://127.0.0.1:PORT/ws

interop/interop_test.go starts a node in-process and runs this script.
Every receive is bounded by TIMEOUT, so a missing answer fails instead of
hanging.
"""

import asyncio
import json
import re
import sys
import uuid

import websockets

TIMEOUT = 5.0  # seconds per expected frame; loopback answers in well under 1 ms
ROOM = "interop:py"
EVENT_ID = re.compile(r"^([a-z0-9]{1,32})-([0-9]+)$")


class CheckFailed(Exception):
    pass


def check(cond, what, got=None):
    if not cond:
        raise CheckFailed(what + ("" if got is None else ": got %r" % (got,)))


async def recv_object(ws, what):
    """Receive one frame, which must be a JSON object in a text frame."""
    try:
        raw = await asyncio.wait_for(ws.recv(), TIMEOUT)
    except asyncio.TimeoutError:
        raise CheckFailed("no frame within %.0f s while waiting for %s" % (TIMEOUT, what))
    check(isinstance(raw, str), "server sent a binary frame while waiting for " + what, raw)
    msg = json.loads(raw)
    check(isinstance(msg, dict), "frame is not a JSON object", msg)
    return msg


async def recv_json(ws, what):
    """Receive one envelope."""
    msg = await recv_object(ws, what)
    check(isinstance(msg.get("type"), str), "frame is not an envelope", msg)
    return msg


async def expect(ws, typ, what, msg_id=None):
    msg = await recv_json(ws, what)
    check(msg["type"] == typ, "%s: want type %r" % (what, typ), msg)
    if msg_id is not None:
        check(msg.get("id") == msg_id, "%s: want id %r" % (what, msg_id), msg)
    return msg


def event_id(s, what):
    m = EVENT_ID.match(s or "")
    check(m is not None, what + ": not an EPOCH-OFFSET event id", s)
    return m.group(1), int(m.group(2))


async def ping(ws, pid):
    """A ping answered by its pong proves nothing else was queued before it."""
    await ws.send(json.dumps({"type": "ping", "id": pid}))
    await expect(ws, "pong", "pong for " + pid, pid)


async def connect(url, opened):
    ws = await asyncio.wait_for(websockets.connect(url, subprotocols=["switchboard.v1"]), TIMEOUT)
    opened.append(ws)
    check(ws.subprotocol == "switchboard.v1", "subprotocol switchboard.v1 not selected", ws.subprotocol)
    hello = await expect(ws, "connection_established", "connection_established (first frame)")
    d = hello.get("data") or {}
    check(isinstance(d.get("user_id"), str) and d["user_id"], "connection_established.data.user_id", d)
    check(isinstance(d.get("connection_id"), str) and d["connection_id"], "connection_established.data.connection_id", d)
    check(isinstance(d.get("server_time"), int) and d["server_time"] > 0, "connection_established.data.server_time", d)
    check(d.get("heartbeat_interval_ms") == 25000, "connection_established.data.heartbeat_interval_ms (default 25 s)", d)
    check(d.get("protocol_version") == 1, "connection_established.data.protocol_version", d)
    check(isinstance(d.get("node"), str) and d["node"], "connection_established.data.node", d)
    return ws, d


async def run(url):
    opened = []
    try:
        await checks(url, opened)
    finally:
        # Left open, a connection makes interpreter shutdown wait out the
        # library's 10 s close timeout; a failed run should fail fast.
        for ws in opened:
            try:
                await asyncio.wait_for(ws.close(), 1)
            except Exception:
                ws.transport.abort()


async def checks(url, opened):
    a, a_info = await connect(url, opened)
    await ping(a, "p1")

    # subscribe: a new room has no events yet, so the position's offset is 0.
    await a.send(json.dumps({"type": "subscribe", "id": "s1", "room": ROOM}))
    sub = await expect(a, "subscribed", "subscribed", "s1")
    check(sub.get("room") == ROOM, "subscribed.room", sub)
    check(sub["data"].get("members") == 1, "subscribed.data.members", sub)
    epoch, offset = event_id(sub["data"].get("position"), "subscribed.data.position")
    check(offset == 0, "subscribed.data.position offset of an empty room", sub)

    # publish with an id: the sender gets its own event (echo is on by
    # default) and an ack naming the same event id, in either order. A
    # UUID id is an idempotency key across connections (section 5).
    pub_id = str(uuid.uuid4())
    payload = {"text": "h\u00e9llo \U0001F44B", "n": 1}
    await a.send(json.dumps({"type": "message", "room": ROOM, "id": pub_id, "data": payload}))
    got = {}
    for _ in range(2):
        msg = await recv_json(a, "event and ack for the first publish")
        check(msg["type"] in ("message", "ack"), "publish answer type", msg)
        check(msg["type"] not in got, "duplicate %s for the first publish" % msg["type"], msg)
        got[msg["type"]] = msg
    ev, ack = got["message"], got["ack"]
    check(ev.get("room") == ROOM, "event.room", ev)
    check(ev.get("user_id") == a_info["user_id"], "event.user_id is the publisher", ev)
    check(ev.get("data") == payload, "event.data round-trips unchanged", ev)
    check(isinstance(ev.get("ts"), int) and ev["ts"] > 0, "event.ts", ev)
    ev_epoch, ev_offset = event_id(ev.get("id"), "event.id")
    check((ev_epoch, ev_offset) == (epoch, 1), "first event id is EPOCH-1 of the subscribed epoch", ev)
    check(ack.get("id") == pub_id and ack.get("room") == ROOM, "ack id and room", ack)
    check(ack["data"].get("event_id") == ev["id"], "ack.data.event_id names the event", ack)
    check(not ack["data"].get("duplicate"), "first ack is not a duplicate", ack)

    # the same id again: acked with the same event id, not delivered again.
    await a.send(json.dumps({"type": "message", "room": ROOM, "id": pub_id, "data": payload}))
    dup = await expect(a, "ack", "ack for the re-sent publish", pub_id)
    check(dup["data"].get("event_id") == ev["id"] and dup["data"].get("duplicate") is True,
          "re-sent publish is acked as a duplicate of the first event", dup)
    await ping(a, "p2")  # a second delivery would have arrived before this pong

    # malformed JSON: an error event, and the connection stays open.
    await a.send("{not json")
    err = await expect(a, "error", "error for malformed JSON")
    check(err["data"].get("code") == "bad_json", "malformed JSON error code", err)
    check(isinstance(err["data"].get("message"), str) and err["data"]["message"], "error.data.message", err)
    await ping(a, "p3")

    # a type only the server sends, and a reserved request not enabled yet.
    await a.send(json.dumps({"type": "ack", "id": "x1"}))
    err = await expect(a, "error", "error for a server-only type", "x1")
    check(err["data"].get("code") == "unknown_type" and err["data"].get("ref") == "x1", "server-only type error", err)
    await a.send(json.dumps({"type": "subscribe", "id": "s-bad", "room": ":bad"}))
    err = await expect(a, "error", "error for an invalid room", "s-bad")
    check(err["data"].get("code") == "invalid_room", "invalid room error code", err)

    # RPC, both forms, with the built-in methods.
    await a.send(json.dumps({"type": "rpc", "id": "c1", "data": {"method": "history", "params": {"room": ROOM, "limit": 10}}}))
    res = await expect(a, "rpc_result", "rpc_result for history", "c1")
    r = res.get("data") or {}
    check(r.get("jsonrpc") == "2.0" and r.get("id") == "c1" and "error" not in r, "rpc_result is a JSON-RPC success", res)
    check([e.get("id") for e in r["result"].get("events", [])] == [ev["id"]], "history over rpc lists the one event", res)
    await a.send(json.dumps({"jsonrpc": "2.0", "id": 7, "method": "presence", "params": {"room": ROOM, "counts_only": True}}))
    raw = await recv_object(a, "raw JSON-RPC response")
    check("type" not in raw and raw.get("jsonrpc") == "2.0" and raw.get("id") == 7, "raw JSON-RPC response shape", raw)
    check(raw.get("result") == {"clients": 1, "users": 1}, "presence over raw JSON-RPC", raw)
    await a.send(json.dumps({"jsonrpc": "2.0", "id": "x", "method": "no_such_method"}))
    raw = await recv_object(a, "raw JSON-RPC error")
    check(raw.get("id") == "x" and (raw.get("error") or {}).get("code") == -32601, "unknown method is -32601", raw)

    # recovery: a second connection that saw event 1 asks for what followed.
    await a.send(json.dumps({"type": "message", "room": ROOM, "data": {"n": 2}}))  # no id: no ack
    ev2 = await expect(a, "message", "second event")
    check(event_id(ev2.get("id"), "second event id") == (epoch, 2), "second event is EPOCH-2", ev2)
    b, b_info = await connect(url, opened)
    await b.send(json.dumps({"type": "subscribe", "id": "s2", "room": ROOM, "last_event_id": ev["id"]}))
    sub2 = await expect(b, "subscribed", "recovering subscribed", "s2")
    check(sub2["data"].get("recovered") is True and sub2["data"].get("replayed") == 1, "recovered one missed event", sub2)
    check(sub2["data"].get("members") == 2, "subscribed.data.members counts both connections", sub2)
    replay = await expect(b, "message", "replayed event")
    check(replay.get("id") == ev2["id"] and replay.get("data") == {"n": 2}, "replayed event is event 2", replay)
    joined = await expect(a, "user_joined", "user_joined for the second connection")
    check(joined.get("room") == ROOM and joined.get("user_id") == b_info["user_id"], "user_joined room and user", joined)
    check(joined["data"].get("connection_id") == b_info["connection_id"], "user_joined.data.connection_id", joined)
    await ping(b, "p4")  # b is not told about its own join

    # unsubscribe: answered, and the other member hears user_left.
    await b.send(json.dumps({"type": "unsubscribe", "id": "u1", "room": ROOM}))
    unsub = await expect(b, "unsubscribed", "unsubscribed", "u1")
    check(unsub.get("room") == ROOM, "unsubscribed.room", unsub)
    left = await expect(a, "user_left", "user_left for the second connection")
    check(left.get("user_id") == b_info["user_id"], "user_left.user_id", left)

    # a retry from another connection (as after a reconnect) with the same
    # UUID: acked as a duplicate, not delivered to the room again.
    await b.send(json.dumps({"type": "message", "room": ROOM, "id": pub_id, "data": payload}))
    dup = await expect(b, "ack", "ack for the publish retried on another connection", pub_id)
    check(dup["data"].get("event_id") == ev["id"] and dup["data"].get("duplicate") is True,
          "retry from another connection is a duplicate of the first event", dup)
    await ping(a, "p5")  # a is in the room: a second delivery would come first

    # a binary frame: a disconnect event, then close 1003, no reconnect.
    await b.send(b"\x00\x01")
    bye = await expect(b, "disconnect", "disconnect before close 1003")
    check(bye["data"].get("code") == 1003 and bye["data"].get("reconnect") is False, "disconnect data for a binary frame", bye)
    try:
        extra = await asyncio.wait_for(b.recv(), TIMEOUT)
        raise CheckFailed("frame after disconnect: %r" % (extra,))
    except websockets.exceptions.ConnectionClosed:
        pass
    except asyncio.TimeoutError:
        raise CheckFailed("connection not closed within %.0f s after disconnect" % TIMEOUT)
    check(b.close_code == 1003, "close code after a binary frame", b.close_code)

    # a normal client close.
    await asyncio.wait_for(a.close(code=1000, reason="done"), TIMEOUT)
    check(a.close_code == 1000, "close code echoed for a client close", a.close_code)


def main():
    if len(sys.argv) != 2:
        print("usage: client.py ws://HOST:PORT/ws", file=sys.stderr)
        return 2
    try:
        asyncio.run(asyncio.wait_for(run(sys.argv[1]), 60))
    except CheckFailed as e:
        print("interop check failed: %s" % e, file=sys.stderr)
        return 1
    print("interop: all checks passed (websockets %s)" % websockets.__version__)
    return 0


if __name__ == "__main__":
    sys.exit(main())
