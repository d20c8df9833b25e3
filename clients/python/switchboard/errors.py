"""Typed errors of the Switchboard SDK.

Every error the SDK raises is a :class:`SwitchboardError`. Server API
errors (:class:`APIError` and its subclasses) carry the HTTP status and the
``error.code`` of the API's JSON body (docs/api.md, "Errors"): branch on the
class or on ``code``, not on the message, which is for people.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Mapping, Optional, Type

__all__ = [
    "SwitchboardError",
    "APIError",
    "BadRequest",
    "AuthError",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "MethodNotAllowed",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "RateLimited",
    "ServerError",
    "Unavailable",
    "TransportError",
    "api_error",
    "CloseError",
    "HandshakeError",
    "RequestError",
    "RPCError",
    "RequestTimeout",
    "ConnectionLost",
    "ClientClosed",
    "QueueFull",
    "ProtocolError",
]


class SwitchboardError(Exception):
    """The base of every error the SDK raises."""


class APIError(SwitchboardError):
    """An error answer of the server API.

    ``status`` is the HTTP status, ``code`` the API's error code (for example
    ``invalid_room``; ``http_<status>`` when the body was not the API's JSON
    error, as from a proxy), ``message`` the API's explanation, and
    ``retry_after`` the ``Retry-After`` header in seconds, if any.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        retry_after: Optional[float] = None,
        body: Any = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.body = body

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later (5xx, 429): the
        request changed nothing, or carried an idempotency key."""
        return self.status >= 500 or self.status == 429


class BadRequest(APIError):
    """400: bad JSON, a bad field, an invalid room name (``invalid_room``),
    or a feature turned off for the room's namespace (``not_implemented``)."""


class AuthError(APIError):
    """401 or 403: the API key is missing or wrong, or (without a key on the
    server) the request is not local."""


class Unauthorized(AuthError):
    """401: no API key was sent."""


class Forbidden(AuthError):
    """403: a wrong API key, or a keyless server refusing a non-local request."""


class NotFound(APIError):
    """404: no such endpoint (``not_found``), or ``room_not_found`` /
    ``connection_not_found``."""


class MethodNotAllowed(APIError):
    """405: the endpoint does not take this method."""


class PayloadTooLarge(APIError):
    """413: ``body_too_large``, ``batch_too_large`` or ``data_too_large``."""


class UnsupportedMediaType(APIError):
    """415: the body was not sent as JSON."""


class RateLimited(APIError):
    """429: too many requests; wait ``retry_after`` seconds (when given)."""


class ServerError(APIError):
    """5xx: the node failed (``internal``); the request may be retried."""


class Unavailable(ServerError):
    """503: the engine is closed (node draining) or did not answer in time;
    retry, perhaps on another node."""


class TransportError(SwitchboardError):
    """The request did not get an HTTP answer: connection refused, reset,
    DNS failure or timeout. Whether it reached the server is unknown, so
    only retry what is idempotent (publishes with an idempotency key)."""


_BY_STATUS: Dict[int, Type[APIError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
    503: Unavailable,
}


def _retry_after(headers: Optional[Mapping[str, str]]) -> Optional[float]:
    """Retry-After in seconds. The HTTP-date form is not used by
    Switchboard and is ignored rather than guessed at."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def api_error(
    status: int,
    body: bytes,
    headers: Optional[Mapping[str, str]] = None,
    reason: str = "",
) -> APIError:
    """Build the typed error for an HTTP error answer.

    The API answers ``{"error": {"code": ..., "message": ...}}``; anything
    else (a proxy's HTML page, an empty body) keeps the status and gets the
    code ``http_<status>``.
    """
    code, message, parsed = f"http_{status}", reason or f"HTTP {status}", None
    try:
        parsed = json.loads(body.decode("utf-8")) if body else None
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        err = parsed["error"]
        if isinstance(err.get("code"), str) and err["code"]:
            code = err["code"]
        if isinstance(err.get("message"), str):
            message = err["message"]
    elif body:
        text = body[:200].decode("utf-8", "replace").strip()
        if text:
            message = text
    cls = _BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else APIError
    return cls(status, code, message, retry_after=_retry_after(headers), body=parsed)


# Realtime client errors (switchboard.realtime).


class CloseError(SwitchboardError):
    """The connection ended with a close code after which the client does
    not reconnect (or gave up). ``code`` is the close code (1006 when no
    close frame came), ``name`` its name in docs/protocol.md section 8
    (``kicked``), ``reason`` the close reason."""

    def __init__(self, code: int, reason: str = "", name: str = "") -> None:
        super().__init__(f"connection closed with {code} ({name or code}){': ' + reason if reason else ''}")
        self.code = code
        self.reason = reason
        self.name = name


class HandshakeError(SwitchboardError):
    """The server refused the WebSocket handshake with an HTTP status: for
    example 401 ``unauthorized`` (the token), 403 ``banned`` or
    ``origin_not_allowed``, 503 ``connection_limit``."""

    def __init__(self, status: int, code: str = "", message: str = "", retry_after: Optional[float] = None) -> None:
        super().__init__(f"handshake refused: {status}{' ' + code if code else ''}{': ' + message if message else ''}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class RequestError(SwitchboardError):
    """The server answered a request with an ``error`` event; ``code`` is
    from docs/protocol.md section 7 (``forbidden``, ``invalid_room``, ...)."""

    def __init__(self, code: str, message: str = "", ref: Optional[str] = None) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message
        self.ref = ref


class RPCError(SwitchboardError):
    """An RPC call answered with a JSON-RPC error object."""

    def __init__(self, code: int, message: str = "", data: Any = None) -> None:
        super().__init__(f"rpc error {code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class RequestTimeout(SwitchboardError, TimeoutError):
    """No answer within the request's timeout. A publish may still have
    been stored: send it again with the same id to find out (it is not
    delivered twice)."""


class ConnectionLost(SwitchboardError):
    """The connection ended before the answer to a request that is not sent
    again on the next connection (an RPC: the method may not be safe to
    run twice)."""


class ClientClosed(SwitchboardError):
    """The client was closed, or stopped for good, before the answer."""


class QueueFull(SwitchboardError):
    """Too many messages wait for a connection (``queue_size``)."""


class ProtocolError(SwitchboardError):
    """The server broke the protocol this client speaks (for example an
    unknown ``protocol_version``)."""
