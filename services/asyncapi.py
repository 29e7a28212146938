"""The AsyncAPI document of the service's NATS subjects (docs/asyncapi.json).

Generated from the faststream broker of the NATS intake (`create_broker`: its subscribers
make the intake channels, operations and queue bindings), plus two publishers declared here
for the subjects the service writes with nats-py rather than faststream: the log
(`incidents.<id>.<type>`) and, within it, the notifier's delivery records. faststream reads
payload types through pydantic, which knows nothing of msgspec, so the payloads, the replies
and the server are filled in afterwards from the msgspec types the service really decodes
and encodes.
"""

import inspect
from typing import Any, Final, cast
from urllib.parse import unquote

import msgspec
from faststream.specification import AsyncAPI

from events.schema import AnyEvent, NotificationSent
from services.api.openapi import TITLE, VERSION, Error
from services.clock import utc_now
from services.formats.alertmanager import AlertmanagerPayload
from services.nats_intake import ALERTMANAGER_SUBJECT, EVENTS_SUBJECT, create_broker
from services.natsauth import PRODUCER_ALERTMANAGER, PRODUCER_EVENTS
from services.natsurl import target
from services.write.answers import Answer
from services.write.intake import Intake

LOG_SUBJECT: Final = "incidents.{incident_id}.{event_type}"
NOTIFICATIONS_SUBJECT: Final = "incidents.{incident_id}.notification.sent"
_REPLY: Final = "reply"
_SERVER: Final = "nats"
_REF: Final = "#/components/schemas/{name}"

_DESCRIPTION: Final = """\
The NATS subjects of incident-timeline. Producers publish events and Alertmanager payloads to
the intake subjects, with request/reply for the answer HTTP would give; with tokens on, each
NATS producer may publish only on its own `intake.<name>.>` (the shared `intake.events` and
`intake.alertmanager` are the service's). The log is the JetStream stream `INCIDENTS`
(`INCIDENTS_STREAM`): only the service writes it; readers use JetStream consumers."""

_LOG: Final = (
    "The log: every event of an incident, as stored (hash-chained), on the subject of its "
    "incident and type, e.g. `incidents.INC-7K2M9Q.alert.fired`. Written by the service only; "
    "read it with JetStream consumers of the stream."
)
_NOTIFICATIONS: Final = (
    "The notifier's record of each delivery (Slack or generic JSON webhooks, sent over HTTP, "
    "not NATS), in the log like any event. The notifier reads the log's subjects of the event "
    "types its routes name (`incidents.*.<type>`)."
)
_PARAMETERS: Final = {
    "incident_id": {"description": "the incident id, `[A-Za-z0-9_-]{1,64}`"},
    "event_type": {"description": "the event type with its dot, e.g. `alert.fired`"},
    "producer": {
        "description": "the NATS producer's name: its tokens-file entry with `nats = true` "
        "(`incidents token producer NAME --nats`)"
    },
}


def _payloads() -> tuple[dict[str, Any], dict[str, Any]]:
    """(payload schema by channel address or role, component schemas)."""
    kinds: dict[str, Any] = {
        "events": AnyEvent | list[AnyEvent],
        "alertmanager": AlertmanagerPayload,
        "log": AnyEvent,
        "notifications": NotificationSent,
        "answer": Answer,
        "error": Error,
    }
    schemas, components = msgspec.json.schema_components(kinds.values(), ref_template=_REF)
    by_kind = dict(zip(kinds, schemas, strict=True))
    by_address = {
        EVENTS_SUBJECT: by_kind["events"],
        PRODUCER_EVENTS: by_kind["events"],
        ALERTMANAGER_SUBJECT: by_kind["alertmanager"],
        PRODUCER_ALERTMANAGER: by_kind["alertmanager"],
        LOG_SUBJECT: by_kind["log"],
        NOTIFICATIONS_SUBJECT: by_kind["notifications"],
        "answer": by_kind["answer"],
        "error": by_kind["error"],
    }
    return by_address, components


def _reply_channel(payloads: dict[str, Any]) -> dict[str, Any]:
    return {
        "address": None,  # the request's own reply subject (NATS request/reply)
        "description": "The answer to a request on an intake subject: what HTTP would answer.",
        "messages": {
            "Answer": {"name": "Answer", "payload": payloads["answer"]},
            "Error": {"name": "Error", "payload": payloads["error"]},
        },
    }


def document() -> dict[str, Any]:
    # Only the broker's description is needed: its handlers never run, so no intake.
    broker = create_broker(target("nats://127.0.0.1:4222"), cast(Intake, None), utc_now)
    broker.publisher(LOG_SUBJECT, title="log", description=_LOG)
    broker.publisher(NOTIFICATIONS_SUBJECT, title="notifications", description=_NOTIFICATIONS)
    spec = AsyncAPI(broker, title=TITLE, version=VERSION, description=_DESCRIPTION)
    doc: dict[str, Any] = spec.to_specification().to_jsonable()
    payloads, components = _payloads()
    doc["servers"] = {
        _SERVER: {
            "host": "127.0.0.1:{port}",
            "protocol": "nats",
            "description": "The nats-server `incidents serve` embeds (or INCIDENTS_NATS_URL); "
            "its URL is in `<data dir>/serve.json` while it runs.",
            "variables": {"port": {"description": "chosen at start (INCIDENTS_NATS_PORT)"}},
        }
    }
    messages = doc["components"]["messages"]
    for channel in doc["channels"].values():
        channel["servers"] = [{"$ref": f"#/servers/{_SERVER}"}]
        if channel.get("description"):
            channel["description"] = " ".join(inspect.cleandoc(channel["description"]).split())
        subject = channel["address"]
        for ref in channel["messages"].values():
            key = unquote(ref["$ref"].rsplit("/", 1)[1])
            messages[key]["payload"] = payloads[subject]
            messages[key].pop("correlationId", None)  # NATS replies go to the reply subject
        # `intake.*.events` is subscribed to (the binding says so); producer NAME sends to
        # `intake.NAME.events`, which AsyncAPI writes as a parameter.
        channel["address"] = subject.replace(".*.", ".{producer}.")
        names = [n for n in _PARAMETERS if f"{{{n}}}" in channel["address"]]
        if names:
            channel["parameters"] = {name: _PARAMETERS[name] for name in names}
    doc["channels"][_REPLY] = _reply_channel(payloads)
    for operation in doc["operations"].values():
        if operation["action"] == "receive":
            operation["reply"] = {
                "channel": {"$ref": f"#/channels/{_REPLY}"},
                "messages": [
                    {"$ref": f"#/channels/{_REPLY}/messages/Answer"},
                    {"$ref": f"#/channels/{_REPLY}/messages/Error"},
                ],
            }
    doc["components"]["schemas"] = components
    return doc
