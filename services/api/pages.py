"""The web page (jinja2): status board and incident pages (impact, breaches, next escalation,
comms, action items, postmortem, timeline), over the same read queries.

Server-rendered, no external assets. Links come from producers and monitors: only http(s)
URIs become links (`href`), so a `javascript:` evidence URI stays text.
"""

from datetime import datetime
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from litestar import get
from litestar.params import FromPath, FromQuery
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

from events.durations import format_duration
from projections import action_items, changes, queries
from projections.wording import attribution
from services.api.guards import requires
from services.api.reads import incident_with_breaches
from services.api.state import AnyRequest, reader_of
from services.auth import Permission
from services.clock import utc_text

REFRESH_S: Final = 15


def _duration(seconds: float | None) -> str:
    return "—" if seconds is None else format_duration(seconds)


def _when(moment: datetime | str | None) -> str:
    return utc_text(moment) if moment else "—"


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
    filters = {"duration": _duration, "when": _when, "attribution": attribution}
    engine.engine.filters.update(filters, href=_href, percent=_percent)


def _live(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Bodies of the events of one type not retracted, with when (corrected) and who."""
    return [
        e["body"] | {"at": e["effective_at"], "by": e["actor"]}
        for e in events
        if e["type"] == kind and not e["retracted"]
    ]


def _evidence(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The evidence attached and not retracted: kind, uri, description."""
    return _live(events, "evidence.attached")


def _postmortem(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest publication (status, document, summary), its authors as the fold keeps them
    (the latest publication that names any), and every review meeting held."""
    published = _live(events, "postmortem.published")
    reviews = _live(events, "postmortem.reviewed")
    if not published and not reviews:
        return None
    latest = published[-1] if published else {}
    authors: list[str] = next((p["authors"] for p in reversed(published) if p.get("authors")), [])
    # A record from before issue 13 carries no status: it was a published, final document.
    status = latest.get("status", "final") if published else None
    return latest | {"status": status, "authors": authors, "reviews": reviews}


TEMPLATES: Final = TemplateConfig(
    directory=Path(__file__).parent / "templates",
    engine=JinjaTemplateEngine,
    engine_callback=_engine,
)


@get("/", guards=[requires(Permission.READ)], include_in_schema=False)
async def board(request: AnyRequest, include_closed: FromQuery[bool] = False) -> Template:
    reader = reader_of(request)
    now = reader.clock()
    incidents = await reader.run(
        queries.list_incidents,
        now,
        None,
        None,
        None,
        include_closed,
        policy=reader.policy,
    )
    context = {
        "incidents": incidents,
        "include_closed": include_closed,
        "checkpoint": reader.projector.checkpoint,
        "refresh": REFRESH_S,
        "now": now,
    }
    return Template(template_name="board.html", context=context)


@get("/incidents/{incident_id:str}", guards=[requires(Permission.READ)], include_in_schema=False)
async def incident_page(request: AnyRequest, incident_id: FromPath[str]) -> Template:
    reader = reader_of(request)
    now = reader.clock()
    incident = await incident_with_breaches(reader, incident_id, now)
    events = await reader.run(queries.timeline, incident_id)
    context = {
        "incident": incident,
        "events": events,
        "evidence": _evidence(events),
        "comms": _live(events, "comms.sent"),
        "action_items": await reader.run(action_items.of_incident, incident_id, now),
        "postmortem": _postmortem(events),
        "now": now,
        "changes": await reader.run(changes.before, incident["detected_at"]),
        "refresh": REFRESH_S,
    }
    return Template(template_name="incident.html", context=context)


ROUTES: Final = [board, incident_page]
