"""Intake routes: producer events (`/v1/events`), Alertmanager and PagerDuty webhooks.

PagerDuty routes answer as PagerDuty's Events API v2 does, so its official clients work
unchanged (PagerDuty developer docs, "Events API v2 Overview: Response Codes & Retry Logic",
and "Send a Change Event"): 202 `{"status": "success", "message": "Event processed",
"dedup_key": ...}` for every event taken, including an acknowledge or resolve that finds nothing
to change; 400 `{"status": "invalid event", "message": "Event object is invalid", "errors":
[...]}` for an invalid event or an unknown routing key (PagerDuty's clients do not retry a 400);
503 with Retry-After while the log is unavailable (they retry 5xx).

With tokens on, the routing key is the sender's producer token (an `Authorization: Bearer`
header may carry it instead: a bad one is 401, a token of a role that may not append 403).
Without tokens any well-formed routing key is taken. Either way keys are scoped by routing key
(`services.formats.pagerduty`).
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import msgspec
from litestar import Response, post
from litestar.openapi import ResponseSpec

from events.schema import AnyEvent
from services.api.guards import authenticated, requires
from services.api.openapi import request_body
from services.api.state import AnyRequest, intake_of, now
from services.auth import Permission, Principal, Tokens, bearer
from services.formats.alertmanager import AlertmanagerPayload
from services.formats.pagerduty import (
    PagerDutyChangeEvent,
    PagerDutyError,
    PagerDutyEvent,
    parse_change,
    parse_pagerduty,
)
from services.write.answers import Answer


@post(
    "/v1/events",
    status_code=200,
    guards=[requires(Permission.APPEND)],
    tags=["intake"],
    opt=request_body(AnyEvent | list[AnyEvent]),
)
async def post_events(request: AnyRequest) -> Answer:
    """Append one event (a JSON object) or a batch (an array of up to 1,000), all or nothing.

    The principal's role decides which event types it may append (a producer never
    acknowledges, assigns, resolves, closes, reopens, corrects or retracts)."""
    intake = intake_of(request)
    events = intake.decode_events(await request.body())
    return await intake.events(events, authenticated(request))


@post(
    "/v1/webhooks/alertmanager",
    status_code=200,
    guards=[requires(Permission.APPEND)],
    tags=["intake"],
    opt=request_body(AlertmanagerPayload),
)
async def alertmanager(request: AnyRequest) -> Answer:
    """Alertmanager webhook receiver (payload version 4)."""
    body, principal = await request.body(), authenticated(request)
    return await intake_of(request).alertmanager(body, now(request), principal)


class _Routing(msgspec.Struct):
    routing_key: Any = None


def _routing_key(body: bytes) -> str | None:
    """PagerDuty senders authenticate with the routing key (a 32-char producer token)."""
    try:
        key = msgspec.json.decode(body, type=_Routing).routing_key
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None  # the payload's own validation reports it
    return key if isinstance(key, str) else None


class PagerDutyAnswer(msgspec.Struct, omit_defaults=True):
    """How PagerDuty's Events API v2 answers: `status` "success", "invalid event",
    "unauthorized" or "forbidden"; `dedup_key` of an event taken; `errors` of one refused."""

    status: str
    message: str
    dedup_key: str | None = None
    errors: list[str] | None = None


def _answered(why: str) -> ResponseSpec:
    return ResponseSpec(PagerDutyAnswer, description=why, generate_examples=False)


# PagerDuty's answers, which its clients read (their success and refusals are not `Error`s).
_PAGERDUTY_ANSWERS: Final = {
    202: _answered("taken (an acknowledge or resolve that finds nothing to change too)"),
    400: _answered("invalid event, or a routing key nobody was issued"),
    401: _answered("an Authorization header with an unknown token"),
    403: _answered("a token of a role that may not send events"),
}


def _pagerduty(status: int, kind: str, message: str, errors: list[str]) -> Response[Any]:
    return Response(PagerDutyAnswer(kind, message, errors=errors), status_code=status)


def _invalid(errors: list[str]) -> Response[Any]:
    return _pagerduty(400, "invalid event", PagerDutyError.message, errors)


def _sender(
    request: AnyRequest, body: bytes, parse: Callable[[bytes, datetime], object]
) -> Principal | Response[Any]:
    """Who sent a PagerDuty event, or PagerDuty's answer refusing it."""
    tokens: Tokens = request.app.state.tokens
    header = request.headers.get("authorization")
    if tokens.enabled and header is not None:
        principal = tokens.authenticate(bearer(header))
        if principal is None:
            return _pagerduty(401, "unauthorized", "invalid token", ["'Authorization' is invalid"])
    else:
        principal = tokens.authenticate(_routing_key(body))
        if principal is None:
            try:  # what is wrong with the event itself comes first (a malformed routing key)
                parse(body, now(request))
            except PagerDutyError as exc:
                return _invalid(exc.errors)
            return _invalid(["'routing_key' is not a known routing key"])
    if not principal.may(Permission.APPEND):
        errors = [f"role {principal.role} may not {Permission.APPEND.value}"]
        return _pagerduty(403, "forbidden", "routing_key or token may not send events", errors)
    return principal


@post(
    ["/v1/webhooks/pagerduty", "/v2/enqueue", "/v1/webhooks/pagerduty/v2/enqueue"],
    status_code=202,
    tags=["intake"],
    opt=request_body(PagerDutyEvent),
    responses=_PAGERDUTY_ANSWERS,
)
async def pagerduty(request: AnyRequest) -> Response[Any]:
    """PagerDuty Events API v2: trigger, acknowledge, resolve by dedup_key (scoped by routing
    key). Acknowledge or resolve of an unknown or closed dedup_key: 202, nothing stored."""
    body = await request.body()
    principal = _sender(request, body, parse_pagerduty)
    if isinstance(principal, Response):
        return principal
    try:
        dedup_key, _ = await intake_of(request).pagerduty(body, now(request), principal)
    except PagerDutyError as exc:
        return _invalid(exc.errors)
    return Response(PagerDutyAnswer("success", "Event processed", dedup_key), status_code=202)


@post(
    ["/v2/change/enqueue", "/v1/webhooks/pagerduty/v2/change/enqueue"],
    status_code=202,
    tags=["intake"],
    opt=request_body(PagerDutyChangeEvent),
    responses=_PAGERDUTY_ANSWERS,
)
async def pagerduty_change(request: AnyRequest) -> Response[Any]:
    """PagerDuty change event: one `change.recorded` record outside any incident (a retried
    delivery stores nothing more); listed by `GET /v1/changes` and shown with the incidents
    detected within the hour after it."""
    body = await request.body()
    principal = _sender(request, body, parse_change)
    if isinstance(principal, Response):
        return principal
    try:
        await intake_of(request).change(body, now(request), principal)
    except PagerDutyError as exc:
        return _invalid(exc.errors)
    return Response(PagerDutyAnswer("success", "Change event processed"), status_code=202)


ROUTES: Final = [post_events, alertmanager, pagerduty, pagerduty_change]
