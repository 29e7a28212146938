"""Comms routes: send a message (free text, or a policy template rendered here), preview one,
list the templates.

`POST /v1/incidents/{id}/comms` takes `{audience, kind, message, ...}` as every command route
does, or `{"template": "initial", "vars": {...}, "next_update_at": ...}`: the server renders
the template from the incident's current state (`services.write.comms`), so the CLI, the web
console and API clients share one renderer and the policy file stays on the server. The
template gives audience, kind and channel; the body may override each. `.../comms/preview`
takes the same body and answers the message without storing anything.
"""

from typing import Annotated, Any, Final
from urllib.parse import quote

import msgspec
from litestar import get, post
from litestar.params import FromPath, JSONBody
from msgspec import Meta

from events.commands import SendComms, target_incident
from events.schema import CommsSent, Text
from events.store import EventStore
from events.templates import CommsTemplate, variables_of
from services.api.bodies import body_of, to_command
from services.api.guards import actor_of, authenticated, requires
from services.api.state import AnyRequest, intake_of, now, policy_of, store_of
from services.auth import Permission
from services.errors import ErrorKind, ServiceError
from services.write.answers import Answer
from services.write.comms import BUILT_IN, Composed, compose

_SEND_BODY: Final = body_of(SendComms)
# What a template writes; a body without a template must give them.
_FROM_TEMPLATE: Final = ("audience", "kind", "message")
VarName = Annotated[str, Meta(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}\Z")]
Extras = Annotated[dict[VarName, Text], Meta(max_length=64)]


def _comms_body() -> type[msgspec.Struct]:
    """SendComms' body with what a template writes made optional, and the template's `vars`."""
    fields: list[Any] = []
    for info in msgspec.structs.fields(_SEND_BODY):
        if info.name in _FROM_TEMPLATE:
            fields.append((info.name, info.type | None, None))
        elif info.required:
            fields.append((info.name, info.type))
        elif info.default_factory is not msgspec.NODEFAULT:
            fields.append(
                (info.name, info.type, msgspec.field(default_factory=info.default_factory))
            )
        else:
            fields.append((info.name, info.type, info.default))
    fields.append(("vars", Extras, msgspec.field(default_factory=dict)))
    return msgspec.defstruct(
        "SendCommsBody", fields, kw_only=True, frozen=True, forbid_unknown_fields=True
    )


CommsBody: Final = _comms_body()


class CommsAnswer(Answer, frozen=True):
    """The stored events, and the message as sent."""

    comms: Composed | None = None


class Preview(msgspec.Struct, frozen=True):
    incident_id: str
    comms: Composed


def _template(request: AnyRequest, name: str) -> CommsTemplate:
    templates = policy_of(request).templates
    if name not in templates:
        known = ", ".join(templates) or "none"
        raise ServiceError(ErrorKind.INVALID, f"no template {name} (known: {known})", "template")
    return templates[name]


def _page(request: AnyRequest, incident_id: str) -> str:
    return f"{str(request.base_url).rstrip('/')}/incidents/{quote(incident_id, safe='')}"


async def _command(
    request: AnyRequest, incident_id: str, body: msgspec.Struct | None, preview: bool = False
) -> SendComms:
    given = msgspec.structs.asdict(body if body is not None else CommsBody())
    extras = given.pop("vars")
    moment = now(request)
    if given["template"] is None:
        if preview:
            raise ServiceError(ErrorKind.INVALID, "a preview renders a template", "template")
        if extras:
            raise ServiceError(ErrorKind.INVALID, "vars go with a template", "vars")
        for name in _FROM_TEMPLATE:
            if given[name] is None:
                detail = f"give {name} (with audience, kind and message), or a template"
                raise ServiceError(ErrorKind.INVALID, detail, name)
    else:
        if given["message"] is not None:
            detail = "a template writes the message: give either message or template"
            raise ServiceError(ErrorKind.INVALID, detail, "message")
        composed = await compose(
            store_of(request),
            _template(request, given["template"]),
            incident_id,
            extras=extras,
            next_update_at=given["next_update_at"],
            now=given["occurred_at"] or moment,
            url=_page(request, incident_id),
        )
        given["message"] = composed.message
        for name in ("audience", "kind", "channel", "status"):
            given[name] = given[name] or getattr(composed, name)
    command = to_command(SendComms, _SEND_BODY(**given), incident_id, actor_of(request), moment)
    assert isinstance(command, SendComms)
    return command


async def _sent(store: EventStore, command: SendComms) -> Composed | None:
    loaded = await store.load(command.incident_id)
    found = (s.event for s in loaded.events if s.event.event_id == command.event_id)
    event = next(found, None)
    return _shown(event) if isinstance(event, CommsSent) else None


def _shown(command: SendComms | CommsSent) -> Composed:
    return Composed(
        template=command.template,
        audience=command.audience,
        kind=command.kind,
        channel=command.channel,
        status=command.status,
        message=command.message,
        next_update_at=command.next_update_at,
    )


@post(
    "/v1/incidents/{incident_id:str}/comms",
    status_code=200,
    guards=[requires(Permission.COMMAND)],
    summary="SendComms",
    tags=["commands"],
)
async def send_comms(
    request: AnyRequest,
    incident_id: FromPath[str],
    data: JSONBody[CommsBody | None] = None,  # type: ignore[valid-type]
) -> CommsAnswer:
    """Record a message sent: free text (audience, kind, message), or `template` rendered from
    the incident with `vars`. Answers the stored event and the message as sent."""
    command = await _command(request, incident_id, data)
    answer = await intake_of(request).command(command, authenticated(request))
    shown = _shown(command)
    if answer.events and answer.events[0].duplicate:
        # A retry is answered with what was sent then, not with what would be rendered now.
        shown = await _sent(store_of(request), command) or shown
    return CommsAnswer(answer.events, answer.unchanged, target_incident(command), comms=shown)


@post(
    "/v1/incidents/{incident_id:str}/comms/preview",
    status_code=200,
    guards=[requires(Permission.READ)],
    tags=["reads"],
)
async def preview_comms(
    request: AnyRequest,
    incident_id: FromPath[str],
    data: JSONBody[CommsBody | None] = None,  # type: ignore[valid-type]
) -> Preview:
    """The message `POST .../comms` would record for the same body; nothing is stored."""
    command = await _command(request, incident_id, data, preview=True)
    return Preview(target_incident(command), _shown(command))


@get("/v1/templates", guards=[requires(Permission.READ)], tags=["reads"])
async def list_templates(request: AnyRequest) -> dict[str, Any]:
    """The policy's comms templates; `extras`: variables a template reads that `vars` give."""
    policy = policy_of(request)
    listed = []
    for template in policy.templates.values():
        used = variables_of(template.text)
        shown = msgspec.to_builtins(template)
        listed.append(shown | {"variables": sorted(used), "extras": sorted(used - BUILT_IN)})
    return {"policy_version": policy.version, "templates": listed}


ROUTES: Final = [send_comms, preview_comms, list_templates]
