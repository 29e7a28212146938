"""One incident's timeline rows as the corrections say they were, and the facts its clocks are
measured from: the same rules as `projections.metrics` (effective times, retractions ignored),
detection and impact start as the fold (the `incidents` row) has them."""

import itertools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Final, NamedTuple

from projections.markdown import utc, when

Row = dict[str, Any]

# The free-text field that an `event.corrected`'s `corrected_text` replaces, per event type.
_TEXT_FIELD: Final = {
    "incident.declared": "summary",
    "incident.severity_changed": "reason",
    "incident.escalated": "reason",
    "mitigation.completed": "details",
    "comms.sent": "message",
    "incident.note_added": "text",
    "evidence.attached": "description",
    "incident.resolved": "summary",
    "incident.reopened": "reason",
    "incident.closed": "reason",
    "postmortem.published": "summary",
    "postmortem.reviewed": "summary",
    "notification.sent": "message",
}
# A declaration's own times an `event.corrected` may move: (correction field, body field).
_DECLARED_TIMES: Final = (
    ("corrected_detected_at", "detected_at"),
    ("corrected_impact_started_at", "impact_started_at"),
)


class Entry(NamedTuple):
    """A timeline row with its corrections applied; `at` is the effective time, in UTC."""

    seq: int
    event_id: str
    type: str
    at: datetime
    occurred: datetime
    actor: str
    body: Row
    trace_id: str | None
    retracted: bool
    corrected: bool
    was: tuple[str, ...]  # what corrections replaced: "originally ..."
    fixed: frozenset[str] = frozenset()  # corrected body fields (`detected_at`...)


def entries(rows: Iterable[Row]) -> list[Entry]:
    """Timeline rows with corrected text and actor applied, in effective-time order.

    `effective_at` already carries corrected times; text and actor corrections are applied
    here, in log order (the latest wins), retracted corrections ignored.
    """
    ordered = sorted(rows, key=lambda r: int(r["seq"]))
    fixes: dict[str, list[Row]] = {}
    for row in ordered:
        if row["type"] == "event.corrected" and not row["retracted"]:
            fixes.setdefault(str(row["body"].get("target_event_id")), []).append(row["body"])
    events = []
    for row in ordered:
        body, actor = dict(row["body"]), str(row["actor"])
        corrections = fixes.get(str(row["event_id"]), [])
        text_field = _TEXT_FIELD.get(str(row["type"]))
        fixed: set[str] = set()
        for fix in corrections:
            if fix.get("corrected_text") is not None and text_field is not None:
                body[text_field] = fix["corrected_text"]
            actor = str(fix.get("corrected_actor") or actor)
            if row["type"] == "incident.declared":
                for source, name in _DECLARED_TIMES:
                    if fix.get(source) is not None:
                        body[name] = fix[source]
                        fixed.add(name)
        at, occurred = utc(row["effective_at"]), utc(row["occurred_at"])
        was = [f"originally {when(occurred)}"] if at != occurred else []
        if text_field is not None and body.get(text_field) != row["body"].get(text_field):
            was.append(f"originally “{row['body'].get(text_field) or ''}”")
        if actor != row["actor"]:
            was.append(f"originally by {row['actor']}")
        for name in sorted(fixed):
            before = row["body"].get(name)
            if body.get(name) != before:
                was.append(f"{name} originally {when(before) if before else 'unknown'}")
        events.append(
            Entry(
                seq=int(row["seq"]),
                event_id=str(row["event_id"]),
                type=str(row["type"]),
                at=at,
                occurred=occurred,
                actor=actor,
                body=body,
                trace_id=row.get("trace_id"),
                retracted=bool(row["retracted"]),
                corrected=bool(corrections) or at != occurred,
                was=tuple(was),
                fixed=frozenset(fixed),
            )
        )
    return sorted(events, key=lambda e: (e.at, e.seq))


class Facts(NamedTuple):
    declared: Entry | None
    detected: datetime | None  # earliest of first alert's start, detected_at, the declaration
    detected_from: str  # which of them, ", corrected" when a correction moved it; "" unknown
    impact_started: datetime | None  # the declaration's impact_started_at, as corrected
    impact_corrected: bool  # a correction moved the impact start
    acknowledged: Entry | None
    first_comms: Entry | None
    mitigated: Entry | None
    resolved: Entry | None  # the last resolution, when the incident is resolved now
    closed: Entry | None
    postmortem: Entry | None

    @property
    def end(self) -> datetime | None:
        """When the response's clocks stopped: resolution, else closure; None while open."""
        stop = self.resolved or self.closed
        return stop.at if stop else None


def _alert_start(e: Entry) -> tuple[datetime, bool]:
    """When an alert started, as the fold takes it: a corrected time, else its starts_at."""
    if e.at != e.occurred or not e.body.get("starts_at"):
        return e.at, e.at != e.occurred
    return utc(e.body["starts_at"]), False


def _detection(
    live: Sequence[Entry], declared: Entry | None, folded: Row | None
) -> tuple[datetime | None, str]:
    """Detection and what it came from. The folded row's time when given (the fold is the one
    place detection is decided), else the same rule over the entries."""
    candidates: list[tuple[datetime, str, bool]] = []
    starts = [_alert_start(e) for e in live if e.type == "alert.fired"]
    if starts:
        start, moved = min(starts, key=lambda s: s[0])
        candidates.append((start, "first alert", moved))
    if declared is not None:
        if declared.body.get("detected_at"):
            fixed = "detected_at" in declared.fixed
            candidates.append((utc(declared.body["detected_at"]), "detected_at", fixed))
        candidates.append((declared.at, "declaration", declared.at != declared.occurred))
    if folded is not None and "detected_at" in folded:
        detected = utc(folded["detected_at"]) if folded["detected_at"] is not None else None
    else:
        detected = min((c[0] for c in candidates), default=None)
    source = next((c for c in candidates if c[0] == detected), None)
    if source is None:
        return detected, ""
    return detected, source[1] + ", corrected" * source[2]


def facts(live: Sequence[Entry], folded: Row | None = None) -> Facts:
    """The same facts as `metrics.FACTS`, for one incident (`live`: unretracted, in order).

    `folded`: the incident's read-model row (`queries.get_incident`), whose `detected_at` and
    `impact_started_at` the fold decided; without it they follow the fold's rules here.
    """

    def first(kind: str, test: Callable[[Entry], bool] = lambda _: True) -> Entry | None:
        return next((e for e in live if e.type == kind and test(e)), None)

    declared = min(
        (e for e in live if e.type == "incident.declared"), key=lambda e: e.seq, default=None
    )
    detected, detected_from = _detection(live, declared, folded)
    if folded is not None and "impact_started_at" in folded:
        impact = folded["impact_started_at"]
    else:
        impact = declared.body.get("impact_started_at") if declared is not None else None
    turns = [e for e in live if e.type in ("incident.resolved", "incident.reopened")]
    resolved = turns[-1] if turns and turns[-1].type == "incident.resolved" else None
    if resolved is not None:
        resolved = max((e for e in turns if e.type == "incident.resolved"), key=lambda e: e.at)
    return Facts(
        declared=declared,
        detected=detected,
        detected_from=detected_from,
        impact_started=utc(impact) if impact else None,
        impact_corrected=declared is not None and "impact_started_at" in declared.fixed,
        acknowledged=first("incident.acknowledged"),
        first_comms=first("comms.sent"),
        mitigated=first("mitigation.completed", lambda e: e.body.get("outcome") == "succeeded"),
        resolved=resolved,
        closed=first("incident.closed"),
        postmortem=first("postmortem.published"),
    )


def update_gaps(live: Sequence[Entry], has_comms: bool) -> list[float]:
    """Seconds between consecutive updates while unresolved (the breach rule of cadence)."""
    kinds = {"comms.sent", "incident.resolved", "incident.reopened"}
    if not has_comms:
        kinds.add("incident.declared")
    points = [e for e in live if e.type in kinds]
    gaps, resolved = [], False
    for a, b in itertools.pairwise(points):
        if a.type in ("incident.resolved", "incident.reopened"):
            resolved = a.type == "incident.resolved"
        if not resolved:
            gaps.append((b.at - a.at).total_seconds())
    return gaps
