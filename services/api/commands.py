"""Command routes: `POST /v1/incidents` declares, `POST /v1/incidents/{id}/<verb>` drives one.

Each route turns its body into a command (`bodies`) and hands it to intake; the answer names
the incident the command targeted.
"""

from typing import Any, Final

import msgspec
from litestar import post
from litestar.handlers import HTTPRouteHandler
from litestar.params import FromPath, JSONBody

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
    ReleaseRole,
    Reopen,
    Resolve,
    RetractEvent,
    ReviewPostmortem,
    StartActionItem,
    StartMitigation,
    UpdateImpact,
    target_incident,
)
from events.subjects import declared_incident_id, service_event_id
from services.api.bodies import body_of, to_command
from services.api.guards import actor_of, authenticated, requires
from services.api.state import AnyRequest, intake_of, now, policy_of
from services.auth import Permission
from services.write.answers import Answer

# Command routes under /v1/incidents/{incident_id}/: the contract of DESIGN 7, plus a few
# extensions (phase, releasing roles, completing mitigations and action items, corrections).
# `impact` takes the impact statement's fields flat (`bodies`): it replaces the previous one.
# `comms` has its own module (`comms.py`): its body may name a template the server renders.
# `postmortem` too (`process.py`): without a document, the generated draft is published.
COMMAND_ROUTES: Final[dict[str, type[Command]]] = {
    "ack": Acknowledge,
    "severity": ChangeSeverity,
    "impact": UpdateImpact,
    "status": ChangeStatus,
    "phase": ChangePhase,
    "roles": AssignRole,
    "roles/release": ReleaseRole,
    "escalations": Escalate,
    "mitigations": StartMitigation,
    "mitigations/complete": CompleteMitigation,
    "notes": AddNote,
    "evidence": AttachEvidence,
    "resolve": Resolve,
    "reopen": Reopen,
    "close": Close,
    "postmortem/review": ReviewPostmortem,
    "action-items": AddActionItem,
    "action-items/start": StartActionItem,
    "action-items/complete": CompleteActionItem,
    "corrections": CorrectEvent,
    "retractions": RetractEvent,
}


async def _command(
    request: AnyRequest,
    command_type: type[Command],
    body: msgspec.Struct | None,
    incident_id: str | None,
    event_id: str | None = None,
) -> Answer:
    actor, moment, intake = actor_of(request), now(request), intake_of(request)
    aliases = intake.severity_aliases
    command = to_command(command_type, body, incident_id, actor, moment, event_id, aliases)
    if isinstance(command, Escalate):  # the paths are policy data: decide picks the severity's
        command = msgspec.structs.replace(command, escalation=policy_of(request).escalation)
    answer = await intake.command(command, authenticated(request))
    return msgspec.structs.replace(answer, incident_id=target_incident(command))


def _command_route(verb: str, command_type: type[Command]) -> HTTPRouteHandler:
    body_type = body_of(command_type)

    async def route(
        request: AnyRequest,
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
async def declare(request: AnyRequest, data: JSONBody[DeclareBody]) -> Answer:  # type: ignore[valid-type]
    """Declare an incident. Without an `incident_id` in the body, its id derives from the
    declaration's `event_id` (generated when absent), so a retried declaration finds its
    incident at any time."""
    event_id = getattr(data, "event_id", None) or service_event_id()
    incident_id = getattr(data, "incident_id", None) or declared_incident_id(event_id)
    return await _command(request, Declare, data, incident_id, event_id)


ROUTES: Final[list[Any]] = [
    declare,
    *(_command_route(verb, command) for verb, command in COMMAND_ROUTES.items()),
]
