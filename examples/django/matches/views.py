"""Switchboard's webhooks: who came online, what was published."""

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from switchboard.webhook import ConnectionClosed, ConnectionOpened, WebhookError, WebhookVerifier

# A real project would store this; the example keeps it in memory.
ONLINE = {}  # connection id -> user id


@csrf_exempt  # signed by Switchboard instead
@require_POST
def switchboard_webhook(request: HttpRequest) -> JsonResponse:
    if not settings.SWITCHBOARD_WEBHOOK_SECRETS:
        return JsonResponse({"error": "SWITCHBOARD_WEBHOOK_SECRET is not set"}, status=503)
    verifier = WebhookVerifier(settings.SWITCHBOARD_WEBHOOK_SECRETS)
    try:
        batch = verifier.verify(request.body, request.headers)
    except WebhookError as e:
        return JsonResponse({"error": str(e)}, status=400)
    for ev in batch.events:
        if isinstance(ev, ConnectionOpened):
            ONLINE[ev.client] = ev.user
        elif isinstance(ev, ConnectionClosed):
            ONLINE.pop(ev.client, None)
    return JsonResponse({"received": len(batch.events), "online": sorted(set(ONLINE.values()) - {""})})
