"""The web console's pages (jinja2, server-rendered): the status board, the incident page,
the postmortem draft and the evidence export; the console's other routes live in `console/`.

Pages are shown to the viewer `console.access` finds (signed in, a bearer token, or `local`
without tokens); a browser nobody signed in is sent to the sign-in page. No external assets:
the styles and the few lines of script come from `static/`. Links come from producers and
monitors: only http(s) URIs become links (`href`), so a `javascript:` evidence URI stays text.
"""

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote, urlsplit

from litestar import Response, Router, get
from litestar.exceptions import NotFoundException, PermissionDeniedException
from litestar.params import FromPath, FromQuery
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Redirect, Template
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from events.aliases import canonical_severity
from events.durations import format_duration
from events.schema import Status
from projections import breaches, postmortem, queries
from projections.wording import attribution
from services.api.admin import bundle_download
from services.api.console import actions, live, markdown, reports, signin
from services.api.console.access import (
    SECURITY_HEADERS,
    SignInRequired,
    StaleForm,
    page,
    sign_in_url,
    viewer,
)
from services.api.console.forms import ACTIONS
from services.api.console.incident_view import incident_context
from services.api.state import AnyRequest, intake_of, reader_of
from services.auth import Permission
from services.clock import utc_text
from services.errors import ServiceError

STATIC: Final = Path(__file__).parent / "static" / "console"
# Without JavaScript the board reloads itself this often; with it, it follows the projector.
REFRESH_S: Final = 15
POLL_S: Final = 3


def _duration(seconds: float | None) -> str:
    return "—" if seconds is None else format_duration(seconds)


def _when(moment: datetime | str | None) -> str:
    return utc_text(moment) if moment else "—"


def _iso(moment: datetime | str) -> str:
    """An instant as a query string takes it (`as_of`): RFC 3339, UTC, to the microsecond."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _href(uri: Any) -> str | None:
    """`uri` if the page may link to it (http or https), else None."""
    try:
        scheme = urlsplit(uri).scheme.lower() if isinstance(uri, str) else ""
    except ValueError:  # e.g. a malformed IPv6 host
        return None
    return uri if scheme in ("http", "https") else None


def _percent(value: float) -> str:
    return f"{value:g}%"


def _engine(engine: JinjaTemplateEngine) -> None:
    filters = {"duration": _duration, "when": _when, "attribution": attribution, "iso": _iso}
    engine.engine.filters.update(filters, href=_href, percent=_percent, quote=quote)


TEMPLATES: Final = TemplateConfig(
    directory=Path(__file__).parent / "templates",
    engine=JinjaTemplateEngine,
    engine_callback=_engine,
)


def _filters(
    request: AnyRequest, severity: str | None, status: str | None
) -> tuple[str | None, str | None, list[str]]:
    """The board's severity and status filters as the read models spell them; a word that
    names neither is dropped and said so (a filter never hides everything by a typo)."""
    problems = []
    canonical = None
    if severity:
        found = canonical_severity(severity, intake_of(request).severity_aliases)
        if found is None:
            problems.append(f"{severity!r} is not a severity (P0..P4)")
        canonical = found.value if found else None
    if status and status not in {s.value for s in Status}:
        problems.append(f"{status!r} is not a status ({', '.join(Status)})")
        status = None
    return canonical, status or None, problems


@get("/", include_in_schema=False)
async def board(
    request: AnyRequest,
    include_closed: FromQuery[bool] = False,
    severity: FromQuery[str | None] = None,
    service: FromQuery[str | None] = None,
    status: FromQuery[str | None] = None,
) -> Template:
    seen_by = viewer(request)
    reader = reader_of(request)
    now = reader.clock()
    wanted_severity, wanted_status, problems = _filters(request, severity, status)
    args = (wanted_status, wanted_severity, service or None, include_closed)
    incidents = await reader.run(queries.list_incidents, now, *args, policy=reader.policy)
    missed = await reader.run(breaches.breaches, reader.policy, now, open_only=True)
    open_breaches: dict[str, list[str]] = {}
    for breach in missed:
        kinds = open_breaches.setdefault(breach["incident_id"], [])
        if breach["kind"] not in kinds:
            kinds.append(breach["kind"])
    context = {
        "incidents": incidents,
        "open_breaches": open_breaches,
        "include_closed": include_closed,
        "filters": {"severity": severity or "", "service": service or "", "status": status or ""},
        "problems": problems,
        "statuses": [s.value for s in Status],
        "checkpoint": reader.projector.checkpoint,
        "refresh": REFRESH_S,
        "poll": POLL_S,
        "now": now,
    }
    return page(request, seen_by, "board.html", context)


def _as_of(text: str | None) -> datetime | None:
    """The as-of field: a time, UTC unless it says otherwise (ValueError if not a time)."""
    if not text:
        return None
    value = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@get("/incidents/{incident_id:str}", include_in_schema=False)
async def incident_page(
    request: AnyRequest,
    incident_id: FromPath[str],
    as_of: FromQuery[str | None] = None,
    wait_for: FromQuery[int | None] = None,
    done: FromQuery[str | None] = None,
) -> Template:
    seen_by = viewer(request)
    problem, status_code, instant = None, 200, None
    try:
        instant = _as_of(as_of)
    except (ValueError, OverflowError):
        problem = f"{as_of!r} is not a time: write YYYY-MM-DD HH:MM:SSZ (UTC)"
        status_code = 422
    context = await incident_context(request, seen_by, incident_id, instant, wait_for)
    context |= {
        "done": ACTIONS[done].label if done in ACTIONS else None,
        "as_of_problem": problem,
        "as_of_text": as_of or "",
        "poll": POLL_S,
    }
    return page(request, seen_by, "incident.html", context, status_code)


@get("/incidents/{incident_id:str}/postmortem", include_in_schema=False)
async def postmortem_page(request: AnyRequest, incident_id: FromPath[str]) -> Template:
    """The postmortem draft the service generates (`GET /v1/incidents/{id}/postmortem`), as
    HTML."""
    seen_by = viewer(request)
    reader = reader_of(request)
    draft = await reader.run(postmortem.report, incident_id, reader.policy, reader.clock())
    if draft is None:
        raise NotFoundException(f"incident {incident_id} does not exist")
    context = {"incident_id": incident_id, "draft": markdown.html(draft), "source": draft}
    return page(request, seen_by, "postmortem.html", context)


@get("/incidents/{incident_id:str}/export", include_in_schema=False)
async def export(request: AnyRequest, incident_id: FromPath[str]) -> Response[bytes]:
    """The evidence bundle (`GET /v1/incidents/{id}/export`), for a signed-in admin."""
    seen_by = viewer(request)
    if not seen_by.may(Permission.ADMINISTER):
        raise PermissionDeniedException(f"role {seen_by.principal.role} may not export evidence")
    return await bundle_download(request, incident_id, seen_by.principal.name)


def _error_page(request: AnyRequest, status_code: int, title: str, detail: str) -> Template:
    context = {"title": title, "detail": detail, "status_code": status_code}
    return Template(
        template_name="error.html",
        context=context,
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )


def _on_sign_in(request: AnyRequest, exc: SignInRequired) -> Response[Any]:
    return Redirect(sign_in_url(exc.next_path), status_code=303)


def _on_stale(request: AnyRequest, exc: StaleForm) -> Response[Any]:
    detail = (
        "This form was not sent from this browser's console session (it expired, the service "
        "restarted, or another site sent it). Nothing was done: reload the page and try again."
    )
    return _error_page(request, 403, "Form refused", detail)


def _on_not_found(request: AnyRequest, exc: NotFoundException) -> Response[Any]:
    return _error_page(request, 404, "Not found", str(exc.detail))


def _on_denied(request: AnyRequest, exc: PermissionDeniedException) -> Response[Any]:
    return _error_page(request, 403, "Not allowed", str(exc.detail))


def _on_service_error(request: AnyRequest, exc: ServiceError) -> Response[Any]:
    """A page the service cannot serve (a replica without read models, the log away...)."""
    from services.api.app import STATUS  # the API's table (app.py imports these routes)

    return _error_page(request, STATUS[exc.kind], "Not available", exc.detail)


CONSOLE: Final = Router(
    path="/",
    route_handlers=[
        board,
        incident_page,
        postmortem_page,
        export,
        *signin.ROUTES,
        *actions.ROUTES,
        *reports.ROUTES,
        *live.ROUTES,
    ],
    exception_handlers={
        SignInRequired: _on_sign_in,
        StaleForm: _on_stale,
        NotFoundException: _on_not_found,
        PermissionDeniedException: _on_denied,
        ServiceError: _on_service_error,
    },
    include_in_schema=False,
)
STATIC_FILES: Final = create_static_files_router(
    path="/console/static", directories=[STATIC], include_in_schema=False
)
ROUTES: Final = [CONSOLE, STATIC_FILES]
