"""Metrics, breaches and repeats over a projected year of ~3000 incidents, checked against a
plain-Python reference computed from the generated events (not from the database).

The reference re-implements DESIGN 8's definitions with loops; the SQL is never consulted:
every group key (team by a policy's map), two keys at once, the automation share.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from events.chain import GENESIS, seal
from events.policy import DEFAULT_POLICY, Policy, Targets
from events.records import Stored
from events.schema import (
    ActionItemAdded,
    ActionItemCompleted,
    AlertFired,
    AlertResolved,
    AnyEvent,
    Audience,
    Category,
    CommsKind,
    CommsSent,
    EventCorrected,
    EventRetracted,
    Impact,
    IncidentAcknowledged,
    IncidentClosed,
    IncidentDeclared,
    IncidentEscalated,
    IncidentImpactUpdated,
    IncidentReopened,
    IncidentResolved,
    IncidentSeverityChanged,
    MitigationAction,
    MitigationCompleted,
    MitigationStarted,
    Outcome,
    PostmortemPublished,
    PostmortemReviewed,
    Severity,
    Source,
    encode,
)
from projections.breaches import KINDS, breaches, open_counts, repeats
from projections.database import open_database
from projections.metrics import (
    AUTOMATION,
    DEFINITIONS,
    GROUPS,
    METRICS,
    NO_REGION,
    NO_SERVICE,
    NO_TEAM,
    mttx,
)
from projections.projector import Projector

BASE = datetime(2025, 1, 1, tzinfo=UTC)
NOW = BASE + timedelta(days=365, hours=6)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SERVICES = [f"svc-{name}" for name in "abcdefgh"]
ALERTNAMES = [f"Alert{n}" for n in range(15)]
REGIONS = ["eu-west-1", "eu-central-1", "us-east-1", "ap-south-1"]
RESOLVE_MEDIAN_S = {"P0": 5400, "P1": 14400, "P2": 40000, "P3": 150000, "P4": 300000}
# The policy's [teams]: two services share a team, two have none.
TEAMS = {
    "svc-a": "payments",
    "svc-b": "payments",
    "svc-c": "search",
    "svc-d": "platform",
    "svc-e": "platform",
    "svc-f": "platform",
}


def us(t: datetime) -> int:
    d = t - EPOCH
    return (d.days * 86400 + d.seconds) * 1_000_000 + d.microseconds


@dataclass
class Builder:
    """One incident's events in log order (times in seconds after the declaration)."""

    incident_id: str
    declared: datetime
    events: list[AnyEvent] = field(default_factory=list)

    def add(self, cls: Callable[..., AnyEvent], offset_s: float, **fields: Any) -> AnyEvent:
        event = cls(
            event_id=f"{self.incident_id}-{len(self.events)}",
            incident_id=self.incident_id,
            occurred_at=self.declared + timedelta(seconds=offset_s),
            actor="gen@example.com",
            source=Source.SYNTHETIC,
            **fields,
        )
        self.events.append(event)
        return event


def _impact(rng: random.Random) -> Impact:
    return Impact(
        regions=tuple(rng.sample(REGIONS, rng.choice([0, 1, 1, 2, 3]))),
        users_affected_pct=rng.choice([None, 1.5, 20.0]),
    )


def _incident(rng: random.Random, n: int) -> list[AnyEvent]:
    # Impact statements and corrections of detection draw from a stream of their own, so the
    # rest of the history stays what it was before they were added.
    impact_rng = random.Random(1_000_000 + n)
    auto_rng = random.Random(2_000_000 + n)  # automated mitigations (issue 13), likewise
    severity = rng.choices(list(Severity), weights=[1, 3, 5, 4, 2])[0]
    declared = BASE + timedelta(seconds=rng.randrange(365 * 86400))
    b = Builder(f"INC-{n:05d}", declared)
    detected = rng.random() < 0.3
    b.add(
        IncidentDeclared,
        0,
        title=f"incident {n}",
        severity=severity,
        category=rng.choice(list(Category)),
        services=tuple(rng.sample(SERVICES, rng.choice([0, 1, 1, 1, 2]))),
        detected_at=declared - timedelta(seconds=rng.randrange(1, 4000)) if detected else None,
        impact_started_at=(
            declared - timedelta(seconds=rng.randrange(0, 7200)) if rng.random() < 0.4 else None
        ),
        impact=_impact(impact_rng) if impact_rng.random() < 0.6 else None,
    )
    timed: list[tuple[float, Callable[..., AnyEvent], dict[str, Any]]] = []
    for k in range(rng.choice([0, 0, 1, 1, 2]) if rng.random() < 0.8 else 0):
        roll = rng.random()
        starts: datetime | None = declared - timedelta(seconds=rng.randrange(0, 3600))
        if roll < 0.07:
            starts = declared + timedelta(seconds=rng.randrange(1, 600))  # after: MTTD 0
        elif roll < 0.12:
            starts = None
        fields = {"fingerprint": f"fp{k}", "alertname": rng.choice(ALERTNAMES), "starts_at": starts}
        timed.append((rng.randrange(0, 300), AlertFired, fields))
        if rng.random() < 0.3:
            timed.append((rng.randrange(300, 9000), AlertResolved, {"fingerprint": f"fp{k}"}))
    if rng.random() < 0.85:
        timed.append((int(rng.expovariate(1 / 900)), IncidentAcknowledged, {}))
    t = 0.0
    for k in range(rng.choice([0, 1, 1, 2, 3])):
        t += rng.randrange(60, 5000)
        started: dict[str, Any] = {"mitigation_id": f"m{k}"}
        started |= {
            "action": rng.choice(list(MitigationAction)),
            "automated": auto_rng.random() < 0.4,
        }
        timed.append((t, MitigationStarted, started))
        if rng.random() < 0.9:
            outcome = rng.choices(list(Outcome), weights=[6, 3, 1])[0]
            t += rng.randrange(30, 4000)
            timed.append((t, MitigationCompleted, {"mitigation_id": f"m{k}", "outcome": outcome}))
    if rng.random() < 0.1:
        to = rng.choice([s for s in Severity if s is not severity])
        timed.append(
            (rng.randrange(60, 3000), IncidentSeverityChanged, {"from_": severity, "to": to})
        )
    horizon = (NOW - declared).total_seconds()
    resolved = rng.random() < 0.9
    end = min(rng.lognormvariate(math.log(RESOLVE_MEDIAN_S[severity]), 1.0), horizon - 60)
    end = float(int(end)) if resolved else horizon
    _comms(rng, timed, 0, end)
    if resolved:
        timed.append((end, IncidentResolved, {}))
        if rng.random() < 0.4:
            timed.append(
                (end + rng.randrange(0, 900), CommsSent, _comms_fields(CommsKind.RESOLUTION))
            )
        if rng.random() < 0.1 and end + 86400 < horizon:
            if rng.random() < 0.3:
                timed.append((end + 600, PostmortemPublished, {"uri": "https://wiki/pm"}))
            reopened = end + rng.randrange(700, 86400)
            timed.append((reopened, IncidentReopened, {}))
            again = reopened + rng.randrange(60, 3 * 86400)
            resolved = again < horizon and rng.random() < 0.7
            end = again if resolved else horizon
            _comms(rng, timed, reopened, end)
            if resolved:
                timed.append((end, IncidentResolved, {}))
        if resolved:
            last = end
            if rng.random() < 0.65:
                last = end + rng.randrange(3600, 8 * 86400)
                timed.append((last, PostmortemPublished, {"markdown": "# pm"}))
            if rng.random() < 0.3:
                timed.append((last + rng.randrange(60, 86400), IncidentClosed, {}))
    _process(random.Random(3_000_000 + n), timed, declared)
    # Nothing happens after NOW; the stable sort keeps the causal order of equal times.
    timed = sorted((item for item in timed if item[0] < horizon - 10), key=lambda item: item[0])
    for offset, cls, fields in timed:
        b.add(cls, offset, **fields)
    last = max(offset for offset, _, _ in timed) if timed else 0
    _amend(rng, b, last)
    _restate(impact_rng, b, last)
    _automate(auto_rng, b, last)
    return b.events


def _automate(rng: random.Random, b: Builder, last: float) -> None:
    """Mitigation starts taken back, and completions moved (the first success may change)."""
    starts = [e for e in b.events if isinstance(e, MitigationStarted)]
    if starts and rng.random() < 0.05:
        b.add(EventRetracted, last + 7, target_event_id=rng.choice(starts).event_id, reason="no")
    completions = [e for e in b.events if isinstance(e, MitigationCompleted)]
    if completions and rng.random() < 0.15:
        moved = b.declared + timedelta(seconds=rng.randrange(0, 6000))
        b.add(
            EventCorrected,
            last + 8,
            target_event_id=rng.choice(completions).event_id,
            corrected_occurred_at=moved,
            reason="logged late",
        )


def _restate(rng: random.Random, b: Builder, last: float) -> None:
    """Impact statements replaced (some taken back), the declaration's detection and impact
    start corrected (some corrections taken back), after every other event."""
    if rng.random() < 0.25:
        update = b.add(IncidentImpactUpdated, last + 3, impact=_impact(rng))
        if rng.random() < 0.2:
            b.add(EventRetracted, last + 4, target_event_id=update.event_id, reason="wrong")
    if rng.random() < 0.15:
        fields: dict[str, Any] = {}
        if rng.random() < 0.7:
            fields["corrected_detected_at"] = b.declared - timedelta(seconds=rng.randrange(0, 5400))
        if not fields or rng.random() < 0.4:
            fields["corrected_impact_started_at"] = b.declared - timedelta(
                seconds=rng.randrange(0, 9000)
            )
        fix = b.add(
            EventCorrected,
            last + 5,
            target_event_id=b.events[0].event_id,
            reason="the first page was earlier",
            **fields,
        )
        if rng.random() < 0.15:
            b.add(EventRetracted, last + 6, target_event_id=fix.event_id, reason="it was not")


def _process(rng: random.Random, timed: list[Any], declared: datetime) -> None:
    """The runbooks' process (issue 13), from a stream of its own so the rest of the history
    stays what it was: escalations, promised updates, postmortem reviews, action items."""
    if rng.random() < 0.3:
        level = 0
        for _ in range(rng.choice([1, 1, 2])):
            level += rng.choice([1, 1, 2])
            fields = {"level": level, "to": f"rota-{level}"}
            timed.append((rng.randrange(0, 4000), IncidentEscalated, fields))
    for offset, cls, fields in list(timed):
        if cls is CommsSent and rng.random() < 0.5:
            # Some promise an update before their own message: due at once.
            promise = offset + rng.choice([rng.randrange(300, 3600), -60])
            fields["next_update_at"] = declared + timedelta(seconds=promise)
    posts = [offset for offset, cls, _ in timed if cls is PostmortemPublished]
    if posts and rng.random() < 0.6:
        held = min(posts) + rng.randrange(-3600, 14 * 86400)
        review = {"held_at": declared + timedelta(seconds=held), "attendees": ("ic",)}
        timed.append((max(held, min(posts)) + 60, PostmortemReviewed, review))
    for k in range(rng.choice([0, 0, 0, 1, 2])):
        added = rng.randrange(3600, 20 * 86400)
        due_day = rng.choice([None, rng.randrange(-2, 40)])
        item: dict[str, Any] = {"item_id": f"ai{k}", "title": "fix it"}
        if due_day is not None:
            item["due"] = (declared + timedelta(seconds=added, days=due_day)).date()
        timed.append((added, ActionItemAdded, item))
        if rng.random() < 0.6:
            done = added + rng.randrange(60, 50 * 86400)
            timed.append((done, ActionItemCompleted, {"item_id": f"ai{k}"}))


def _comms_fields(kind: CommsKind) -> dict[str, Any]:
    return {"audience": Audience.STATUS_PAGE, "kind": kind, "message": "update"}


def _comms(rng: random.Random, timed: list[Any], start: float, end: float) -> None:
    if rng.random() < 0.15:
        return
    cadence = rng.choice([300, 900, 1500, 1800, 3600, 7200, 30000, 90000])
    t = start + rng.randrange(60, 5400)
    for count in range(30):
        if t >= end:
            return
        kind = CommsKind.INITIAL if count == 0 else CommsKind.UPDATE
        timed.append((t, CommsSent, _comms_fields(kind)))
        t += int(rng.uniform(0.5, 1.5) * cadence)


def _amend(rng: random.Random, b: Builder, last: float) -> None:
    """Corrections and retractions, appended after the facts they amend."""
    kinds = {type(e): e for e in b.events}
    ack = kinds.get(IncidentAcknowledged)
    targets: list[tuple[AnyEvent, float]] = []
    if ack is not None and rng.random() < 0.04:
        targets.append((ack, rng.randrange(-300, 7200) + rng.random()))
    if rng.random() < 0.004:
        targets.append((b.events[0], rng.randrange(-600, 600)))
    for event, moved in targets:
        corrected = b.declared + timedelta(seconds=moved)
        b.add(
            EventCorrected,
            last + 1,
            target_event_id=event.event_id,
            corrected_occurred_at=corrected,
            reason="typed late",
        )
    for cls, p in [
        (IncidentAcknowledged, 0.01),
        (CommsSent, 0.02),
        (MitigationCompleted, 0.02),
        (AlertFired, 0.02),
        (IncidentResolved, 0.005),
        (IncidentDeclared, 0.002),
    ]:
        candidates = [e for e in b.events if isinstance(e, cls)]
        if candidates and rng.random() < p:
            b.add(
                EventRetracted,
                last + 2,
                target_event_id=rng.choice(candidates).event_id,
                reason="wrong incident",
            )


def generate(count: int = 3000, seed: int = 20250101) -> list[list[AnyEvent]]:
    rng = random.Random(seed)
    return [_incident(rng, n) for n in range(count)]


def log_of(incidents: list[list[AnyEvent]]) -> list[Stored]:
    """Seal each incident's chain, then interleave incidents in time as a real log would."""
    keyed: list[tuple[datetime, int, int, AnyEvent]] = []
    for n, events in enumerate(incidents):
        clock = events[0].occurred_at
        for k, event in enumerate(seal(events, GENESIS, NOW)):
            clock = max(clock, event.occurred_at)
            keyed.append((clock, n, k, event))
    keyed.sort(key=lambda item: item[:3])
    return [Stored(seq, e, encode(e)) for seq, (_, _, _, e) in enumerate(keyed, start=1)]


# ---- the reference: DESIGN 8 in plain Python ------------------------------------------------


# (kind, target_s, start, stop, open, level or item id), times in microseconds.
Clock = tuple[str, float | None, int, int, bool, int | str | None]


@dataclass
class Ref:
    incident_id: str
    severity: str
    category: str
    services: tuple[str, ...]
    regions: tuple[str, ...]
    declared: int
    mttd: float | None
    time_to_declare: float | None
    mtta: float | None
    mttm: float | None
    mttr: float | None
    alertnames: set[str]
    clocks: list[Clock]
    automation: tuple[bool, bool, bool, bool]  # started, succeeded, mitigated, first automated
    times: dict[str, int | None] = field(default_factory=dict)  # the board's, in microseconds


def _seconds(to: int | None, start: int | None) -> float | None:
    if to is None or start is None:
        return None
    return max(to - start, 0) / 1e6


def reference(events: list[AnyEvent], now: datetime, policy: Policy) -> Ref | None:
    retracted = {e.target_event_id for e in events if isinstance(e, EventRetracted)}
    when = {e.event_id: us(e.occurred_at) for e in events}
    for e in events:
        if isinstance(e, EventCorrected) and e.corrected_occurred_at is not None:
            when[e.target_event_id] = us(e.corrected_occurred_at)
    live = sorted(
        ((when[e.event_id], k, e) for k, e in enumerate(events) if e.event_id not in retracted),
        key=lambda item: item[:2],
    )
    declarations = [e for e in events if isinstance(e, IncidentDeclared)]
    first = declarations[0]
    if first.event_id in retracted:
        return None
    declared = when[first.event_id]
    severity = first.severity.value
    for e in events:
        if isinstance(e, IncidentSeverityChanged):
            severity = e.to.value

    def times(cls: type[AnyEvent], test: Callable[[Any], bool] = lambda e: True) -> list[int]:
        return [t for t, _, e in live if isinstance(e, cls) and test(e)]

    alerts = [
        us(e.starts_at) if e.starts_at else t for t, _, e in live if isinstance(e, AlertFired)
    ]
    # The declaration's own times, as its latest corrections (not retracted) left them.
    detected_at, impact_started_at = first.detected_at, first.impact_started_at
    for e in events:
        if (
            isinstance(e, EventCorrected)
            and e.target_event_id == first.event_id
            and e.event_id not in retracted
        ):
            detected_at = e.corrected_detected_at or detected_at
            impact_started_at = e.corrected_impact_started_at or impact_started_at
    # Definitions version 2: detection is the earliest of first alert, detected_at, declaration.
    detected = min([*alerts, *([us(detected_at)] if detected_at else []), declared])
    impact = us(impact_started_at) if impact_started_at else None
    statements = [(first.event_id, first.impact)] + [
        (e.event_id, e.impact) for e in events if isinstance(e, IncidentImpactUpdated)
    ]
    stated = [i for event_id, i in statements if i is not None and event_id not in retracted]
    regions = stated[-1].regions if stated else ()
    acks = times(IncidentAcknowledged)
    mitigated = times(MitigationCompleted, lambda e: e.outcome is Outcome.SUCCEEDED)
    automated = {
        e.mitigation_id: e.automated for _, _, e in live if isinstance(e, MitigationStarted)
    }
    completed = sorted(
        ((k, e) for _, k, e in live if isinstance(e, MitigationCompleted)), key=lambda x: x[0]
    )
    outcome = {e.mitigation_id: e.outcome for _, e in completed}  # the latest in log order
    successes = [
        e
        for _, _, e in live
        if isinstance(e, MitigationCompleted) and e.outcome is Outcome.SUCCEEDED
    ]
    automation = (
        any(automated.values()),
        any(a and outcome.get(m) is Outcome.SUCCEEDED for m, a in automated.items()),
        bool(successes),
        bool(successes) and automated.get(successes[0].mitigation_id, False),
    )
    comms = times(CommsSent)
    posts = times(PostmortemPublished)
    closes = times(IncidentClosed)
    states = [(t, e) for t, _, e in live if isinstance(e, IncidentResolved | IncidentReopened)]
    resolved = bool(states) and isinstance(states[-1][1], IncidentResolved)
    resolved_at = states[-1][0] if resolved else None
    is_open = not resolved and not closes
    now_us = us(now)
    end = resolved_at if resolved_at is not None else (min(closes) if closes else now_us)
    targets = policy.for_severity(severity)
    clocks: list[Clock] = [
        ("ack", targets.ack_s, detected, min(acks) if acks else end, is_open, None),
        (
            "first_comms",
            targets.first_comms_s,
            detected,
            min(comms) if comms else end,
            is_open,
            None,
        ),
        ("resolution", targets.resolve_s, detected, end, is_open, None),
    ]
    if resolved_at is not None:
        post = min(posts) if posts else None
        stop = post if post is not None else now_us
        clocks.append(("postmortem", targets.postmortem_s, resolved_at, stop, post is None, None))
    if posts:
        held = [us(e.held_at) for _, _, e in live if isinstance(e, PostmortemReviewed)]
        review = min(held) if held else None
        stop = review if review is not None else now_us
        clocks.append(
            ("postmortem_review_overdue", targets.review_s, min(posts), stop, review is None, None)
        )
    # The cadence starts at the first comms; at the declaration only for a severity whose first
    # message has no target of its own (one missing first message, one breach).
    points = [
        (t, k, e)
        for t, k, e in live
        if isinstance(e, CommsSent | IncidentResolved | IncidentReopened)
        or (e is first and not comms and targets.first_comms_s is None)
    ]
    phase: type | None = None
    for n, (t, _, e) in enumerate(points):
        if isinstance(e, IncidentResolved | IncidentReopened):
            phase = type(e)
        if phase is IncidentResolved:
            continue
        next_at = points[n + 1][0] if n + 1 < len(points) else None
        stop_at = next_at if next_at is not None else (now_us if is_open else None)
        if stop_at is not None:
            clocks.append(("update_cadence", targets.update_s, t, stop_at, is_open, None))
        if isinstance(e, CommsSent) and e.next_update_at is not None:
            promise = us(e.next_update_at)
            start = min(t, promise)
            kept = next_at if next_at is not None else end
            open_ = next_at is None and is_open
            clocks.append(("next_update_missed", (promise - start) / 1e6, start, kept, open_, None))
    clocks += _escalations(live, policy, severity, detected, acks, end, is_open)
    clocks += _action_items(events, when, now_us)
    return Ref(
        incident_id=first.incident_id,
        severity=severity,
        category=first.category.value,
        services=first.services,
        regions=regions,
        declared=declared,
        mttd=_seconds(detected, impact),
        time_to_declare=_seconds(declared, detected),
        mtta=_seconds(min(acks) if acks else None, detected),
        mttm=_seconds(min(mitigated) if mitigated else None, detected),
        mttr=_seconds(resolved_at, detected),
        alertnames={e.alertname for _, _, e in live if isinstance(e, AlertFired) and e.alertname},
        clocks=clocks,
        automation=automation,
        times={
            "declared_at": declared,
            "detected_at": detected,
            "impact_started_at": impact,
            "acknowledged_at": min(acks) if acks else None,
            "mitigated_at": min(mitigated) if mitigated else None,
            "first_comms_at": min(comms) if comms else None,
            "comms_count": len(comms),
            "resolved_at": resolved_at,
            "closed_at": min(closes) if closes else None,
            "postmortem_published_at": min(posts) if posts else None,
        },
    )


def _escalations(
    live: list[tuple[int, int, AnyEvent]],
    policy: Policy,
    severity: str,
    detected: int,
    acks: list[int],
    end: int,
    is_open: bool,
) -> list[Clock]:
    """Each level of the path waits from detection for an escalation at it or higher (retracted
    ones too, as the fold counts them) until the acknowledgement or resolution it is about."""
    escalations = [(t, e.level) for t, _, e in live if isinstance(e, IncidentEscalated)]
    clocks: list[Clock] = []
    for level, step in enumerate(policy.escalation.path(severity), start=1):
        on_ack = step.without == "ack"
        awaited = (min(acks) if acks else end) if on_ack else end
        done = [t for t, reached in escalations if reached >= level]
        stop = min(awaited, min(done)) if done else awaited
        open_ = not done and is_open and (not on_ack or not acks)
        clocks.append(("escalation", step.after_s, detected, stop, open_, level))
    return clocks


def _action_items(events: list[AnyEvent], when: dict[str, int], now_us: int) -> list[Clock]:
    """Overdue items, as the fold has them (retractions aside): due at the end of the due day
    (UTC), done at the first completion."""
    completed: dict[str, int] = {}
    for e in events:
        if isinstance(e, ActionItemCompleted):
            completed[e.item_id] = min(completed.get(e.item_id, when[e.event_id]), when[e.event_id])
    clocks: list[Clock] = []
    for e in events:
        if not isinstance(e, ActionItemAdded) or e.due is None:
            continue
        due = us(datetime.combine(e.due + timedelta(days=1), datetime.min.time(), tzinfo=UTC))
        start = min(when[e.event_id], due)
        done = completed.get(e.item_id)
        if (done is None and now_us >= due) or (done is not None and done > due):
            stop = done if done is not None else now_us
            clocks.append(
                ("action_item_overdue", (due - start) / 1e6, start, stop, done is None, e.item_id)
            )
    return clocks


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (pos - lo) * (ordered[hi] - ordered[lo])


def keys_of(r: Ref, group_by: str) -> set[str]:
    """The values of one group key an incident counts under (several for lists)."""
    if group_by == "service":
        return set(r.services) or {NO_SERVICE}
    if group_by == "region":
        return set(r.regions) or {NO_REGION}
    if group_by == "team":
        return {TEAMS.get(s, NO_TEAM) for s in r.services} or {NO_TEAM}
    return {
        {
            "severity": r.severity,
            "category": r.category,
            "month": (EPOCH + timedelta(microseconds=r.declared)).strftime("%Y-%m"),
        }[group_by]
    }


def expected_mttx(
    refs: list[Ref], group_by: str, lo: int | None = None, hi: int | None = None
) -> dict[str, dict[str, Any]]:
    names = group_by.split(",")
    groups: dict[tuple[str, ...], list[Ref]] = defaultdict(list)
    for r in refs:
        if (lo is not None and r.declared < lo) or (hi is not None and r.declared >= hi):
            continue
        combos: list[tuple[str, ...]] = [()]
        for name in names:
            combos = [(*c, v) for c in combos for v in sorted(keys_of(r, name))]
        for combo in combos:
            groups[combo].append(r)
    rows: dict[str, dict[str, Any]] = {}
    for combo, members in sorted(groups.items()):
        key = " / ".join(combo)
        row: dict[str, Any] = {
            "group": key,
            "groups": dict(zip(names, combo, strict=True)),
            "count": len(members),
        }
        for metric in METRICS:
            values = [v for r in members if (v := getattr(r, metric)) is not None]
            row[metric] = {
                "count": len(values),
                "mean_s": sum(values) / len(values) if values else None,
                "p50_s": quantile(values, 0.5) if values else None,
                "p90_s": quantile(values, 0.9) if values else None,
                "max_s": max(values) if values else None,
            }
        counts = [sum(r.automation[n] for r in members) for n in range(len(AUTOMATION))]
        row["automation"] = dict(zip(AUTOMATION, counts, strict=True)) | {
            "share": counts[3] / counts[2] if counts[2] else None
        }
        rows[key] = row
    return rows


def expected_breaches(refs: list[Ref]) -> list[tuple[Any, ...]]:
    rows = []
    for r in refs:
        for kind, target, start, stop, is_open, key in r.clocks:
            # Action items come judged by their own rule (overdue once the due day has ended).
            late = kind == "action_item_overdue" or stop - start > round((target or 0) * 1e6)
            if target is not None and late:
                due = EPOCH + timedelta(microseconds=start + round(target * 1e6))
                level = key if kind == "escalation" else None
                item = key if kind == "action_item_overdue" else None
                actual = (stop - start) / 1e6
                rows.append(
                    (r.incident_id, r.severity, kind, target, actual, due, is_open, level, item)
                )
    return sorted(rows, key=lambda row: (row[5], row[0], row[2], row[7] or 0, row[8] or ""))


def expected_repeats(refs: list[Ref], window_days: int = 30) -> set[tuple[str, str, str, float]]:
    index: dict[tuple[str, Any], list[tuple[int, str]]] = defaultdict(list)
    keys: dict[str, list[tuple[str, Any]]] = defaultdict(list)
    for r in refs:
        own: list[tuple[str, Any]] = [("service+category", (r.category, s)) for s in r.services]
        own += [("alertname", name) for name in r.alertnames]
        for key in own:
            index[key].append((r.declared, r.incident_id))
        keys[r.incident_id] = own
    found: set[tuple[str, str, str, float]] = set()
    for r in refs:
        best: dict[str, tuple[int, str]] = {}
        for key in keys[r.incident_id]:
            earlier = [p for p in index[key] if p < (r.declared, r.incident_id)]
            if earlier:
                prev = max(earlier)
                if r.declared - prev[0] <= window_days * 86_400_000_000:
                    best[key[0]] = max(best.get(key[0], prev), prev)
        for reason, (t, previous) in best.items():
            found.add((r.incident_id, previous, reason, (r.declared - t) / 1e6))
    return found


# ---- the test -------------------------------------------------------------------------------


def project(path: Path, log: list[Stored], batch: int = 1000) -> duckdb.DuckDBPyConnection:
    con = open_database(path)
    projector = Projector(con, None)  # store is only for run()
    for start in range(0, len(log), batch):
        chunk = log[start : start + batch]
        projector.apply(chunk, chunk[-1].seq)
    return con


@dataclass
class World:
    cur: duckdb.DuckDBPyConnection
    incidents: list[list[AnyEvent]]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    incidents = generate()
    con = project(tmp_path_factory.mktemp("metrics") / "db.duckdb", log_of(incidents))
    cur = con.cursor()
    yield World(cur, incidents)
    cur.close()
    con.close()


def refs_of(world: World, policy: Policy = DEFAULT_POLICY) -> list[Ref]:
    return [r for events in world.incidents if (r := reference(events, NOW, policy))]


def assert_rows(got: list[dict[str, Any]], want: dict[str, dict[str, Any]]) -> None:
    assert [row["group"] for row in got] == list(want)  # ordered by the keys' values
    for row in got:
        expected = want[row["group"]]
        assert row["count"] == expected["count"], row["group"]
        assert row["groups"] == expected["groups"], row["group"]
        assert row["automation"] == pytest.approx(expected["automation"]), row["group"]
        for metric in METRICS:
            have, should = row[metric], expected[metric]
            assert have["count"] == should["count"], (row["group"], metric)
            assert have["max_s"] == should["max_s"], (row["group"], metric)
            for stat in ("mean_s", "p50_s", "p90_s"):
                if should[stat] is None:
                    assert have[stat] is None
                else:
                    assert have[stat] == pytest.approx(should[stat], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize(
    "group_by", [*GROUPS, "severity,month", "team,region", "service,team", "month,severity"]
)
def test_mttx_matches_reference(world: World, group_by: str) -> None:
    got = mttx(world.cur, group_by, None, None, TEAMS)
    assert_rows(got, expected_mttx(refs_of(world), group_by))


def test_automation_share_is_exercised(world: World) -> None:
    """The generated year holds every automation case the definitions tell apart."""
    refs = refs_of(world)
    started, succeeded, mitigated, first = (
        sum(r.automation[n] for r in refs) for n in range(len(AUTOMATION))
    )
    assert 300 < first < mitigated and first < succeeded < started
    assert any(r.automation[1] and not r.automation[3] for r in refs)  # a person was first
    [total] = mttx(world.cur, "month", None, None)[:1]
    assert total["automation"]["share"] == pytest.approx(
        total["automation"]["first_automated"] / total["automation"]["mitigated"]
    )
    assert "first_automated" in DEFINITIONS["automation"]


def test_team_without_a_map_is_none(world: World) -> None:
    rows = mttx(world.cur, "team", None, None)
    assert [row["group"] for row in rows] == [NO_TEAM]
    assert rows[0]["count"] == len(refs_of(world))


@pytest.mark.parametrize(
    ("group_by", "reason"),
    [
        ("severity,severity", "twice"),
        ("severity,month,team", "at most 2"),
        ("severity,week", "'week'"),
        ("", "''"),
    ],
)
def test_mttx_rejects_bad_group_keys(world: World, group_by: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        mttx(world.cur, group_by, None, None)


def test_mttx_window_selects_by_declaration(world: World) -> None:
    since, until = BASE + timedelta(days=90), BASE + timedelta(days=181, hours=7)
    got = mttx(world.cur, "month", since, until)
    assert [row["group"] for row in got] == ["2025-04", "2025-05", "2025-06", "2025-07"]
    assert_rows(got, expected_mttx(refs_of(world), "month", us(since), us(until)))


def test_mttx_rejects_unknown_group(world: World) -> None:
    with pytest.raises(ValueError, match="group_by"):
        mttx(world.cur, "actor; DROP TABLE events", None, None)


def test_history_exercises_every_case(world: World) -> None:
    refs = refs_of(world)
    assert 2900 < len(refs) < 3000  # some declarations were retracted
    assert sum(1 for r in refs if r.mttd == 0) > 50  # alerts that started after declaring
    assert any(r.mttr is None and r.mtta is not None for r in refs)
    events = [e for incident in world.incidents for e in incident]
    assert sum(isinstance(e, EventCorrected) for e in events) > 50
    detection_fixes = [e for e in events if isinstance(e, EventCorrected)]
    assert sum(e.corrected_detected_at is not None for e in detection_fixes) > 200
    assert sum(e.corrected_impact_started_at is not None for e in detection_fixes) > 100
    assert sum(len(r.regions) > 1 for r in refs) > 300
    assert sum(not r.regions for r in refs) > 1000
    assert sum(isinstance(e, IncidentImpactUpdated) for e in events) > 500
    assert sum(isinstance(e, IncidentReopened) for e in events) > 100


@pytest.mark.parametrize(
    "policy",
    [
        DEFAULT_POLICY,
        Policy(version="strict-p4", targets={Severity.P4: Targets(ack_s=600.5, update_s=3600)}),
    ],
    ids=["default", "custom"],
)
def test_breaches_match_reference(world: World, policy: Policy) -> None:
    got = breaches(world.cur, policy, NOW)
    want = expected_breaches(refs_of(world, policy))
    keys = (
        *("incident_id", "severity", "kind", "target_s", "actual_s", "due_at", "open"),
        *("level", "item_id"),
    )
    assert [tuple(row[k] for k in keys) for row in got] == want
    assert all(row["breached_at"] == row["due_at"] for row in got)
    kinds = {(row["kind"], row["open"]) for row in got}
    if policy is DEFAULT_POLICY:
        assert {(kind, o) for kind in KINDS for o in (False, True)} <= kinds
    assert all(
        (row["to"] is not None) == (row["kind"] == "escalation")
        and (row["item_id"] is not None) == (row["kind"] == "action_item_overdue")
        for row in got
    )
    open_rows = breaches(world.cur, policy, NOW, open_only=True)
    assert open_rows == [row for row in got if row["open"]]
    counted = dict.fromkeys(KINDS, 0) | Counter(row["kind"] for row in open_rows)
    assert open_counts(world.cur, policy, NOW) == counted  # what /metrics shows
    one = got[len(got) // 2]["incident_id"]
    assert breaches(world.cur, policy, NOW, incident_id=one) == [
        row for row in got if row["incident_id"] == one
    ]


def test_the_board_tells_the_reference_story(world: World) -> None:
    """The folded rows use the metrics' rules: corrected times, retracted facts taken back."""
    refs = refs_of(world)
    columns = list(refs[0].times)
    world.cur.execute(f"SELECT incident_id, status, {', '.join(columns)} FROM incidents")
    rows = {row[0]: row[1:] for row in world.cur.fetchall()}
    for r in refs:
        status, *values = rows[r.incident_id]
        got = {
            c: us(v) if isinstance(v, datetime) else v for c, v in zip(columns, values, strict=True)
        }
        assert got == r.times, r.incident_id
        if r.times["closed_at"] is not None:
            assert status == "closed", r.incident_id
        else:
            assert (status == "resolved") == (r.times["resolved_at"] is not None), r.incident_id


def test_repeats_match_reference(world: World) -> None:
    got = repeats(world.cur)
    rows = {(r["incident_id"], r["previous_incident_id"], r["reason"], r["gap_s"]) for r in got}
    assert len(rows) == len(got)
    want = expected_repeats(refs_of(world))
    assert rows == want
    assert {reason for _, _, reason, _ in want} == {"service+category", "alertname"}
    week = {tuple(r.values()) for r in repeats(world.cur, window_days=7)}
    assert week == expected_repeats(refs_of(world), window_days=7)
    assert week < rows


# ---- a small history with hand-computed answers ---------------------------------------------

T = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
LATER = T + timedelta(days=3)


def _small() -> tuple[list[AnyEvent], list[AnyEvent]]:
    """A: P1, detected 10 min and alert 2 min before declaring, late ack, one long comms gap,
    no postmortem. B: P0 ignored for two days. C: P2 reopened and left open. D: repeat of A
    two days on."""
    a = Builder("INC-A", T)
    a.add(
        IncidentDeclared,
        0,
        title="A",
        severity=Severity.P1,
        category=Category.DATA,
        services=("api", "db"),
        detected_at=T - timedelta(minutes=10),
        impact_started_at=T - timedelta(minutes=15),
    )
    a.add(
        AlertFired,
        30,
        fingerprint="f",
        alertname="HighLatency",
        starts_at=T - timedelta(seconds=120),
    )
    ack = a.add(IncidentAcknowledged, 1200)
    for minute in (10, 50, 70):
        a.add(CommsSent, minute * 60, **_comms_fields(CommsKind.UPDATE))
    a.add(MitigationStarted, 1500, mitigation_id="m0", action=MitigationAction.ROLLBACK)
    a.add(MitigationCompleted, 1800, mitigation_id="m0", outcome=Outcome.FAILED)
    a.add(MitigationStarted, 2400, mitigation_id="m1", action=MitigationAction.FAILOVER)
    a.add(MitigationCompleted, 3600, mitigation_id="m1", outcome=Outcome.SUCCEEDED)
    a.add(IncidentResolved, 6000)
    b = Builder("INC-B", T + timedelta(days=1))
    b.add(IncidentDeclared, 0, title="B", severity=Severity.P0, category=Category.INFRASTRUCTURE)
    c = Builder("INC-C", T)
    c.add(IncidentDeclared, 0, title="C", severity=Severity.P2, services=("web",))
    c.add(CommsSent, 1800, **_comms_fields(CommsKind.INITIAL))
    c.add(IncidentResolved, 3600)
    c.add(IncidentReopened, 7200)
    d = Builder("INC-D", T + timedelta(days=2))
    d.add(
        IncidentDeclared,
        0,
        title="D",
        severity=Severity.P3,
        category=Category.DATA,
        services=("db",),
    )
    d.add(AlertFired, 1, fingerprint="g", alertname="HighLatency")
    d.add(IncidentResolved, 600)
    first = a.events + b.events + c.events + d.events
    fix = a.add(
        EventCorrected,
        7000,
        target_event_id=ack.event_id,
        corrected_occurred_at=T + timedelta(minutes=4),
        reason="ack on the bridge",
    )
    return first, [fix]


def test_small_history_by_hand(tmp_path: Path) -> None:
    first, second = _small()
    sealed: dict[str, str] = {}
    log: list[Stored] = []
    for event in first + second:
        (event,) = seal([event], sealed.get(event.incident_id, GENESIS), LATER)
        sealed[event.incident_id] = event.hash
        log.append(Stored(len(log) + 1, event, encode(event)))
    con = open_database(tmp_path / "db.duckdb")
    projector = Projector(con, None)
    projector.apply(log[: len(first)], len(first))
    cur = con.cursor()

    def stat(count: int, value: float | None = None) -> dict[str, Any]:
        keys = ("mean_s", "p50_s", "p90_s", "max_s")
        return {"count": count} | dict.fromkeys(keys, value)

    by_severity = {row["group"]: row for row in mttx(cur, "severity", None, None)}
    assert by_severity["P1"] == {
        "group": "P1",
        "groups": {"severity": "P1"},
        "count": 1,
        # Detected 10 min before declaring (definitions 2: every clock starts there).
        "mttd": stat(1, 300.0),
        "time_to_declare": stat(1, 600.0),
        "mtta": stat(1, 1800.0),
        "mttm": stat(1, 4200.0),
        "mttr": stat(1, 6600.0),
        # A person's failover was the first (and only) success: nothing automated.
        "automation": {
            "started": 0,
            "succeeded": 0,
            "mitigated": 1,
            "first_automated": 0,
            "share": 0.0,
        },
    }
    assert by_severity["P0"] == {
        "group": "P0",
        "groups": {"severity": "P0"},
        "count": 1,
        "mttd": stat(0),
        "time_to_declare": stat(1, 0.0),
        "mtta": stat(0),
        "mttm": stat(0),
        "mttr": stat(0),
        "automation": {
            "started": 0,
            "succeeded": 0,
            "mitigated": 0,
            "first_automated": 0,
            "share": None,
        },
    }
    assert by_severity["P2"]["mttr"] == stat(0)  # reopened, not resolved again
    assert by_severity["P3"]["mttd"] == stat(0)  # no impact start: no MTTD
    # The alert started after declaring: detected when declared.
    assert by_severity["P3"]["time_to_declare"] == stat(1, 0.0)
    services = {row["group"]: row["count"] for row in mttx(cur, "service", None, None)}
    assert services == {"(none)": 1, "api": 1, "db": 2, "web": 1}
    # A in api (core) and db (data-team); B without services; C's web has no team; D in db.
    teams = {"api": "core", "db": "data-team", "queue": "data-team"}
    by_team = {row["group"]: row["count"] for row in mttx(cur, "team", None, None, teams)}
    assert by_team == {"(none)": 2, "core": 1, "data-team": 2}
    pairs = [
        (row["groups"], row["group"], row["count"])
        for row in mttx(cur, "team,severity", None, None, teams)
    ]
    assert pairs == [
        ({"team": "(none)", "severity": "P0"}, "(none) / P0", 1),
        ({"team": "(none)", "severity": "P2"}, "(none) / P2", 1),
        ({"team": "core", "severity": "P1"}, "core / P1", 1),
        ({"team": "data-team", "severity": "P1"}, "data-team / P1", 1),
        ({"team": "data-team", "severity": "P3"}, "data-team / P3", 1),
    ]
    by_month = mttx(cur, "severity,month", None, None)
    assert [(r["groups"]["severity"], r["groups"]["month"]) for r in by_month] == [
        ("P0", "2026-03"),
        ("P1", "2026-03"),
        ("P2", "2026-03"),
        ("P3", "2026-03"),
    ]

    def h(hours: float) -> datetime:
        return T + timedelta(hours=hours)

    def found() -> list[tuple[Any, ...]]:
        return [
            (r["incident_id"], r["kind"], r["actual_s"], r["due_at"], r["open"])
            for r in breaches(cur, DEFAULT_POLICY, LATER)
        ]

    ignored = 2 * 86400.0
    late_ack = [
        ("INC-A", "ack", 1800.0, h(5 / 60), False),  # from detection, 10 min before declaring
        # P1's first level (15 min without an acknowledgement): acknowledged 30 min after
        # detection, never escalated.
        ("INC-A", "escalation", 1800.0, h(5 / 60), False),
    ]
    expected = [
        *late_ack,
        ("INC-A", "first_comms", 1200.0, h(5 / 60), False),  # comms 20 min after detection
        # P1's second level (30 min without a resolution): resolved 110 min after detection.
        ("INC-A", "escalation", 6600.0, h(20 / 60), False),
        ("INC-C", "escalation", 3 * 86400.0, h(0.5), True),  # P2: 30 min unacknowledged
        ("INC-A", "update_cadence", 2400.0, h(40 / 60), False),  # 10 -> 50 min; 70 -> 100 is 30
        ("INC-C", "ack", 3 * 86400.0, h(1), True),
        ("INC-C", "update_cadence", 3 * 86400 - 7200.0, h(3), True),  # reopened at 2 h, silent
        ("INC-C", "resolution", 3 * 86400.0, h(24), True),
        ("INC-B", "ack", ignored, h(24 + 5 / 60), True),
        # P0: secondary at 5 min (unacknowledged), manager at 10 and VP at 20 (unresolved).
        ("INC-B", "escalation", ignored, h(24 + 5 / 60), True),
        ("INC-B", "escalation", ignored, h(24 + 10 / 60), True),
        # No comms at all: one breach (first comms), the cadence waits for the first message.
        ("INC-B", "first_comms", ignored, h(24.25), True),
        ("INC-B", "escalation", ignored, h(24 + 20 / 60), True),
        ("INC-B", "resolution", ignored, h(26), True),
        ("INC-A", "postmortem", 3 * 86400 - 6000.0, h(100 / 60 + 48), True),
    ]
    assert found() == expected
    assert [r["incident_id"] for r in breaches(cur, DEFAULT_POLICY, LATER, open_only=True)] == [
        row[0] for row in expected if row[4]
    ]
    levels = [r["level"] for r in breaches(cur, DEFAULT_POLICY, LATER, incident_id="INC-B")]
    assert levels == [None, 1, 2, None, 3, None]
    assert repeats(cur) == [
        {
            "incident_id": "INC-D",
            "previous_incident_id": "INC-A",
            "reason": reason,
            "gap_s": 2 * 86400.0,
        }
        for reason in ("alertname", "service+category")
    ]

    projector.apply(log[len(first) :], len(log))  # the ack was earlier than typed
    assert mttx(cur, "severity", None, None)[1]["mtta"] == stat(1, 840.0)
    assert found() == expected[len(late_ack) :]  # 14 min: within the ack target and level 1
    cur.close()
    con.close()


def test_automation_share_by_hand(tmp_path: Path) -> None:
    """X: the robot's rollback failed, a person's restart worked. Y: a person's restart worked
    first, the robot's later; then the person's is found to have finished later still. Z: the
    robot's failover worked, then that completion is taken back. W: nothing mitigated."""
    x, y, z, w = (Builder(f"INC-{name}", T) for name in "XYZW")
    for b, severity in ((x, Severity.P1), (y, Severity.P1), (z, Severity.P1), (w, Severity.P2)):
        b.add(IncidentDeclared, 0, title=b.incident_id, severity=severity)
    rollback = MitigationAction.ROLLBACK
    x.add(MitigationStarted, 60, mitigation_id="auto", action=rollback, automated=True)
    x.add(MitigationCompleted, 120, mitigation_id="auto", outcome=Outcome.FAILED)
    x.add(MitigationStarted, 180, mitigation_id="hand", action=MitigationAction.RESTART)
    x.add(MitigationCompleted, 240, mitigation_id="hand", outcome=Outcome.SUCCEEDED)
    y.add(MitigationStarted, 60, mitigation_id="hand", action=MitigationAction.RESTART)
    hand = y.add(MitigationCompleted, 300, mitigation_id="hand", outcome=Outcome.SUCCEEDED)
    y.add(MitigationStarted, 400, mitigation_id="auto", action=rollback, automated=True)
    y.add(MitigationCompleted, 600, mitigation_id="auto", outcome=Outcome.SUCCEEDED)
    z.add(MitigationStarted, 60, mitigation_id="auto", action=rollback, automated=True)
    done = z.add(MitigationCompleted, 90, mitigation_id="auto", outcome=Outcome.SUCCEEDED)
    first = x.events + y.events + z.events + w.events
    amend = [
        y.add(
            EventCorrected,
            700,
            target_event_id=hand.event_id,
            corrected_occurred_at=T + timedelta(seconds=900),
            reason="the restart finished later",
        ),
        z.add(EventRetracted, 700, target_event_id=done.event_id, reason="it had not worked"),
    ]
    log = [Stored(n, e, encode(e)) for n, e in enumerate(_sealed(first + amend), start=1)]
    con = open_database(tmp_path / "db.duckdb")
    projector = Projector(con, None)
    projector.apply(log[: len(first)], len(first))
    cur = con.cursor()

    def automation() -> dict[str, dict[str, Any]]:
        return {row["group"]: row["automation"] for row in mttx(cur, "severity")}

    before = {"started": 3, "succeeded": 2, "mitigated": 3, "first_automated": 1}
    assert automation() == {
        "P1": before | {"share": pytest.approx(1 / 3)},
        "P2": dict.fromkeys(before, 0) | {"share": None},
    }
    projector.apply(log[len(first) :], len(log))
    after = {"started": 3, "succeeded": 1, "mitigated": 2, "first_automated": 1, "share": 0.5}
    assert automation()["P1"] == after
    cur.close()
    con.close()


def _sealed(events: list[AnyEvent]) -> list[AnyEvent]:
    heads: dict[str, str] = {}
    out = []
    for event in events:
        (event,) = seal([event], heads.get(event.incident_id, GENESIS), LATER)
        heads[event.incident_id] = event.hash
        out.append(event)
    return out
