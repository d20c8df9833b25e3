"""Switchboard's Python SDK.

- :class:`APIClient` (``switchboard.api``): the server API for backends:
  publish, broadcast, send to users, disconnect, presence, history;
  :class:`AsyncAPIClient` is the same for ``async`` code. Standard library
  only.
- ``switchboard.webhook``: verify the signature of webhooks a node sends and
  parse them into typed events. Standard library only.
- ``switchboard.realtime``: an asyncio client of the WebSocket protocol with
  reconnects, recovery and acknowledged publishes. Needs ``websockets``; it
  is imported only when you import ``switchboard.realtime``.

Errors are :class:`SwitchboardError` subclasses (``switchboard.errors``).
"""

from .api import APIClient, AsyncAPIClient
from .errors import (
    APIError,
    AuthError,
    BadRequest,
    Forbidden,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    ServerError,
    SwitchboardError,
    TransportError,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from .models import BatchResult, Event, HistoryPage, Member, Presence, PublishResult, RoomInfo
from .webhook import WebhookError, WebhookVerifier

__version__ = "0.1.0"

__all__ = [
    "APIClient",
    "APIError",
    "AsyncAPIClient",
    "AuthError",
    "BadRequest",
    "BatchResult",
    "Event",
    "Forbidden",
    "HistoryPage",
    "Member",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "Presence",
    "PublishResult",
    "RateLimited",
    "RoomInfo",
    "ServerError",
    "SwitchboardError",
    "TransportError",
    "Unauthorized",
    "Unavailable",
    "UnsupportedMediaType",
    "WebhookError",
    "WebhookVerifier",
    "__version__",
]
