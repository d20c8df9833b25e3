"""The realtime client against a scripted WebSocket server on loopback
(websockets' own server), for what a real node does not do on demand: lose
the connection between a publish and its ack, announce another protocol
version, send frames that are not JSON."""

import asyncio
import json
import unittest

from ._support import require_module

require_module("websockets")

import websockets  # noqa: E402

from switchboard.errors import ConnectionLost, ProtocolError  # noqa: E402
from switchboard.realtime import Client  # noqa: E402

WAIT = 20.0

HELLO = {"type": "connection_established", "data": {"user_id": "u1", "connection_id": "c1", "heartbeat_interval_ms": 25000,
                                                    "protocol_version": 1, "server_time": 1, "node": "fake"}}


class FakeServer:
    """Runs script(ws, n) for the n-th connection (0 first)."""

    def __init__(self, script):
        self.script = script
        self.connections = 0

    async def __aenter__(self):
        async def handler(ws, path=None):
            n = self.connections
            self.connections += 1
            await self.script(ws, n)

        self.server = await websockets.serve(handler, "127.0.0.1", 0, subprotocols=["switchboard.v1"])
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ws"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()


async def recv(ws):
    return json.loads(await asyncio.wait_for(ws.recv(), WAIT))


class FakeServerTest(unittest.IsolatedAsyncioTestCase):
    async def test_publish_resent_with_the_same_id_after_a_lost_ack(self):
        ids = []

        async def script(ws, n):
            await ws.send(json.dumps(HELLO))
            m = await recv(ws)
            ids.append(m["id"])
            if n == 0:
                await ws.close(1012, "restart before the ack")
                return
            await ws.send(json.dumps({"type": "ack", "id": m["id"], "room": m["room"], "data": {"event_id": "ep-1", "duplicate": True}}))
            await ws.wait_closed()

        async with FakeServer(script) as srv:
            c = Client(srv.url, initial_delay=0.01)
            self.addAsyncCleanup(c.close)
            await c.connect(WAIT)
            ack = await asyncio.wait_for(c.publish("r", {"x": 1}), WAIT)
            self.assertEqual((ack.event_id, ack.duplicate), ("ep-1", True))
            self.assertEqual(len(ids), 2)
            self.assertEqual(ids[0], ids[1])
            self.assertGreaterEqual(len(ids[0]), 16)

    async def test_rpc_is_not_resent(self):
        async def script(ws, n):
            await ws.send(json.dumps(HELLO))
            if n == 0:
                await recv(ws)
                await ws.close(1011, "crash mid-call")
                return
            await ws.wait_closed()

        async with FakeServer(script) as srv:
            c = Client(srv.url, initial_delay=0.01)
            self.addAsyncCleanup(c.close)
            await c.connect(WAIT)
            with self.assertRaises(ConnectionLost):
                await asyncio.wait_for(c.rpc("charge_card", {"amount": 5}), WAIT)

    async def test_unknown_protocol_version_stops(self):
        async def script(ws, n):
            await ws.send(json.dumps({"type": "connection_established", "data": dict(HELLO["data"], protocol_version=2)}))
            await ws.wait_closed()

        async with FakeServer(script) as srv:
            c = Client(srv.url, initial_delay=0.01)
            self.addAsyncCleanup(c.close)
            with self.assertRaises(ProtocolError):
                await c.connect(WAIT)
            self.assertEqual((c.state, srv.connections), ("closed", 1))

    async def test_bad_frames_are_reported_and_skipped(self):
        async def script(ws, n):
            await ws.send(json.dumps(HELLO))
            m = await recv(ws)  # subscribe
            await ws.send(json.dumps({"type": "subscribed", "id": m["id"], "room": "r", "data": {"members": 1, "position": "ep-0"}}))
            for bad in ["not json", "[1,2]", '{"type": 5}', b"\x00binary"]:
                await ws.send(bad)
            await ws.send(json.dumps({"type": "message", "id": "ep-1", "room": "r", "data": "after"}))
            await ws.send(json.dumps({"type": "message", "id": "ep-1", "room": "r", "data": "again"}))  # a duplicate
            await ws.send(json.dumps({"type": "message", "id": "ep-2", "room": "r", "data": "last", "extra": {"unknown": True}}))
            await ws.wait_closed()

        errors, got = [], []
        async with FakeServer(script) as srv:
            c = Client(srv.url, on_error=errors.append)
            self.addAsyncCleanup(c.close)
            await c.connect(WAIT)
            await c.subscribe("r", got.append)
            for _ in range(1000):
                if len(got) == 2:
                    break
                await asyncio.sleep(0.01)
            self.assertEqual([e.data for e in got], ["after", "last"])
            self.assertEqual(len(errors), 4)
            self.assertTrue(all(isinstance(e, ProtocolError) for e in errors))
            self.assertEqual(c.state, "open")

    async def test_stream_gap_is_a_marker_and_moves_the_position(self):
        # protocol.md section 4: the notice reaches the app as a marker, not
        # a room message; the events after it (even ones whose offsets fall
        # inside the lost range of a new epoch) come in order, ids at or
        # before until are dropped, and the reconnect resumes from until.
        resumed = []

        async def script(ws, n):
            await ws.send(json.dumps(HELLO))
            m = await recv(ws)  # subscribe
            if n == 1:
                resumed.append(m.get("last_event_id"))
                await ws.send(json.dumps({"type": "subscribed", "id": m["id"], "room": "r",
                                          "data": {"members": 1, "position": "ep-9", "recovered": True, "replayed": 0}}))
                await ws.wait_closed()
                return
            await ws.send(json.dumps({"type": "subscribed", "id": m["id"], "room": "r", "data": {"members": 1, "position": "ep-0"}}))
            await ws.send(json.dumps({"type": "message", "id": "ep-1", "room": "r", "data": "before"}))
            await ws.send(json.dumps({"type": "stream_gap", "room": "r", "ts": 7,
                                      "data": {"after": "ep-1", "until": "ep-5", "reason": "evicted"}}))
            await ws.send(json.dumps({"type": "message", "id": "ep-4", "room": "r", "data": "inside the gap"}))
            await ws.send(json.dumps({"type": "message", "id": "ep-6", "room": "r", "data": "after"}))
            await ws.send(json.dumps({"type": "stream_gap", "room": "r", "data": {"after": "ep-6", "reason": "unavailable"}}))
            await ws.send(json.dumps({"type": "stream_gap", "room": "r", "data": {"after": "ep-6", "until": "ep-9", "reason": "too_many"}}))
            await ws.close(1012, "restart")

        got = []
        async with FakeServer(script) as srv:
            c = Client(srv.url, initial_delay=0.01)
            self.addAsyncCleanup(c.close)
            await c.connect(WAIT)
            sub = await c.subscribe("r", got.append)
            for _ in range(2000):
                if resumed and len(got) == 5:
                    break
                await asyncio.sleep(0.01)
            self.assertEqual([(e.type, e.id, e.recovery_failed) for e in got], [
                ("message", "ep-1", False),
                ("stream_gap", "ep-5", True),
                ("message", "ep-6", False),
                ("stream_gap", None, True),
                ("stream_gap", "ep-9", True),
            ])
            self.assertEqual(got[1].data, {"after": "ep-1", "until": "ep-5", "reason": "evicted"})
            self.assertEqual((got[1].room, got[1].ts), ("r", 7))
            self.assertEqual(got[3].data["reason"], "unavailable")
            self.assertEqual(resumed, ["ep-9"])
            self.assertEqual(sub.last_event_id, "ep-9")

    async def test_close_from_a_handler(self):
        # The handler runs on the client's dispatcher task: close() must not
        # wait for that task (it would wait for itself until its 10 s bound).
        async def script(ws, n):
            await ws.send(json.dumps(HELLO))
            m = await recv(ws)
            await ws.send(json.dumps({"type": "subscribed", "id": m["id"], "room": "r", "data": {"members": 1, "position": "ep-0"}}))
            await ws.send(json.dumps({"type": "message", "id": "ep-1", "room": "r", "data": "bye"}))
            await ws.wait_closed()

        async with FakeServer(script) as srv:
            c = Client(srv.url)
            closed = asyncio.Event()

            async def handler(ev):
                await c.close()
                closed.set()

            await c.connect(WAIT)
            await c.subscribe("r", handler)
            loop = asyncio.get_running_loop()
            start = loop.time()
            await asyncio.wait_for(closed.wait(), WAIT)
            self.assertLess(loop.time() - start, 8)  # not the 10 s deadlock bound
            self.assertEqual(c.state, "closed")

    async def test_first_frame_not_connection_established(self):
        async def script(ws, n):
            await ws.send(json.dumps({"type": "pong"}))
            await ws.wait_closed()

        async with FakeServer(script) as srv:
            c = Client(srv.url)
            self.addAsyncCleanup(c.close)
            with self.assertRaises(ProtocolError):
                await c.connect(WAIT)


if __name__ == "__main__":
    unittest.main()
