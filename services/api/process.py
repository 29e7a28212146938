"""Routes of the process after an incident: `GET /v1/action-items` across incidents (DESIGN 8),
and `POST /v1/incidents/{id}/postmortem`, which publishes the generated draft when the body
names no document.

The other writes are plain command routes (`commands.COMMAND_ROUTES`: `action-items`,
`action-items/start`, `action-items/complete`, `postmortem/review`). Overdue is judged against
the service's clock by the one rule of `projections.action_items`.
"""

from typing import Any, Final

import msgspec
from litestar import get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody

from events.commands import PublishPostmortem, target_incident
from events.schema import MAX_MARKDOWN, ActionStatus
from projections import action_items, postmortem
from services.api.bodies import body_of, to_command
from services.api.guards import actor_of, authenticated, requires
from services.api.reads import fresh
from services.api.state import AnyRequest, intake_of, now, reader_of, store_of
from services.auth import Permission
from services.errors import ErrorKind, ServiceError
from services.write.answers import Answer


@get("/v1/action-items", guards=[requires(Permission.READ)], tags=["reads"])
async def list_action_items(
    request: AnyRequest,
    overdue: FromQuery[bool | None] = None,
    owner: FromQuery[str | None] = None,
    status: FromQuery[ActionStatus | None] = None,
    incident_id: FromQuery[str | None] = None,
    limit: FromQuery[int] = action_items.MAX_LISTED,
    wait_for: FromQuery[int | None] = None,
) -> dict[str, Any]:
    """Action items of every incident, the soonest due first, each with `overdue` (not done
    once its due day has ended, UTC). `overdue=true` lists only those, `overdue=false` only the
    others; `owner`, `status` and `incident_id` filter; at most `limit` (10,000)."""
    if not 1 <= limit <= action_items.MAX_LISTED:
        raise ServiceError(
            ErrorKind.INVALID, f"must be from 1 to {action_items.MAX_LISTED:,}", "limit"
        )
    reader = reader_of(request)
    await fresh(reader, wait_for, store_of(request))
    found = await reader.run(
        action_items.listed,
        reader.clock(),
        overdue=overdue,
        owner=owner,
        status=status,
        incident_id=incident_id,
        limit=limit,
    )
    return {"action_items": found}


PublishBody: Final = body_of(PublishPostmortem)


async def _draft(request: AnyRequest, incident_id: str) -> str:
    """The draft of `GET .../postmortem`, once the read models hold every event the incident
    has now, so that what is published is the whole log's draft."""
    reader = reader_of(request)
    store = store_of(request)
    await fresh(reader, await store.incident_last_seq(incident_id) or None, store)
    draft = await reader.run(postmortem.report, incident_id, reader.policy, reader.clock())
    if draft is None:
        raise NotFoundException(f"incident {incident_id} does not exist")
    if len(draft) > MAX_MARKDOWN:
        raise ServiceError(
            ErrorKind.INVALID,
            f"the generated draft is {len(draft):,} characters, over the {MAX_MARKDOWN:,} an "
            "inline postmortem holds: publish it elsewhere and give its uri",
            "markdown",
        )
    return draft


@post(
    "/v1/incidents/{incident_id:str}/postmortem",
    status_code=200,
    guards=[requires(Permission.COMMAND)],
    summary="PublishPostmortem",
    tags=["commands"],
)
async def publish_postmortem(
    request: AnyRequest,
    incident_id: FromPath[str],
    data: JSONBody[PublishBody | None] = None,  # type: ignore[valid-type]
) -> Answer:
    """Publish the postmortem at `uri` or inline (`markdown`), with `authors`, `status` (draft,
    in_review, final; default final) and `summary`. With neither `uri` nor `markdown`, the draft
    the service generates from the log (`GET .../postmortem`) is published inline."""
    body = data if data is not None else PublishBody()
    if getattr(body, "uri", None) is None and getattr(body, "markdown", None) is None:
        body = msgspec.structs.replace(body, markdown=await _draft(request, incident_id))
    command = to_command(PublishPostmortem, body, incident_id, actor_of(request), now(request))
    answer = await intake_of(request).command(command, authenticated(request))
    return msgspec.structs.replace(answer, incident_id=target_incident(command))


ROUTES: Final = [list_action_items, publish_postmortem]
