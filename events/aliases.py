"""The runbooks' words for what the log names otherwise (issue 13): `SEV-1`..`SEV-4` for the
severities, and "mitigating" said as a status when it is a phase.

Pure. Every edge that takes a severity from a person, a producer or a monitor maps it here
before it reaches a command or an event, so the log only ever stores `P0`..`P4`. The policy
file's `[severity_aliases]` table adds words (or moves them) over the defaults (runbook 002's
SEV-1 is the worst, as P0 is).
"""

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import msgspec

from events.schema import AnyEvent, SchemaError, decode
from events.vocabulary import Phase, Severity, Status

DEFAULT_SEVERITY_ALIASES: Final[Mapping[str, Severity]] = MappingProxyType(
    {f"SEV-{n + 1}": severity for n, severity in enumerate(Severity) if n < 4}
)
_SEVERITIES: Final = frozenset(s.value for s in Severity)
_MAX_ALIAS: Final = 64


def alias_key(text: str) -> str:
    """Aliases are case-insensitive: `sev-1`, `Sev-1` and `SEV-1` are one word."""
    return text.strip().upper()


def canonical_severity(
    text: str, aliases: Mapping[str, Severity] = DEFAULT_SEVERITY_ALIASES
) -> Severity | None:
    """The severity `text` names (`P1`, `p1`, `SEV-2` with the default aliases), else None."""
    key = alias_key(text)
    if key in _SEVERITIES:
        return Severity(key)
    return aliases.get(key)


def parse_severity_aliases(
    document: object, base: Mapping[str, Severity] = DEFAULT_SEVERITY_ALIASES
) -> dict[str, Severity]:
    """`[severity_aliases]` of a policy file (`SEV-1 = "P0"`), merged over `base`.

    ValueError names the key: an alias that is a severity itself, a value that is not one.
    """
    if not isinstance(document, Mapping):
        raise ValueError(f'severity_aliases: expected a table (SEV-1 = "P0"), got {document!r}')
    merged = dict(base)
    for raw, value in document.items():
        where = f"severity_aliases.{raw}"
        key = alias_key(str(raw))
        if not key or len(key) > _MAX_ALIAS:
            raise ValueError(f"{where}: an alias is 1 to {_MAX_ALIAS} characters")
        if key in _SEVERITIES:
            raise ValueError(f"{where}: P0..P4 are the severities themselves, not aliases")
        severity = canonical_severity(value, {}) if isinstance(value, str) else None
        if severity is None:
            raise ValueError(f"{where}: not a severity (use P0..P4), got {value!r}")
        merged[key] = severity
    return merged


# msgspec's refusal of an enum value in a top-level field: every severity of an event is one.
_BAD_ENUM: Final = re.compile(r"Invalid enum value .* - at `\$\.(\w+)`")


def decode_aliased(
    data: bytes, aliases: Mapping[str, Severity] = DEFAULT_SEVERITY_ALIASES
) -> AnyEvent:
    """An event as `events.schema.decode` reads it, except that a severity given as a word
    for one (`"severity": "SEV-1"`, `"to": "p2"`) is the severity itself: the log stores P0.

    Only a record that fails to decode is looked at again, so the common case costs nothing
    more. A field that still fails with the severity in it was no severity field: the first
    refusal stands.
    """
    try:
        return decode(data)
    except SchemaError as refused:
        error = refused
    doc: dict[str, Any] | None = None
    for _ in range(len(Severity)):  # more than any event has severity fields
        found = _BAD_ENUM.fullmatch(str(error))
        if found is None:
            raise error
        if doc is None:
            doc = msgspec.json.decode(data)  # decoded once as an event's fields: an object
        field = found.group(1)
        value = doc.get(field)
        severity = canonical_severity(value, aliases) if isinstance(value, str) else None
        if severity is None or severity.value == value:
            raise error
        doc[field] = severity.value
        try:
            return decode(msgspec.json.encode(doc))
        except SchemaError as again:
            if _BAD_ENUM.fullmatch(str(again)) and f"`$.{field}`" in str(again):
                raise error from None
            error = again
    raise error


_STATUSES: Final = frozenset(s.value for s in Status)
# What people say of an incident's state that names a phase, not the public status.
_PHASE_WORDS: Final[Mapping[str, Phase]] = MappingProxyType(
    {p.value: p for p in Phase if p.value not in _STATUSES}
    | {"mitigating": Phase.MITIGATION, "triaging": Phase.TRIAGE, "validating": Phase.VALIDATION}
)


def phase_meant(word: str) -> Phase | None:
    """The phase a would-be status names (`mitigating` -> mitigation); None for anything else,
    a status included."""
    return _PHASE_WORDS.get(word.strip().lower())
