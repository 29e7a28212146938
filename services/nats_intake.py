"""NATS intake (faststream): `intake.events` and `intake.alertmanager` into the same intake.

Request/reply answers exactly what HTTP would (the stored events, or the error body). A bad
message is answered with its error and never stops the subscriber.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Final

import msgspec
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage

from events.store import StoreUnavailableError
from services.handler import ContentionError
from services.intake import ErrorKind, Intake, IntakeError, decode_events
from services.webhooks import WebhookError

EVENTS_SUBJECT: Final = "intake.events"
ALERTMANAGER_SUBJECT: Final = "intake.alertmanager"
# Replicas share the intake subjects: each message is handled by one of them.
QUEUE: Final = "incidents-intake"

_encode: Final = msgspec.json.encode


def _failure(exc: Exception) -> bytes:
    if isinstance(exc, IntakeError):
        return _encode(exc.body())
    if isinstance(exc, WebhookError):
        return _encode(IntakeError(ErrorKind.INVALID, exc.detail, exc.field).body())
    return _encode(IntakeError(ErrorKind.UNAVAILABLE, str(exc)).body())


def create_broker(servers: list[str], intake: Intake, clock: Callable[[], datetime]) -> NatsBroker:
    # Raw bodies (NatsMessage), not faststream's JSON decoding: intake validates with msgspec.
    broker = NatsBroker(servers, logger=None)

    @broker.subscriber(EVENTS_SUBJECT, queue=QUEUE)
    async def on_events(msg: NatsMessage) -> bytes:
        try:
            return _encode(await intake.events(decode_events(msg.body)))
        except (IntakeError, StoreUnavailableError, ContentionError) as exc:
            return _failure(exc)

    @broker.subscriber(ALERTMANAGER_SUBJECT, queue=QUEUE)
    async def on_alertmanager(msg: NatsMessage) -> bytes:
        try:
            return _encode(await intake.alertmanager(msg.body, clock()))
        except (IntakeError, WebhookError, StoreUnavailableError, ContentionError) as exc:
            return _failure(exc)

    return broker
