"""The HTTP API (Litestar): its routes, and every error in one JSON shape.

Errors: `{"error": kind, "field": path-or-null, "detail": reason}` with 400 malformed, 401/403
auth, 403 a state-changing request from another origin, 404 unknown incident, 409 refused by
the lifecycle, 413 too large, 415 not `application/json`, 421 a Host that is not this
service's (see `origin.py`), 422 invalid, 503 with Retry-After when JetStream does not
answer (naming a full disk when that is why). PagerDuty routes answer like PagerDuty.
Anything else is a bug: logged with its traceback and answered 500 `{"error": "internal"}`.
"""

import asyncio
import logging
from collections.abc import Collection
from typing import Any, Final

from litestar import Litestar, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.params import ParameterKwarg

from events.policy import Policy
from events.store import EventStore, StoreUnavailableError
from projections import sandbox
from services.api import admin, changes, commands, comms, health, openapi, pages, process, reads
from services.api import intake as intake_routes
from services.api import prometheus as prometheus_routes
from services.api.console.sessions import Sessions
from services.api.http_metrics import HttpMetrics
from services.api.json_request import JsonRequest
from services.api.origin import BrowserGuard, BrowserRefusal, host_policy
from services.api.state import storage_fault_of
from services.auth import Tokens
from services.clock import Clock
from services.errors import ErrorKind, ServiceError, internal, located, unavailable
from services.readmodels import LiveModels
from services.write.intake import MAX_BODY_BYTES, Intake

log = logging.getLogger(__name__)
RETRY_AFTER_S: Final = "2"
STATUS: Final[dict[ErrorKind, int]] = {
    ErrorKind.MALFORMED: 400,
    ErrorKind.NOT_FOUND: 404,
    ErrorKind.FORBIDDEN: 403,
    ErrorKind.CONFLICT: 409,
    ErrorKind.TOO_LARGE: 413,
    ErrorKind.INVALID: 422,
    ErrorKind.UNAVAILABLE: 503,
    ErrorKind.INTERNAL: 500,
}
# Litestar's own refusals, named like ours.
_HTTP_KINDS: Final = {
    400: "malformed",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "too_large",
    415: "unsupported_media_type",
}


def _error(status: int, kind: str, detail: str, field: str | None = None) -> Response[Any]:
    headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
    return Response(
        {"error": kind, "field": field, "detail": detail}, status_code=status, headers=headers
    )


def _on_service_error(_: Request[Any, Any, Any], exc: ServiceError) -> Response[Any]:
    return _error(STATUS[exc.kind], exc.kind.value, exc.detail, exc.field)


def _wire_name(request: Request[Any, Any, Any], key: str) -> str:
    """A parameter as the client spells it: `from`, not the handler's argument `from_`."""
    field = request.route_handler.parsed_fn_signature.parameters.get(key)
    kwarg = field.kwarg_definition if field is not None else None
    return (kwarg.name or key) if isinstance(kwarg, ParameterKwarg) else key


def _on_validation(request: Request[Any, Any, Any], exc: ValidationException) -> Response[Any]:
    problems = exc.extra if isinstance(exc.extra, list) else []
    if not problems:
        return _error(400, "malformed", str(exc.detail))
    first = problems[0]
    message = str(first.get("message", exc.detail))
    field = first.get("key")
    if field in (None, "data"):
        field = located(message)[0]  # "Object missing required field `title`"
    elif first.get("source") != "body":
        field = _wire_name(request, field)
    return _error(422, "invalid", message, None if field == "data" else field)


def _on_too_deep(_: Request[Any, Any, Any], exc: RecursionError) -> Response[Any]:
    # Litestar decodes bodies generically before typing them; absurd nesting ends up here.
    return _error(400, "malformed", "JSON nested too deeply")


def _on_unavailable(request: Request[Any, Any, Any], exc: StoreUnavailableError) -> Response[Any]:
    error = unavailable(exc, storage_fault_of(request))
    # Logged: a client sees 503 and retries, an operator must see that the log did not answer.
    log.warning("%s %s answered 503: %s", request.method, request.url.path, error.detail)
    return _on_service_error(request, error)


def _on_http(_: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    kind = _HTTP_KINDS.get(exc.status_code, "error")
    answer = _error(exc.status_code, kind, str(exc.detail))
    answer.headers.update(exc.headers or {})  # e.g. a 405's Allow (RFC 9110 15.5.6)
    return answer


def _on_browser(_: Request[Any, Any, Any], exc: BrowserRefusal) -> Response[Any]:
    return _error(exc.status, exc.kind, exc.detail, exc.field)


def _on_bug(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _on_service_error(request, internal(exc))


def create_app(
    intake: Intake,
    tokens: Tokens,
    clock: Clock,
    models: LiveModels | None,
    store: EventStore,
    allowed_hosts: Collection[str] = (),
    policy: Policy | None = None,
) -> Litestar:
    """`allowed_hosts`: names the service answers for besides its own (INCIDENTS_ALLOWED_HOSTS).
    `models` None: an INCIDENTS_ROLE=api replica, whose read routes answer 503 (state.py);
    `policy` defaults to that of `models`."""
    if policy is None:
        assert models is not None, "without read models, give the policy"
        policy = models.reader.policy
    hosts = host_policy(tokens.enabled, allowed_hosts)
    app = Litestar(
        route_handlers=[
            *commands.ROUTES,
            *comms.ROUTES,
            *intake_routes.ROUTES,
            *changes.ROUTES,
            *health.ROUTES,
            *reads.ROUTES,
            *process.ROUTES,
            *pages.ROUTES,
            *admin.ROUTES,
            *prometheus_routes.ROUTES,
            openapi.assets(),
        ],
        template_config=pages.TEMPLATES,
        exception_handlers={
            ServiceError: _on_service_error,
            ValidationException: _on_validation,
            StoreUnavailableError: _on_unavailable,
            HTTPException: _on_http,
            RecursionError: _on_too_deep,
            BrowserRefusal: _on_browser,
            Exception: _on_bug,
        },
        request_class=JsonRequest,
        openapi_config=openapi.config(),  # offline: the page's files are vendored
        request_max_body_size=MAX_BODY_BYTES,
        middleware=[
            BrowserGuard(hosts),
            HttpMetrics(),
        ],
    )
    app.state.intake = intake
    app.state.tokens = tokens
    app.state.clock = clock
    app.state.models = models
    app.state.policy = policy
    app.state.store = store
    app.state.sql_gate = asyncio.Semaphore(sandbox.CONCURRENT)
    app.state.sessions = Sessions()  # the web console's (services/api/console/sessions.py)
    return app
