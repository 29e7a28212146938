"""NATS intake (faststream): `intake.events` and `intake.alertmanager` into the same intake.

Request/reply answers exactly what HTTP would (the stored events, or the error body). A bad
message is answered with its error and never stops the subscriber.
"""

from typing import Final

import msgspec
from faststream.nats import NatsBroker
from faststream.nats.annotations import NatsMessage

from events.store import StoreUnavailableError
from services.clock import Clock
from services.errors import ErrorKind, ServiceError
from services.write.intake import Intake, decode_events

EVENTS_SUBJECT: Final = "intake.events"
ALERTMANAGER_SUBJECT: Final = "intake.alertmanager"
# Replicas share the intake subjects: each message is handled by one of them.
QUEUE: Final = "incidents-intake"

_encode: Final = msgspec.json.encode


def _failure(exc: ServiceError | StoreUnavailableError) -> bytes:
    if isinstance(exc, ServiceError):
        return _encode(exc.body())
    return _encode(ServiceError(ErrorKind.UNAVAILABLE, str(exc)).body())


def create_broker(servers: list[str], intake: Intake, clock: Clock) -> NatsBroker:
    # Raw bodies (NatsMessage), not faststream's JSON decoding: intake validates with msgspec.
    broker = NatsBroker(servers, logger=None)

    @broker.subscriber(EVENTS_SUBJECT, queue=QUEUE)
    async def on_events(msg: NatsMessage) -> bytes:
        try:
            return _encode(await intake.events(decode_events(msg.body)))
        except (ServiceError, StoreUnavailableError) as exc:
            return _failure(exc)

    @broker.subscriber(ALERTMANAGER_SUBJECT, queue=QUEUE)
    async def on_alertmanager(msg: NatsMessage) -> bytes:
        try:
            return _encode(await intake.alertmanager(msg.body, clock()))
        except (ServiceError, StoreUnavailableError) as exc:
            return _failure(exc)

    return broker
