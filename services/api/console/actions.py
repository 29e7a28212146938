"""The incident page's forms land here: `POST /console/incidents/{id}/{action}`.

Each form becomes the command its API route would build (`forms`) and goes to the same
`Intake`, as the viewer's principal. Done: back to the incident page, which waits until the
read models hold the write (`wait_for`) and says what was done. Refused: the incident page
again, with the API's error (`{"error", "field", "detail"}` and its status code) next to the
form, filled in as it was sent.
"""

from typing import Final
from urllib.parse import quote, urlencode

from litestar import post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath
from litestar.response import Redirect, Template

from events.store import StoreUnavailableError
from services.api.console import forms
from services.api.console.access import page, posted_form
from services.api.console.incident_view import incident_context
from services.api.state import (
    AnyRequest,
    intake_of,
    now,
    reader_of,
    storage_fault_of,
    store_of,
)
from services.errors import ErrorKind, ServiceError, unavailable


def _status(kind: ErrorKind) -> int:
    # The API's table, read when a form fails (app.py imports the console's routes).
    from services.api.app import STATUS

    return STATUS[kind]


@post(
    "/console/incidents/{incident_id:str}/{action:str}",
    include_in_schema=False,
    status_code=303,
)
async def act(
    request: AnyRequest, incident_id: FromPath[str], action: FromPath[str]
) -> Redirect | Template:
    back = f"/incidents/{quote(incident_id, safe='')}"
    seen_by, fields = await posted_form(request, back)
    if action not in forms.ACTIONS:
        raise NotFoundException(f"the console has no form {action!r}")
    intake = intake_of(request)
    context = forms.Context(
        incident_id=incident_id,
        actor=seen_by.principal.name,
        now=now(request),
        policy=reader_of(request).policy,
        aliases=intake.severity_aliases,
        store=store_of(request),
        page_url=f"{str(request.base_url).rstrip('/')}{back}",
    )
    try:
        command = await forms.command(action, fields, context)
        answer = await intake.command(command, seen_by.principal)
    except ServiceError as exc:
        error, status_code = exc.body(), _status(exc.kind)
    except StoreUnavailableError as exc:
        error = unavailable(exc, storage_fault_of(request)).body()
        status_code = _status(ErrorKind.UNAVAILABLE)
    else:
        query: dict[str, str | int] = {"done": action}
        if answer.events:
            query["wait_for"] = max(e.seq for e in answer.events)
        return Redirect(f"{back}?{urlencode(query)}", status_code=303)
    shown = await incident_context(request, seen_by, incident_id)
    shown |= {"failed": action, "error": error, "values": fields, "done": None}
    shown |= {"as_of_problem": None, "as_of_text": "", "poll": 0}
    return page(request, seen_by, "incident.html", shown, status_code)


ROUTES: Final = [act]
