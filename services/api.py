"""HTTP API (Litestar): thin routes from requests to intake, errors in one JSON shape.

Errors: `{"error": kind, "field": path-or-null, "detail": reason}` with 400 malformed, 401/403
auth, 404 unknown incident, 409 refused by the lifecycle, 413 too large, 422 invalid, 503
with Retry-After when JetStream does not answer. PagerDuty routes answer like PagerDuty.
"""

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import msgspec
from litestar import Litestar, Request, Response, get, post
from litestar.exceptions import (
    HTTPException,
    ValidationException,
)
from litestar.handlers import HTTPRouteHandler
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.params import FromPath, JSONBody
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from events.commands import (
    Acknowledge,
    AddActionItem,
    AddNote,
    AssignRole,
    AttachEvidence,
    ChangePhase,
    ChangeSeverity,
    ChangeStatus,
    Close,
    Command,
    CompleteActionItem,
    CompleteMitigation,
    CorrectEvent,
    Declare,
    Escalate,
    PublishPostmortem,
    ReleaseRole,
    Reopen,
    Resolve,
    RetractEvent,
    SendComms,
    StartMitigation,
    target_incident,
)
from events.store import EventStore, StoreUnavailableError
from events.subjects import new_incident_id
from services.auth import Permission, Tokens, bearer
from services.bodies import BodyError, body_of, to_command
from services.guards import principal_of, requires
from services.handler import ContentionError
from services.intake import (
    MAX_BODY_BYTES,
    Answer,
    ErrorKind,
    Intake,
    IntakeError,
    decode_events,
)
from services.pages import ROUTES as PAGES
from services.pages import TEMPLATES
from services.reads import ROUTES as READ_ROUTES
from services.replay import ROUTES as REPLAY_ROUTES
from services.replay import LiveModels
from services.webhooks import PagerDutyError, WebhookError

Clock = Callable[[], datetime]
RETRY_AFTER_S: Final = "2"

# Command routes under /v1/incidents/{incident_id}/: the contract of DESIGN 7, plus a few
# extensions (phase, releasing roles, completing mitigations and action items, corrections).
COMMAND_ROUTES: Final[dict[str, type[Command]]] = {
    "ack": Acknowledge,
    "severity": ChangeSeverity,
    "status": ChangeStatus,
    "phase": ChangePhase,
    "roles": AssignRole,
    "roles/release": ReleaseRole,
    "escalations": Escalate,
    "mitigations": StartMitigation,
    "mitigations/complete": CompleteMitigation,
    "comms": SendComms,
    "notes": AddNote,
    "evidence": AttachEvidence,
    "resolve": Resolve,
    "reopen": Reopen,
    "close": Close,
    "postmortem": PublishPostmortem,
    "action-items": AddActionItem,
    "action-items/complete": CompleteActionItem,
    "corrections": CorrectEvent,
    "retractions": RetractEvent,
}


def _intake(request: Request[Any, Any, Any]) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


def _now(request: Request[Any, Any, Any]) -> datetime:
    clock: Clock = request.app.state.clock
    return clock()


async def _command(
    request: Request[Any, Any, Any],
    command_type: type[Command],
    body: msgspec.Struct | None,
    incident_id: str | None,
) -> Answer:
    try:
        principal = principal_of(request)
        actor = principal.name if principal else "anonymous"
        command = to_command(command_type, body, incident_id, actor, _now(request))
    except BodyError as exc:
        raise IntakeError(ErrorKind.INVALID, exc.detail, exc.field) from exc
    answer = await _intake(request).command(command)
    return msgspec.structs.replace(answer, incident_id=target_incident(command))


def _command_route(verb: str, command_type: type[Command]) -> HTTPRouteHandler:
    body_type = body_of(command_type)

    async def route(
        request: Request[Any, Any, Any],
        incident_id: FromPath[str],
        data: JSONBody[body_type | None] = None,  # type: ignore[valid-type]
    ) -> Answer:
        return await _command(request, command_type, data, incident_id)

    route.__name__ = f"{command_type.__name__}_route"
    return post(
        f"/v1/incidents/{{incident_id:str}}/{verb}",
        status_code=200,
        guards=[requires(Permission.COMMAND)],
        summary=command_type.__name__,
        tags=["commands"],
    )(route)


DeclareBody = body_of(Declare)


@post("/v1/incidents", status_code=201, guards=[requires(Permission.COMMAND)], tags=["commands"])
async def declare(request: Request[Any, Any, Any], data: JSONBody[DeclareBody]) -> Answer:  # type: ignore[valid-type]
    """Declare an incident; its id is generated unless the body gives one."""
    given = getattr(data, "incident_id", None)
    return await _command(request, Declare, data, given or new_incident_id())


@post("/v1/events", status_code=200, guards=[requires(Permission.APPEND)], tags=["intake"])
async def post_events(request: Request[Any, Any, Any]) -> Answer:
    """Append one event (a JSON object) or a batch (an array of up to 1,000), all or nothing."""
    return await _intake(request).events(decode_events(await request.body()))


@post(
    "/v1/webhooks/alertmanager",
    status_code=200,
    guards=[requires(Permission.APPEND)],
    tags=["intake"],
)
async def alertmanager(request: Request[Any, Any, Any]) -> Answer:
    """Alertmanager webhook receiver (payload version 4)."""
    return await _intake(request).alertmanager(await request.body(), _now(request))


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
async def pagerduty(request: Request[Any, Any, Any]) -> Response[Any]:
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
        dedup_key, _ = await _intake(request).pagerduty(body, _now(request))
    except PagerDutyError as exc:
        return Response(
            {"status": "invalid event", "message": "Event object is invalid", "errors": exc.errors},
            status_code=400,
        )
    return Response(
        {"status": "success", "message": "Event processed", "dedup_key": dedup_key},
        status_code=202,
    )


@get("/healthz", tags=["operations"])
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _error(status: int, kind: str, detail: str, field: str | None = None) -> Response[Any]:
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return Response(
        {"error": kind, "field": field, "detail": detail}, status_code=status, headers=headers
    )


def _on_intake_error(_: Request[Any, Any, Any], exc: IntakeError) -> Response[Any]:
    return _error(exc.kind.value, exc.kind.name.lower(), exc.detail, exc.field)


def _on_validation(_: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    if not problems:
        return _error(400, "malformed", str(exc.detail))
    first = problems[0]
    message = str(first.get("message", exc.detail))
    field = first.get("key")
    if field in (None, "data") and message.count("`") >= 2:
        # "Object missing required field `title`", "Object contains unknown field `x`"
        field = message.split("`")[1]
    return _error(422, "invalid", message, None if field == "data" else field)


def _on_webhook_error(_: Request[Any, Any, Any], exc: WebhookError) -> Response[Any]:
    return _error(422, "invalid", exc.detail, exc.field)


def _on_too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # Litestar decodes bodies generically before typing them; absurd nesting ends up here.
    return _error(400, "malformed", "JSON nested too deeply")


def _on_unavailable(_: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    return _error(503, "unavailable", str(exc))


def _on_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    kinds = {400: "malformed", 401: "unauthorized", 403: "forbidden", 404: "not_found"}
    kinds |= {405: "method_not_allowed", 413: "too_large"}
    return _error(exc.status_code, kinds.get(exc.status_code, "error"), str(exc.detail))


def create_app(
    intake: Intake, tokens: Tokens, clock: Clock, models: LiveModels, store: EventStore
) -> Litestar:
    app = Litestar(
        route_handlers=[
            declare,
            *(_command_route(verb, command) for verb, command in COMMAND_ROUTES.items()),
            post_events,
            alertmanager,
            pagerduty,
            healthz,
            *READ_ROUTES,
            *PAGES,
            *REPLAY_ROUTES,
            PrometheusController,
        ],
        template_config=TEMPLATES,
        exception_handlers={
            IntakeError: _on_intake_error,
            ValidationException: _on_validation,
            WebhookError: _on_webhook_error,
            StoreUnavailableError: _on_unavailable,
            ContentionError: _on_unavailable,
            HTTPException: _on_http,
            RecursionError: _on_too_deep,
        },
        openapi_config=OpenAPIConfig(
            title="incident-timeline",
            version="1",
            path="/schema",
            render_plugins=[SwaggerRenderPlugin()],
        ),
        request_max_body_size=MAX_BODY_BYTES,
        middleware=[
            PrometheusConfig(app_name="incidents", prefix="incidents", group_path=True).middleware
        ],
    )
    app.state.intake = intake
    app.state.tokens = tokens
    app.state.clock = clock
    app.state.models = models
    app.state.store = store
    return app
