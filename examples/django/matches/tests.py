"""The webhook view (python manage.py test); the publish command runs
against a real node in examples/python_sdk_test.go."""

import json
import time

from django.test import SimpleTestCase, override_settings

from switchboard.webhook import signature_header

from . import views

SECRET = "whsec_django_test"


@override_settings(SWITCHBOARD_WEBHOOK_SECRETS=["whsec_new", SECRET])
class WebhookViewTest(SimpleTestCase):
    def post(self, body, secret=SECRET, ts=None):
        ts = int(time.time()) if ts is None else ts
        return self.client.post(
            "/webhooks/switchboard",
            data=body,
            content_type="application/json",
            HTTP_SWITCHBOARD_WEBHOOK_ID="b1",
            HTTP_SWITCHBOARD_WEBHOOK_TIMESTAMP=str(ts),
            HTTP_SWITCHBOARD_WEBHOOK_SIGNATURE=signature_header(secret, ts, body),
        )

    def test_signed_batch(self):
        views.ONLINE.clear()
        body = json.dumps({"events": [
            {"id": "n-1", "type": "connection.opened", "ts": 1, "node": "n", "client": "c1", "user": "ada"},
            {"id": "n-2", "type": "connection.opened", "ts": 2, "node": "n", "client": "c2", "user": "bob"},
            {"id": "n-3", "type": "connection.closed", "ts": 3, "node": "n", "client": "c2", "user": "bob", "code": 1000, "reason": ""},
        ]}).encode()
        r = self.post(body)
        self.assertEqual(r.status_code, 200, r.content)
        self.assertEqual(r.json(), {"received": 3, "online": ["ada"]})

    def test_refused(self):
        body = b'{"events":[]}'
        self.assertEqual(self.post(body, secret="whsec_wrong").status_code, 400)
        self.assertEqual(self.post(body, ts=int(time.time()) - 3600).status_code, 400)
        self.assertEqual(self.client.post("/webhooks/switchboard", data=body, content_type="application/json").status_code, 400)
        self.assertEqual(self.client.get("/webhooks/switchboard").status_code, 405)
