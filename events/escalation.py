"""Escalation paths as policy data: per severity, the levels an incident climbs when it stays
unacknowledged or unresolved too long after detection, each naming whom to bring in.

Pure. `events.policy` holds an `EscalationPolicy` (the policy file's `[escalation]` table,
parsed here); `decide` takes an escalation's level and target from it (`Escalate.escalation`),
the breach queries and the status board judge incidents against it.

The defaults follow runbook 002's escalation path (SEV-n is P(n-1)): P0 secondary at 5 min,
manager at 10, VP at 20; P1 secondary at 15, manager at 30; P2 secondary at 30; P3 and P4 none.
Level 0 is the primary on-call, paged by the alert itself: not an escalation. The first level
waits for an acknowledgement (nobody answered the page); the later ones for the resolution, as
runbook 001's path climbs ("can't resolve", "still unresolved") and its "MTTR target exceeded:
notify engineering manager".
"""

import enum
import math
from collections.abc import Mapping
from typing import Final

from msgspec import Struct

from events.aliases import canonical_severity
from events.durations import parse_duration
from events.schema import MAX_ESCALATION_LEVEL, MAX_NAME, Severity

_MIN: Final = 60.0


class Without(enum.StrEnum):
    """What a level waits for: it falls due while the incident still lacks it."""

    ACK = "ack"
    RESOLUTION = "resolution"


class EscalationLevel(Struct, frozen=True, kw_only=True, gc=False):
    after_s: float  # seconds after detection
    to: str  # a person, a rota or a team
    without: Without = Without.ACK

    def pending(self, acknowledged: bool) -> bool:
        """Whether this level can still fall due for an open incident: one waiting for an
        acknowledgement cannot once the incident is acknowledged."""
        return self.without is Without.RESOLUTION or not acknowledged


class EscalationPolicy(Struct, frozen=True, kw_only=True, gc=False):
    """Each severity's path: level n is `paths[severity][n - 1]`."""

    paths: dict[Severity, tuple[EscalationLevel, ...]] = {}

    def path(self, severity: Severity | str) -> tuple[EscalationLevel, ...]:
        return self.paths.get(Severity(severity), ())

    def level(self, severity: Severity | str, n: int) -> EscalationLevel | None:
        path = self.path(severity)
        return path[n - 1] if 1 <= n <= len(path) else None

    def next_level(self, severity: Severity | str, current: int, acknowledged: bool) -> int | None:
        """The next level of the path above `current` that can still fall due (the board's
        next escalation, and where `incidents escalate` goes without a level); None: none."""
        path = self.path(severity)
        return next(
            (n for n in range(current + 1, len(path) + 1) if path[n - 1].pending(acknowledged)),
            None,
        )


NO_ESCALATION: Final = EscalationPolicy()


def _level(after_min: float, to: str, without: Without) -> EscalationLevel:
    return EscalationLevel(after_s=after_min * _MIN, to=to, without=without)


_SECONDARY: Final = "secondary-oncall"
_MANAGER: Final = "engineering-manager"
_VP: Final = "vp-engineering"

DEFAULT_ESCALATION: Final = EscalationPolicy(
    paths={
        Severity.P0: (
            _level(5, _SECONDARY, Without.ACK),
            _level(10, _MANAGER, Without.RESOLUTION),
            _level(20, _VP, Without.RESOLUTION),
        ),
        Severity.P1: (
            _level(15, _SECONDARY, Without.ACK),
            _level(30, _MANAGER, Without.RESOLUTION),
        ),
        Severity.P2: (_level(30, _SECONDARY, Without.ACK),),
    }
)

_KEYS: Final = ("after", "without", "to")
_NONE_WORDS: Final = frozenset({"none", "off", "-"})


class EscalationError(ValueError):
    """An `[escalation]` table that cannot be used; the message names the key
    (`events.policy` raises it as its `PolicyError`)."""


def _after(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise EscalationError(f"{where}: expected a duration after detection, got {value!r}")
    if isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError as exc:
            raise EscalationError(f"{where}: {exc}") from None
    if not math.isfinite(value) or value < 0:
        raise EscalationError(f"{where}: expected a duration of 0 or more, got {value!r}")
    return float(value)


def _without(value: object, where: str) -> Without:
    try:
        return Without(str(value).strip().lower())
    except ValueError:
        raise EscalationError(f"{where}: expected 'ack' or 'resolution', got {value!r}") from None


def _to(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > MAX_NAME:
        raise EscalationError(f"{where}: expected a person, rota or team name, got {value!r}")
    return value.strip()


def _parse_level(value: object, where: str) -> EscalationLevel:
    if not isinstance(value, Mapping):
        raise EscalationError(f"{where}: expected a table of {', '.join(_KEYS)}, got {value!r}")
    for key in value:
        if key not in _KEYS:
            raise EscalationError(f"{where}.{key}: unknown key (use {', '.join(_KEYS)})")
    for key in ("after", "to"):
        if key not in value:
            raise EscalationError(f"{where}.{key}: missing")
    return EscalationLevel(
        after_s=_after(value["after"], f"{where}.after"),
        to=_to(value["to"], f"{where}.to"),
        without=_without(value.get("without", Without.ACK.value), f"{where}.without"),
    )


def _path(value: object, where: str) -> tuple[EscalationLevel, ...]:
    if isinstance(value, str) and value.strip().lower() in _NONE_WORDS:
        return ()
    if not isinstance(value, list):
        raise EscalationError(f"{where}: expected a list of levels or 'none', got {value!r}")
    if len(value) > MAX_ESCALATION_LEVEL:
        raise EscalationError(f"{where}: at most {MAX_ESCALATION_LEVEL} levels, got {len(value)}")
    # Errors name levels by number, from 1 as the events count them: `escalation.P0[2].to`.
    levels = tuple(_parse_level(v, f"{where}[{n}]") for n, v in enumerate(value, start=1))
    for n in range(1, len(levels)):
        if levels[n].after_s < levels[n - 1].after_s:
            raise EscalationError(
                f"{where}[{n + 1}].after: levels fall due in order, and this one comes "
                f"before level {n}"
            )
    return levels


def parse_escalation(document: object, base: EscalationPolicy) -> EscalationPolicy:
    """`[escalation]`: a list of levels per severity (P0..P4, or the default aliases SEV-1..
    SEV-4) over `base`'s paths.

    A severity given replaces its whole path ('none' or [] clears it); the others keep
    `base`'s. `escalation = "none"` clears every path. Each level: `after` (a duration after
    detection), `to` (who is brought in), `without` ('ack', the default, or 'resolution').
    """
    if isinstance(document, str) and document.strip().lower() in _NONE_WORDS:
        return NO_ESCALATION
    if not isinstance(document, Mapping):
        raise EscalationError(
            f"escalation: expected a table of severities (P0..P4), each a list of levels, "
            f"got {document!r}"
        )
    paths = dict(base.paths)
    for key, value in document.items():
        severity = canonical_severity(str(key))
        if severity is None:
            raise EscalationError(f"escalation.{key}: not a severity (use P0..P4 or SEV-1..SEV-4)")
        paths[severity] = _path(value, f"escalation.{severity}")
    return EscalationPolicy(paths={s: p for s, p in paths.items() if p})
