"""Mint HS256 tokens for clients, for a node started with ``--jwt-secret``.

Your backend knows who the user is; it gives the browser or app a
short-lived token, and the client sends it when it connects::

    from switchboard.token import connection_token

    token = connection_token(settings.SWITCHBOARD_JWT_SECRET, user_id="42", ttl=3600)

Standard library only. For RS256 or ES256 keys use a JWT library.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any, Dict, Iterable, Optional, Union

__all__ = ["connection_token", "subscription_token"]

# The node refuses HS256 secrets shorter than the hash output (RFC 7518).
MIN_SECRET_LEN = 32


def _b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")


def _sign(secret: Union[str, bytes], claims: Dict[str, Any]) -> str:
    key = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(key) < MIN_SECRET_LEN:
        raise ValueError(f"switchboard: the JWT secret is {len(key)} bytes; the node needs at least {MIN_SECRET_LEN}")
    head = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = _b64(json.dumps(claims, separators=(",", ":")).encode())
    sig = _b64(hmac.new(key, f"{head}.{body}".encode("ascii"), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


def connection_token(
    secret: Union[str, bytes],
    user_id: str,
    *,
    ttl: int = 3600,
    rooms: Optional[Iterable[str]] = None,
    info: Any = None,
    now: Optional[float] = None,
) -> str:
    """A connection token for ``user_id``, valid ``ttl`` seconds.

    ``rooms`` lists rooms the user may join where the namespace's
    permission is ``token``; ``info`` is shown in presence. The client
    should get a new token before it expires (the node sends
    ``session_expiring``; the realtime client calls its ``get_token``).
    """
    if not user_id:
        raise ValueError("switchboard: user_id must not be empty")
    iat = int(time.time() if now is None else now)
    claims: Dict[str, Any] = {"sub": user_id, "iat": iat, "exp": iat + int(ttl)}
    if rooms is not None:
        claims["rooms"] = list(rooms)
    if info is not None:
        claims["info"] = info
    return _sign(secret, claims)


def subscription_token(
    secret: Union[str, bytes], user_id: str, room: str, *, ttl: int = 3600, now: Optional[float] = None
) -> str:
    """A subscription token: ``user_id`` may subscribe to the private
    ``room`` for ``ttl`` seconds (sent as ``subscribe.data.token``)."""
    if not user_id or not room:
        raise ValueError("switchboard: user_id and room must not be empty")
    iat = int(time.time() if now is None else now)
    return _sign(secret, {"sub": user_id, "room": room, "iat": iat, "exp": iat + int(ttl)})
