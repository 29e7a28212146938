"""HTTP request bodies: each command with its envelope made optional, and back to a command.

Bodies are derived from the command Structs so the API, its OpenAPI document and the domain
never disagree. The edge fills what a person should not have to type: the incident id from the
path, a fresh event id, the time, the authenticated actor. Structs nested in a body (an
impact statement) refuse unknown fields like the body itself, and `POST .../impact` takes the
impact's own fields flat, not wrapped in `{"impact": {...}}`. Severities may be given in the
runbooks' words (`SEV-1`: the policy's aliases) and reach the command as P0..P4; a status that
names a phase (`mitigating`) is refused with the route that sets the phase.
"""

import functools
import operator
import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Annotated, Any, Final

import msgspec

from events.aliases import DEFAULT_SEVERITY_ALIASES, canonical_severity, phase_meant
from events.commands import (
    AddActionItem,
    AnyCommand,
    ChangeStatus,
    Command,
    CommandEventId,
    StartMitigation,
    UpdateImpact,
)
from events.schema import Impact, IncidentId, Name, Severity, Source, Status, UtcDatetime
from events.subjects import SERVICE_ID_PREFIX, new_event_id, service_event_id
from services.errors import ErrorKind, ServiceError, located

_ENVELOPE: Final[list[tuple[str, Any, Any]]] = [
    ("incident_id", IncidentId | None, None),
    ("event_id", CommandEventId | None, None),
    ("occurred_at", UtcDatetime | None, None),
    ("actor", Name | None, None),
    ("source", Source | None, None),
]

# Ids a person may leave out, generated at the edge.
_GENERATED: Final[dict[type[Command], tuple[str, Callable[[], str]]]] = {
    StartMitigation: ("mitigation_id", lambda: "MIT-" + new_event_id()[:8]),
    AddActionItem: ("item_id", lambda: "AI-" + new_event_id()[:8]),
}


_RESERVED: Final = f"ids starting with {SERVICE_ID_PREFIX!r} are the service's own"


# Fields the service sets and a body may not carry: the principal, and the policy's escalation
# paths (`Escalate.escalation`, set by the escalations route).
_SERVICE_SET: Final = frozenset({"principal", "escalation"})


def _field(info: msgspec.structs.FieldInfo, kind: Any) -> tuple[str, Any] | tuple[str, Any, Any]:
    if info.required:
        return (info.name, kind)
    if info.default_factory is not msgspec.NODEFAULT:
        return (info.name, kind, msgspec.field(default_factory=info.default_factory))
    return (info.name, kind, info.default)


def _strict(struct: type[msgspec.Struct]) -> type[msgspec.Struct]:
    """A twin of a lenient log Struct that refuses unknown fields, as command bodies do."""
    fields = [_field(info, info.type) for info in msgspec.structs.fields(struct)]
    return msgspec.defstruct(
        f"{struct.__name__}Body", fields, kw_only=True, frozen=True, forbid_unknown_fields=True
    )


# Log Structs that commands carry, as bodies take them: strict.
_NESTED: Final[dict[Any, type[msgspec.Struct]]] = {Impact: _strict(Impact)}
# Commands whose body spreads one nested Struct's fields flat: (field, its Struct).
_FLAT: Final[dict[type[Command], tuple[str, type[msgspec.Struct]]]] = {
    UpdateImpact: ("impact", Impact),
}


# People's words, taken as text and mapped by `to_command`: a severity or a word for one
# (`SEV-1`), and the status of `POST .../status`, where a phase word gets its own answer.
SeverityWord = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        description="P0 (worst) to P4, or a word for one: SEV-1..SEV-4 (the policy's aliases)",
        examples=["P1", "SEV-2"],
    ),
]
StatusWord = Annotated[
    str,
    msgspec.Meta(
        min_length=1,
        max_length=64,
        description=", ".join(s.value for s in Status) + " (the public status; see /phase)",
    ),
]
_WORDS: Final[dict[type[Command], dict[str, Any]]] = {ChangeStatus: {"status": StatusWord}}


def _in_body(kind: Any) -> Any:
    """`kind` with each nested log Struct replaced by its strict twin (`Impact | None`...), and
    a severity by the words that name one."""
    if kind is Severity:
        return SeverityWord
    if kind in _NESTED:
        return _NESTED[kind]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        return functools.reduce(operator.or_, map(_in_body, typing.get_args(kind)))
    return kind


def _own_fields(command: type[Command]) -> list[msgspec.structs.FieldInfo]:
    """The command's fields a body holds: a flat Struct's fields in place of the Struct."""
    flat = _FLAT.get(command)
    infos: list[msgspec.structs.FieldInfo] = []
    for info in msgspec.structs.fields(command):
        if flat is not None and info.name == flat[0]:
            infos.extend(msgspec.structs.fields(flat[1]))
        elif info.name not in _SERVICE_SET:
            infos.append(info)
    return infos


def body_of(command: type[Command]) -> type[msgspec.Struct]:
    """The command's fields, its envelope optional, without what only the service sets."""
    optional = {name: (name, kind, default) for name, kind, default in _ENVELOPE}
    if command in _GENERATED:
        optional[_GENERATED[command][0]] = (_GENERATED[command][0], Name | None, None)
    words = _WORDS.get(command, {})
    fields = [
        optional.get(info.name) or _field(info, words.get(info.name) or _in_body(info.type))
        for info in _own_fields(command)
    ]
    return msgspec.defstruct(
        f"{command.__name__}Body", fields, kw_only=True, frozen=True, forbid_unknown_fields=True
    )


def to_command(
    command: type[Command],
    body: msgspec.Struct | None,
    incident_id: str | None,
    actor: str,
    now: datetime,
    event_id: str | None = None,
    severity_aliases: Mapping[str, Severity] = DEFAULT_SEVERITY_ALIASES,
) -> AnyCommand:
    """The command `body` asks for; what it leaves out comes from the path, the principal
    (`actor`: its name), the clock, and `event_id` (or a fresh id of the service's own). An
    actor the body claims is kept; the principal itself is stamped by intake. Severities in
    `severity_aliases` become the severity they name."""
    given = _given(command, body)
    _read_words(command, given, incident_id, severity_aliases)
    if str(given.get("event_id") or "").startswith(SERVICE_ID_PREFIX):
        raise ServiceError(ErrorKind.INVALID, _RESERVED, "event_id")
    if incident_id and given.get("incident_id") not in (None, incident_id):
        detail = f"body says {given['incident_id']}, the path says {incident_id}"
        raise ServiceError(ErrorKind.INVALID, detail, "incident_id")
    fields = given | {
        "incident_id": incident_id or given.get("incident_id"),
        "event_id": given.get("event_id") or event_id or service_event_id(),
        "occurred_at": given.get("occurred_at") or now,
        "actor": given.get("actor") or actor,
        "source": given.get("source") or Source.API,
    }
    if command in _GENERATED:
        name, generate = _GENERATED[command]
        fields[name] = fields.get(name) or generate()
    # convert, not the constructor: a missing body (no JSON at all) is validated too.
    try:
        built: AnyCommand = msgspec.convert(fields, command)  # type: ignore[assignment]
    except msgspec.ValidationError as exc:
        field, reason = located(str(exc))
        raise ServiceError(ErrorKind.INVALID, reason, field) from exc
    return built


def _holds(kind: Any, target: type) -> bool:
    return kind is target or target in typing.get_args(kind)


def _read_words(
    command: type[Command],
    given: dict[str, Any],
    incident_id: str | None,
    aliases: Mapping[str, Severity],
) -> None:
    """Severity words in `given` replaced by the severity; a phase word as a status refused."""
    for info in msgspec.structs.fields(command):
        value = given.get(info.name)
        if not isinstance(value, str):
            continue
        if _holds(info.type, Severity):
            severity = canonical_severity(value, aliases)
            if severity is None:
                words = ", ".join(sorted(aliases))
                detail = f"{value!r} is not a severity: use P0..P4 or one of {words}"
                raise ServiceError(ErrorKind.INVALID, detail, info.name)
            given[info.name] = severity.value
        elif command in _WORDS and _holds(info.type, Status):
            phase = phase_meant(value)
            if phase is not None:
                where = f"/v1/incidents/{incident_id or '{id}'}/phase"
                detail = (
                    f"{value} is a phase, not a status: POST {where} "
                    f'{{"phase": "{phase.value}"}} (statuses: {", ".join(Status)})'
                )
                raise ServiceError(ErrorKind.INVALID, detail, info.name)


def _given(command: type[Command], body: msgspec.Struct | None) -> dict[str, Any]:
    """The body's fields as the command names them; nested Structs as plain data for `convert`."""
    given = {
        name: msgspec.to_builtins(value) if isinstance(value, msgspec.Struct) else value
        for name, value in (msgspec.structs.asdict(body) if body is not None else {}).items()
    }
    if command in _FLAT:
        name, struct = _FLAT[command]
        defaults = {info.name: info.default for info in msgspec.structs.fields(struct)}
        spread = {key: given.pop(key, default) for key, default in defaults.items()}
        if spread == defaults:  # an empty statement would say nothing
            raise ServiceError(ErrorKind.INVALID, f"give at least one of {', '.join(defaults)}")
        given[name] = spread
    return given
