"""Intake routes: producer events (`/v1/events`), Alertmanager and PagerDuty webhooks.

PagerDuty routes answer as PagerDuty's Events API v2 does (202, `dedup_key`; 400 with an
`errors` list), so its official clients work unchanged.
"""

from typing import Any, Final

import msgspec
from litestar import Response, post

from services.api.guards import authenticated, requires
from services.api.state import AnyRequest, intake_of, now
from services.auth import Permission, Tokens, bearer
from services.formats.pagerduty import PagerDutyError
from services.write.answers import Answer
from services.write.intake import decode_events


@post("/v1/events", status_code=200, guards=[requires(Permission.APPEND)], tags=["intake"])
async def post_events(request: AnyRequest) -> Answer:
    """Append one event (a JSON object) or a batch (an array of up to 1,000), all or nothing.

    The principal's role decides which event types it may append (a producer never
    acknowledges, assigns, resolves, closes, reopens, corrects or retracts)."""
    events = decode_events(await request.body())
    return await intake_of(request).events(events, authenticated(request))


@post(
    "/v1/webhooks/alertmanager",
    status_code=200,
    guards=[requires(Permission.APPEND)],
    tags=["intake"],
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


@post(
    ["/v1/webhooks/pagerduty", "/v2/enqueue", "/v1/webhooks/pagerduty/v2/enqueue"],
    status_code=202,
    tags=["intake"],
)
async def pagerduty(request: AnyRequest) -> Response[Any]:
    """PagerDuty Events API v2: trigger, acknowledge, resolve by dedup_key."""
    body = await request.body()
    token = bearer(request.headers.get("authorization")) or _routing_key(body)
    tokens: Tokens = request.app.state.tokens
    principal = tokens.authenticate(token)
    if principal is None or not principal.may(Permission.APPEND):
        status = 401 if principal is None else 403
        return Response(
            {"status": "unauthorized", "message": "invalid routing_key or token"},
            status_code=status,
        )
    try:
        dedup_key, _ = await intake_of(request).pagerduty(body, now(request), principal)
    except PagerDutyError as exc:
        return Response(
            {"status": "invalid event", "message": PagerDutyError.message, "errors": exc.errors},
            status_code=400,
        )
    return Response(
        {"status": "success", "message": "Event processed", "dedup_key": dedup_key},
        status_code=202,
    )


ROUTES: Final = [post_events, alertmanager, pagerduty]
