"""NATS intake (faststream): `intake.events` and `intake.alertmanager` into the same intake,
and their per-producer forms `intake.<name>.events`, `intake.<name>.alertmanager` (with tokens
on, producer `name` is the only one the server lets publish there: services/natsauth.py).

Request/reply answers exactly what HTTP would (the stored events, or the error body). A bad
message is answered with its error and never stops the subscriber; a failure that is a bug is
logged with its traceback and answered `{"error": "internal"}`, never left without a reply.
"""

import logging
from typing import Final

import msgspec
from faststream.nats import NatsBroker, NatsToken, NatsUserPassword
from faststream.nats.annotations import NatsMessage

from events.store import StoreUnavailableError
from services.auth import Principal, Role
from services.clock import Clock
from services.errors import ErrorKind, ServiceError, internal
from services.natsauth import PRODUCER_ALERTMANAGER, PRODUCER_EVENTS, SERVICE_INBOX, producer_of
from services.natsurl import NatsTarget
from services.supervisor import quiet_errors
from services.write.intake import Intake
from services.write.principals import NATS

EVENTS_SUBJECT: Final = "intake.events"
ALERTMANAGER_SUBJECT: Final = "intake.alertmanager"
# Replicas share the intake subjects: each message is handled by one of them.
QUEUE: Final = "incidents-intake"

_encode: Final = msgspec.json.encode
log = logging.getLogger(__name__)


def _failure(exc: ServiceError | StoreUnavailableError) -> bytes:
    if isinstance(exc, ServiceError):
        return _encode(exc.body())
    return _encode(ServiceError(ErrorKind.UNAVAILABLE, str(exc)).body())


def _bug(subject: str, exc: Exception) -> bytes:
    log.error("message on %s failed", subject, exc_info=exc)
    return _encode(internal(exc).body())


def principal_of(subject: str) -> Principal:
    """A producer: the one named by its subject (`intake.<name>.events`, which with tokens on
    only that producer may publish to), else `nats` on the shared subjects."""
    name = producer_of(subject)
    return NATS if name is None else Principal(name, Role.PRODUCER)


def _login(target: NatsTarget) -> NatsToken | NatsUserPassword | None:
    # As connect options, not in the URLs: they hold for the servers a cluster announces too.
    if target.token is not None:
        return NatsToken(target.token)
    if target.user is not None:
        return NatsUserPassword(target.user, target.password or "")
    return None


def create_broker(target: NatsTarget, intake: Intake, clock: Clock) -> NatsBroker:
    # Raw bodies (NatsMessage), not faststream's JSON decoding: intake validates with msgspec.
    broker = NatsBroker(
        list(target.servers),
        security=_login(target),
        logger=None,
        name="incidents-intake",
        # Like the service's own connection: reconnect forever, one line per error.
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        error_cb=quiet_errors("NATS intake connection"),
        inbox_prefix=SERVICE_INBOX,
    )

    @broker.subscriber(PRODUCER_EVENTS, queue=QUEUE)
    @broker.subscriber(EVENTS_SUBJECT, queue=QUEUE)
    async def on_events(msg: NatsMessage) -> bytes:
        """Events (one JSON object, or an array of up to 1,000), as `POST /v1/events` takes
        them; the reply is its answer: the stored events, or the error body."""
        try:
            events = intake.decode_events(msg.body)
            return _encode(await intake.events(events, principal_of(msg.raw_message.subject)))
        except (ServiceError, StoreUnavailableError) as exc:
            return _failure(exc)
        except Exception as exc:
            return _bug(msg.raw_message.subject, exc)

    @broker.subscriber(PRODUCER_ALERTMANAGER, queue=QUEUE)
    @broker.subscriber(ALERTMANAGER_SUBJECT, queue=QUEUE)
    async def on_alertmanager(msg: NatsMessage) -> bytes:
        """An Alertmanager webhook payload (version 4), as `POST /v1/webhooks/alertmanager`
        takes it; the reply is its answer: the stored events, or the error body."""
        try:
            principal = principal_of(msg.raw_message.subject)
            return _encode(await intake.alertmanager(msg.body, clock(), principal))
        except (ServiceError, StoreUnavailableError) as exc:
            return _failure(exc)
        except Exception as exc:
            return _bug(msg.raw_message.subject, exc)

    return broker
