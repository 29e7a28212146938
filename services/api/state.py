"""What routes take from the running app (intake, clock, live read models, the log) and from
the query string (times).

Set once by `create_app`; read per request. The reader is looked up on every request because a
replay may swap in a new generation at any moment: a request sees one generation, whole.
"""

from datetime import datetime
from typing import Annotated, Any

import msgspec
from litestar import Request
from litestar.params import QueryParameter

from events.policy import Policy
from events.store import EventStore
from services.clock import Clock, to_utc
from services.errors import ErrorKind, ServiceError
from services.formats.instants import OUT_OF_RANGE
from services.readmodels import LiveModels, Reader
from services.supervisor import LogHealth
from services.write.intake import Intake

AnyRequest = Request[Any, Any, Any]


def intake_of(request: AnyRequest) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


def now(request: AnyRequest) -> datetime:
    clock: Clock = request.app.state.clock
    return clock()


# INCIDENTS_ROLE=api replicas take writes only (services/config.py ServiceRole).
NO_READ_MODELS = (
    "this replica (INCIDENTS_ROLE=api) keeps no read models: read from a replica with "
    "INCIDENTS_ROLE=all"
)


def models_of(request: AnyRequest) -> LiveModels:
    models: LiveModels | None = request.app.state.models
    if models is None:
        raise ServiceError(ErrorKind.UNAVAILABLE, NO_READ_MODELS)
    return models


def policy_of(request: AnyRequest) -> Policy:
    """The service's policy; on every replica, with or without read models."""
    policy: Policy = request.app.state.policy
    return policy


def reader_of(request: AnyRequest) -> Reader:
    return models_of(request).reader


def store_of(request: AnyRequest) -> EventStore:
    store: EventStore = request.app.state.store
    return store


def storage_fault_of(request: AnyRequest) -> str | None:
    """Why the log cannot store events now (a full disk), when the service watches its server."""
    health: LogHealth | None = request.app.state.get("health")
    return health.storage_fault() if health is not None else None


# Times in the query string: RFC 3339 text, parsed strictly by `query_time` (Litestar's lax
# conversion read a bare number, `?to=0.5`, as seconds since 1970), then put in UTC.
QueryTime = Annotated[str | None, QueryParameter(format="date-time")]
QueryFrom = Annotated[str | None, QueryParameter(name="from", format="date-time")]


def query_time(text: str | None, field: str) -> datetime | None:
    """A time from a query string (RFC 3339 with an offset) in UTC; else 422 naming `field`."""
    if text is None:
        return None
    try:
        moment = msgspec.convert(text, datetime)
    except msgspec.ValidationError:
        detail = f"{text!r} is not an RFC 3339 time, e.g. 2026-01-02T10:00:00Z"
        raise ServiceError(ErrorKind.INVALID, detail, field) from None
    try:
        return to_utc(moment)
    except ValueError as exc:
        raise ServiceError(ErrorKind.INVALID, str(exc), field) from exc
    except OverflowError as exc:  # 9999-12-31T23:59:59-23:59 is past year 9999 in UTC
        raise ServiceError(ErrorKind.INVALID, OUT_OF_RANGE, field) from exc
