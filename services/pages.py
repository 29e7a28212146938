"""The web page (jinja2): status board and incident timelines, over the same read queries."""

from datetime import datetime
from pathlib import Path
from typing import Any, Final

from litestar import Request, get
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.response import Template
from litestar.template.config import TemplateConfig

from projections import breaches, queries
from services.auth import Permission
from services.guards import requires
from services.reads import Reader

REFRESH_S: Final = 15


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours:02d}h"
    return f"{hours}h {minutes:02d}m" if hours else f"{minutes}m"


def _when(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ") if moment else "—"


def _engine(engine: JinjaTemplateEngine) -> None:
    engine.engine.filters.update(duration=_duration, when=_when)


TEMPLATES: Final = TemplateConfig(
    directory=Path(__file__).parent / "templates",
    engine=JinjaTemplateEngine,
    engine_callback=_engine,
)


def _reader(request: Request[Any, Any, Any]) -> Reader:
    # Read once per request: a replay may swap in a new generation at any moment.
    reader: Reader = request.app.state.models.reader
    return reader


@get("/", guards=[requires(Permission.READ)], include_in_schema=False)
async def board(
    request: Request[Any, Any, Any], include_closed: FromQuery[bool] = False
) -> Template:
    reader = _reader(request)
    incidents = await reader.run(
        queries.list_incidents, reader.clock(), None, None, None, include_closed
    )
    context = {
        "incidents": incidents,
        "include_closed": include_closed,
        "checkpoint": reader.projector.checkpoint,
        "refresh": REFRESH_S,
    }
    return Template(template_name="board.html", context=context)


@get("/incidents/{incident_id:str}", guards=[requires(Permission.READ)], include_in_schema=False)
async def incident_page(request: Request[Any, Any, Any], incident_id: FromPath[str]) -> Template:
    reader = _reader(request)
    now = reader.clock()
    incident = await reader.run(queries.get_incident, incident_id, now)
    if incident is None:
        raise NotFoundException(f"incident {incident_id} does not exist")
    incident["breaches"] = await reader.run(
        breaches.breaches, reader.policy, now, incident_id=incident_id
    )
    events = await reader.run(queries.timeline, incident_id)
    context = {"incident": incident, "events": events, "refresh": REFRESH_S}
    return Template(template_name="incident.html", context=context)


ROUTES: Final = [board, incident_page]
