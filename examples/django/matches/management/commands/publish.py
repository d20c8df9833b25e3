"""manage.py publish ROOM DATA: publish an event through Switchboard.

It replaces the seeds' broadcast_update command, which sent to a Channels
group through the channel layer; here the event goes to Switchboard's server
API, which delivers it to every member of the room on every node and keeps
it in the room's history for clients that reconnect:

    python manage.py publish match:42 '{"text": "GOAL!"}' --type commentary
    python manage.py publish match:42 'Half time' --key match42-ht   # safe to re-run
"""

import json

from django.core.management.base import BaseCommand, CommandError

from matches.switchboard_client import api
from switchboard import SwitchboardError


class Command(BaseCommand):
    help = "Publish an event to a Switchboard room through the server API."

    def add_arguments(self, parser):
        parser.add_argument("room", help="the room, for example match:42")
        parser.add_argument("data", help="the event's data: JSON, or else sent as a string")
        parser.add_argument("--type", default="message", help="the event type (default: message)")
        parser.add_argument(
            "--key",
            help="idempotency key: running the command again with the same key within 2 minutes "
            "publishes nothing twice (default: a new key each run)",
        )

    def handle(self, *args, **options):
        try:
            data = json.loads(options["data"])
        except ValueError:
            data = options["data"]
        try:
            res = api().publish(options["room"], data, type=options["type"], idempotency_key=options["key"])
        except SwitchboardError as e:
            raise CommandError(str(e)) from None
        how = "already published as" if res.duplicate else "published as"
        self.stdout.write(self.style.SUCCESS(f"{options['room']}: {how} {res.event_id} ({res.recipients} recipients)"))
