"""The console's command forms: which command each one sends, and its fields to that command.

A form's fields are text. They become the command route's own body (`bodies.body_of`, read
with `strict=False` so "3" is a level and "P1" a severity), then the command through
`bodies.to_command`, exactly as `POST /v1/incidents/{id}/<verb>` does; the errors are the
API's (`ServiceError` naming the field). A blank field is a field not given. Comms are
composed from a policy template by the service's one renderer (`services.write.comms`).
"""

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

import msgspec

from events.commands import (
    Acknowledge,
    AddNote,
    AnyCommand,
    AssignRole,
    AttachEvidence,
    ChangePhase,
    ChangeSeverity,
    ChangeStatus,
    Close,
    Command,
    CompleteMitigation,
    Escalate,
    Reopen,
    Resolve,
    SendComms,
    StartMitigation,
)
from events.durations import parse_duration
from events.policy import Policy
from events.schema import Severity, Source
from events.store import EventStore
from services.api.bodies import body_of, to_command
from services.errors import ErrorKind, ServiceError, located
from services.write.comms import compose

VAR_PREFIX: Final = "var."  # a comms form's template variable: `var.cause`


class Action(NamedTuple):
    label: str  # the button's name
    command: type[Command]


# The button bar, in its order; the key is the form's address under
# /console/incidents/{id}/ and the name the page uses for its form and its errors.
ACTIONS: Final[dict[str, Action]] = {
    "ack": Action("Acknowledge", Acknowledge),
    "severity": Action("Change severity", ChangeSeverity),
    "status": Action("Set status", ChangeStatus),
    "phase": Action("Set phase", ChangePhase),
    "role": Action("Assign role", AssignRole),
    "escalate": Action("Escalate", Escalate),
    "mitigation": Action("Start mitigation", StartMitigation),
    "mitigation-complete": Action("Complete mitigation", CompleteMitigation),
    "comms": Action("Send comms", SendComms),
    "note": Action("Add note", AddNote),
    "evidence": Action("Attach evidence", AttachEvidence),
    "resolve": Action("Resolve", Resolve),
    "close": Action("Close", Close),
    "reopen": Action("Reopen", Reopen),
}
_BODIES: Final = {name: body_of(action.command) for name, action in ACTIONS.items()}


def invalid(detail: str, field: str | None) -> ServiceError:
    return ServiceError(ErrorKind.INVALID, detail, field)


def moment(text: str, now: datetime, field: str) -> datetime:
    """A time typed in a form: a duration from now (`30m`), or a time, UTC unless it says
    otherwise (the console shows every time in UTC, so a bare time means UTC, not a guess)."""
    try:
        return now + timedelta(seconds=parse_duration(text))
    except ValueError:
        pass
    try:
        value = datetime.fromisoformat(text.strip().replace(" ", "T", 1))
    except ValueError:
        detail = f"{text!r} is neither a duration (30m) nor a time (YYYY-MM-DD HH:MM:SSZ)"
        raise invalid(detail, field) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _given(fields: Mapping[str, str]) -> dict[str, Any]:
    """The fields filled in (blank means not given), from the web."""
    given: dict[str, Any] = {key: value.strip() for key, value in fields.items() if value.strip()}
    return given | {"source": Source.WEB.value}


def _body(action: str, given: Mapping[str, Any]) -> msgspec.Struct:
    try:
        body: msgspec.Struct = msgspec.convert(given, _BODIES[action], strict=False)
    except msgspec.ValidationError as exc:
        field, reason = located(str(exc))
        raise invalid(reason, field) from exc
    return body


class Context(NamedTuple):
    """What turning a form into a command needs from the service."""

    incident_id: str
    actor: str
    now: datetime
    policy: Policy
    aliases: Mapping[str, Severity]
    store: EventStore
    page_url: str  # the incident's page, for templates that link to it (`url`)


async def command(action: str, fields: Mapping[str, str], ctx: Context) -> AnyCommand:
    """The command form `action` asks for; `ServiceError` names the field at fault."""
    if action == "comms":
        given = await _composed(fields, ctx)
    else:
        given = _given(fields)
    built = to_command(
        ACTIONS[action].command,
        _body(action, given),
        ctx.incident_id,
        ctx.actor,
        ctx.now,
        severity_aliases=ctx.aliases,
    )
    if isinstance(built, Escalate):  # the path is policy data; decide picks the severity's
        built = msgspec.structs.replace(built, escalation=ctx.policy.escalation)
    return built


async def _composed(fields: Mapping[str, str], ctx: Context) -> dict[str, Any]:
    """A comms form's message, rendered from its template as `POST .../comms` renders it."""
    given = _given(fields)
    name = given.pop("template", None)
    if name is None or name not in ctx.policy.templates:
        known = ", ".join(ctx.policy.templates) or "none"
        raise invalid(f"choose a template (known: {known})", "template")
    extras = {
        key.removeprefix(VAR_PREFIX): given.pop(key)
        for key in list(given)
        if key.startswith(VAR_PREFIX)
    }
    due = given.pop("next_update_at", None)
    next_update_at = moment(due, ctx.now, "next_update_at") if due else None
    composed = await compose(
        ctx.store,
        ctx.policy.templates[name],
        ctx.incident_id,
        extras=extras,
        next_update_at=next_update_at,
        now=ctx.now,
        url=ctx.page_url,
    )
    rendered = msgspec.to_builtins(composed)
    # The form's own choices (none today but what a template leaves open) win, as in the API.
    return {key: value for key, value in rendered.items() if value is not None} | given
