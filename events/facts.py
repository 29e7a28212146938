"""Lifecycle facts: what the fold keeps of the events a correction may move or a retraction take
back (declaration, acknowledgements, mitigation outcomes, resolutions, reopenings, closure,
postmortems, comms), and the rules that read them. Pure; used by `events.incident`.

Every other event leaves no id in the state: copying a set of every id at every event made the
fold quadratic.
"""

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Final, TypeAlias

from msgspec import Struct

from events.schema import Outcome

DECLARED: Final = "incident.declared"
ACKNOWLEDGED: Final = "incident.acknowledged"
MITIGATED: Final = "mitigation.completed"
RESOLVED: Final = "incident.resolved"
REOPENED: Final = "incident.reopened"
CLOSED: Final = "incident.closed"
POSTMORTEM: Final = "postmortem.published"
REVIEWED: Final = "postmortem.reviewed"
COMMS: Final = "comms.sent"
# The declaration's own times a correction may move besides `occurred_at`.
DETECTED_AT: Final = "detected_at"
IMPACT_STARTED_AT: Final = "impact_started_at"


class Fact(Struct, frozen=True, gc=False, omit_defaults=True):
    """A lifecycle event as the corrections and retractions after it left it."""

    event_id: str
    kind: str  # its event type
    n: int  # its place among the incident's events: of two at the same time, the later wins
    occurred_at: datetime
    fixes: tuple[tuple[str, datetime], ...] = ()  # corrected times, log order: (event id, time)
    retracted: bool = False
    mitigation_id: str | None = None
    outcome: Outcome | None = None
    next_update_at: datetime | None = None
    # A declaration's detected_at and impact_started_at, and their corrections in log order:
    # (correction's event id, field, time).
    detected_at: datetime | None = None
    impact_started_at: datetime | None = None
    reviewed_at: datetime | None = None  # a review's `held_at`
    field_fixes: tuple[tuple[str, str, datetime], ...] = ()

    @property
    def at(self) -> datetime:
        """The effective time: the latest correction's, else the recorded one."""
        return self.fixes[-1][1] if self.fixes else self.occurred_at

    def effective(self, name: str) -> datetime | None:
        """A declaration time (`DETECTED_AT`, `IMPACT_STARTED_AT`) as last corrected."""
        fixed = [at for _, field, at in self.field_fixes if field == name]
        return fixed[-1] if fixed else getattr(self, name)

    @property
    def key(self) -> tuple[datetime, int]:
        return (self.at, self.n)


# Facts in log order, in runs whose sizes halve from the front (a binary counter): appending
# copies O(log n) references, where one flat tuple would copy all of them every time.
Runs: TypeAlias = tuple[tuple[Fact, ...], ...]


def appended(runs: Runs, fact: Fact) -> Runs:
    run: tuple[Fact, ...] = (fact,)
    while runs and len(runs[-1]) <= len(run):
        runs, run = runs[:-1], runs[-1] + run
    return (*runs, run)


def facts_of(runs: Runs) -> Iterator[Fact]:
    return (fact for run in runs for fact in run)


def changed(runs: Runs, change: Callable[[Fact], Fact | None]) -> Runs | None:
    """`runs` with the first fact `change` changes (it answers None for the others) replaced;
    None when it changes none."""
    for r, run in enumerate(runs):
        for f, fact in enumerate(run):
            new = change(fact)
            if new is not None:
                return (*runs[:r], (*run[:f], new, *run[f + 1 :]), *runs[r + 1 :])
    return None


def last_turn(facts: tuple[Fact, ...]) -> Fact | None:
    """The resolve or reopen that decides whether the incident is resolved: the latest in
    effective time, then log order (the metrics' rule)."""
    turns = (f for f in facts if f.kind in (RESOLVED, REOPENED) and not f.retracted)
    return max(turns, key=lambda f: f.key, default=None)


def promise(latest: Fact | None, facts: tuple[Fact, ...]) -> datetime | None:
    """The next update the latest comms promised, while unresolved and not before a reopening:
    a resolution stops the update clock and comms after it (a resolution notice) never re-arm
    it."""
    turn = last_turn(facts)
    if latest is None or (turn is not None and (turn.kind == RESOLVED or turn.key > latest.key)):
        return None
    return latest.next_update_at
