"""The seeds' FastAPI app on Switchboard: no ConnectionManager.

The seeds keep every WebSocket in a ConnectionManager inside the app and
loop over it to broadcast. Here Switchboard holds the connections: the
endpoints publish through the Python SDK's server API client, clients
connect to Switchboard directly (with a token this app mints), and the app
learns who is online from Switchboard's signed webhooks.

    export SWITCHBOARD_URL=http://127.0.0.1:8080 SWITCHBOARD_API_KEY=...
    export SWITCHBOARD_WEBHOOK_SECRET=... SWITCHBOARD_JWT_SECRET=...
    uvicorn app:app --port 8000          # from examples/fastapi

Endpoints are plain ``def`` where they call the API client (urllib
blocks), so FastAPI runs them in its thread pool.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any, Dict, List, Optional, Set

try:
    import switchboard  # noqa: F401
except ImportError:  # run from a checkout without `pip install ./clients/python`
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from switchboard import APIClient, APIError, SwitchboardError
from switchboard.token import connection_token
from switchboard.webhook import ConnectionClosed, ConnectionOpened, Publication, WebhookError, WebhookVerifier


class Match(BaseModel):
    id: int
    home_team: str
    away_team: str
    score: str = "0-0"
    status: str = "scheduled"


class Commentary(BaseModel):
    text: str
    minute: Optional[int] = None


class Score(BaseModel):
    score: str


class Online:
    """Who is online, kept from connection.opened / connection.closed
    webhooks. Event ids are remembered, so a batch the node sends again
    (it retries until it gets a 2xx) is applied once."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: Dict[str, str] = {}  # connection id -> user
        self.seen: Set[str] = set()
        self.publications = 0

    def apply(self, events: List[Any]) -> int:
        applied = 0
        with self.lock:
            for ev in events:
                if ev.id in self.seen:
                    continue
                self.seen.add(ev.id)
                applied += 1
                if isinstance(ev, ConnectionOpened):
                    self.connections[ev.client] = ev.user
                elif isinstance(ev, ConnectionClosed):
                    self.connections.pop(ev.client, None)
                elif isinstance(ev, Publication):
                    self.publications += 1
        return applied

    def users(self) -> List[str]:
        with self.lock:
            return sorted({u for u in self.connections.values() if u})


def create_app(
    api: Optional[APIClient] = None,
    webhook_secrets: Optional[List[str]] = None,
    jwt_secret: Optional[str] = None,
) -> FastAPI:
    sb: APIClient = api or APIClient.from_env()
    secrets = webhook_secrets or [s for s in os.environ.get("SWITCHBOARD_WEBHOOK_SECRET", "").split(",") if s]
    verifier = WebhookVerifier(secrets) if secrets else None
    jwt_secret = jwt_secret or os.environ.get("SWITCHBOARD_JWT_SECRET") or None
    matches: Dict[int, Match] = {}
    online = Online()
    app = FastAPI(title="Switchboard FastAPI example")
    app.state.online = online

    @app.exception_handler(SwitchboardError)
    def switchboard_failed(request: Request, exc: SwitchboardError) -> JSONResponse:
        # A refused publish (a bad room name) is the caller's fault; the
        # rest means Switchboard could not be reached or failed.
        if isinstance(exc, APIError) and exc.status == 400:
            return JSONResponse({"detail": exc.message, "code": exc.code}, status_code=400)
        return JSONResponse({"detail": f"switchboard: {exc}"}, status_code=502)

    # The seeds' generic endpoints.

    @app.post("/broadcast/{room}")
    def broadcast_to_room(room: str, message: Dict[str, Any]) -> Dict[str, Any]:
        res = sb.publish(room, message, type="broadcast")
        return {"status": "sent", "room": room, "event_id": res.event_id, "recipients": res.recipients}

    @app.get("/rooms")
    def list_rooms() -> Dict[str, Any]:
        return {"rooms": [{"name": r.name, "members": r.members} for r in sb.rooms()]}

    @app.get("/stats")
    def get_stats() -> Dict[str, Any]:
        node = sb.stats()["node"]
        return {"total_connections": node["connections"], "total_rooms": node["rooms"]}

    @app.post("/users/{user}/notify")
    def notify(user: str, message: Dict[str, Any]) -> Dict[str, Any]:
        return {"recipients": sb.send_to_user(user, message, type="notification")}

    # The seeds' sports API: every change goes to the room match:ID.

    @app.post("/matches", status_code=201)
    def create_match(match: Match) -> Match:
        if match.id in matches:
            raise HTTPException(409, "match exists")
        matches[match.id] = match
        sb.publish(f"match:{match.id}", match.dict(), type="match_data", idempotency_key=f"match-{match.id}-created")
        return match

    @app.post("/matches/{match_id}/commentary", status_code=201)
    def add_commentary(match_id: int, commentary: Commentary) -> Dict[str, Any]:
        if match_id not in matches:
            raise HTTPException(404, "Match not found")
        res = sb.publish(f"match:{match_id}", commentary.dict(), type="commentary")
        return {"event_id": res.event_id, **commentary.dict()}

    @app.put("/matches/{match_id}/score")
    def update_score(match_id: int, score: Score) -> Dict[str, Any]:
        match = matches.get(match_id)
        if match is None:
            raise HTTPException(404, "Match not found")
        match.score = score.score
        match.status = "live"
        res = sb.publish(f"match:{match_id}", {"match_id": match_id, "score": score.score}, type="score_update")
        return {"event_id": res.event_id, **match.dict()}

    @app.get("/matches/{match_id}/presence")
    def match_presence(match_id: int) -> Dict[str, Any]:
        p = sb.presence(f"match:{match_id}", counts_only=True)
        return {"clients": p.clients, "users": p.users}

    # Clients connect to Switchboard, not to this app: give them a token.

    @app.get("/token")
    def token(user: str) -> Dict[str, Any]:
        # A real app takes the user from its session, not from the query.
        if not jwt_secret:
            raise HTTPException(503, "SWITCHBOARD_JWT_SECRET is not set")
        return {"token": connection_token(jwt_secret, user, ttl=3600)}

    # Switchboard tells us what happened (WEBHOOK-SPEC).

    @app.post("/webhooks/switchboard")
    async def webhook(request: Request) -> Dict[str, Any]:
        if verifier is None:
            raise HTTPException(503, "SWITCHBOARD_WEBHOOK_SECRET is not set")
        body = await request.body()  # the raw bytes: the signature covers them
        try:
            batch = verifier.verify(body, request.headers)
        except WebhookError as e:
            raise HTTPException(400, str(e)) from None
        return {"batch": batch.id, "received": len(batch.events), "applied": online.apply(batch.events)}

    @app.get("/online")
    def who_is_online() -> Dict[str, Any]:
        return {"users": online.users(), "publications": online.publications}

    return app


app = create_app()
