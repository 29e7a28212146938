"""NATS intake (faststream): `intake.events` and `intake.alertmanager` into the same intake,
and their per-producer forms `intake.<name>.events`, `intake.<name>.alertmanager` (with tokens
on, producer `name` is the only one the server lets publish there: services/natsauth.py).

Request/reply answers exactly what HTTP would (the stored events, or the error body). A bad
message is answered with its error and never stops the subscriber; a failure that is a bug is
logged with its traceback and answered `{"error": "internal"}`, never left without a reply.

With NATS users on, a producer's message that asks for its answer outside that producer's
inbox is dropped, logged, and neither handled nor answered (`natsauth.answerable`): the server
never checks reply subjects, and the answer would be a publish by the service's own user, onto
the log's subjects or into another client's inbox.
"""

import logging
from typing import Final

import msgspec
from faststream.nats import NatsBroker, NatsToken, NatsUserPassword
from faststream.nats.annotations import NatsMessage

from events.store import StoreUnavailableError
from services.auth import Principal, Role
from services.clock import Clock
from services.errors import ErrorKind, ServiceError, internal, unavailable
from services.natsauth import (
    PRODUCER_ALERTMANAGER,
    PRODUCER_EVENTS,
    SERVICE_INBOX,
    answerable,
    producer_of,
)
from services.natsurl import PING_INTERVAL_S, PINGS_UNANSWERED, NatsTarget
from services.supervisor import LogHealth, quiet_errors
from services.write.intake import Intake
from services.write.principals import NATS

EVENTS_SUBJECT: Final = "intake.events"
ALERTMANAGER_SUBJECT: Final = "intake.alertmanager"
# Replicas share the intake subjects: each message is handled by one of them.
QUEUE: Final = "incidents-intake"

_encode: Final = msgspec.json.encode
TOO_DEEP: Final = "JSON nested too deeply"
log = logging.getLogger(__name__)


def _failure(exc: ServiceError | StoreUnavailableError, health: LogHealth | None) -> bytes:
    if isinstance(exc, ServiceError):
        return _encode(exc.body())
    return _encode(unavailable(exc, health.storage_fault() if health else None).body())


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


def _misdirected(msg: NatsMessage, guarded: bool) -> bool:
    """Whether `msg` asks for its answer where its producer may not receive (then dropped)."""
    subject, reply = msg.raw_message.subject, msg.reply_to
    if not guarded or not reply or answerable(subject, reply):
        return False
    log.warning("message on %s wants its answer at %r, outside its inbox: dropped", subject, reply)
    msg.reply_to = ""  # faststream answers at `reply_to` once the handler returns
    return True


def _undecoded(msg: NatsMessage) -> bytes:
    """The body as sent, for intake to validate. faststream's own decoder JSON-decodes a
    message without a content type, and let the RecursionError of one nested a thousand deep
    escape before any handler ran: the request went unanswered, and nothing was logged."""
    return msg.body


def create_broker(
    target: NatsTarget, intake: Intake, clock: Clock, health: LogHealth | None = None
) -> NatsBroker:
    """`health`: the service's view of the log, which names the cause when its storage is
    full."""
    guarded = target.user is not None or target.token is not None
    # Raw bodies (NatsMessage), not faststream's JSON decoding: intake validates with msgspec.
    broker = NatsBroker(
        list(target.servers),
        security=_login(target),
        logger=None,
        name="incidents-intake",
        # Like the service's own connection: reconnect forever, one line per error.
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        ping_interval=PING_INTERVAL_S,
        max_outstanding_pings=PINGS_UNANSWERED,
        error_cb=quiet_errors("NATS intake connection"),
        inbox_prefix=SERVICE_INBOX,
        decoder=_undecoded,
    )

    @broker.subscriber(PRODUCER_EVENTS, queue=QUEUE)
    @broker.subscriber(EVENTS_SUBJECT, queue=QUEUE)
    async def on_events(msg: NatsMessage) -> bytes:
        """Events (one JSON object, or an array of up to 1,000), as `POST /v1/events` takes
        them; the reply is its answer: the stored events, or the error body."""
        if _misdirected(msg, guarded):
            return b""
        try:
            events = intake.decode_events(msg.body)
            return _encode(await intake.events(events, principal_of(msg.raw_message.subject)))
        except (ServiceError, StoreUnavailableError) as exc:
            return _failure(exc, health)
        except RecursionError:  # msgspec's limit on nesting: malformed, as over HTTP (app.py)
            return _encode(ServiceError(ErrorKind.MALFORMED, TOO_DEEP).body())
        except Exception as exc:
            return _bug(msg.raw_message.subject, exc)

    @broker.subscriber(PRODUCER_ALERTMANAGER, queue=QUEUE)
    @broker.subscriber(ALERTMANAGER_SUBJECT, queue=QUEUE)
    async def on_alertmanager(msg: NatsMessage) -> bytes:
        """An Alertmanager webhook payload (version 4), as `POST /v1/webhooks/alertmanager`
        takes it; the reply is its answer: the stored events, or the error body."""
        if _misdirected(msg, guarded):
            return b""
        try:
            principal = principal_of(msg.raw_message.subject)
            return _encode(await intake.alertmanager(msg.body, clock(), principal))
        except (ServiceError, StoreUnavailableError) as exc:
            return _failure(exc, health)
        except Exception as exc:
            return _bug(msg.raw_message.subject, exc)

    return broker
