"""The postmortem's response metrics: each of the incident's clocks against its target.

Targets come from the severity policy for the incident's severity; times follow the metrics'
rules (effective times, retracted events ignored) through `projections.chronicle`.
"""

import math
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from events.policy import NO_TARGETS, Policy
from events.schema import Severity
from projections import chronicle
from projections.chronicle import Entry, Facts, Row
from projections.markdown import humanize, table
from projections.wording import NOT_YET

_SEVERITIES: Final = frozenset(s.value for s in Severity)


def _judged(seconds: float, target: float | None) -> str:
    if target is None:
        return "no target"
    if seconds <= target:
        return "met"
    return f"missed by {humanize(math.ceil(seconds - target))}"


def _measure(
    name: str,
    start: datetime | None,
    fact: datetime | None,
    end: datetime | None,
    target: float | None,
    unknown: str = NOT_YET,
) -> list[str]:
    """One obligation: its clock runs from `start` to `fact`, or to `end` when it never came."""
    goal = "none" if target is None else humanize(target)
    waiting = "no target" if target is None else "pending"
    if start is None:
        return [name, unknown, goal, waiting]
    if fact is not None:
        took = max((fact - start).total_seconds(), 0.0)
        return [name, humanize(took), goal, _judged(took, target)]
    if end is None:
        return [name, NOT_YET, goal, waiting]
    ran = max((end - start).total_seconds(), 0.0)
    late = target is not None and ran > target
    return [name, "_never_", goal, _judged(ran, target) if late else "not due (ended first)"]


def response_metrics(
    incident: Row, live: Sequence[Entry], facts: Facts, policy: Policy
) -> list[str]:
    severity = str(incident.get("severity") or "")
    targets = policy.for_severity(severity) if severity in _SEVERITIES else NO_TARGETS
    declared = facts.declared.at if facts.declared else None
    resolved = facts.resolved.at if facts.resolved else None

    def at(event: Entry | None) -> datetime | None:
        return event.at if event else None

    detected = facts.detected  # every response clock starts here (definitions 2)
    rows = [
        _measure("Time to detect", facts.impact_started, detected, None, None, "_unknown_"),
        _measure("Time to declare", detected, declared, None, None),
        _measure("Time to acknowledge", detected, at(facts.acknowledged), facts.end, targets.ack_s),
        _measure(
            "Time to first comms", detected, at(facts.first_comms), facts.end, targets.first_comms_s
        ),
        _measure("Time to mitigate", detected, at(facts.mitigated), facts.end, None),
        _measure("Time to resolve", detected, resolved, None, targets.resolve_s),
        _cadence(live, facts, targets.update_s),
        _measure(
            "Postmortem published after resolution",
            resolved,
            at(facts.postmortem),
            None,
            targets.postmortem_s,
        ),
    ]
    note = (
        f"_Targets for {severity or 'no severity'} from severity policy `{policy.version}`. "
        "Times are effective (corrected) times, retracted events are ignored, and a fact "
        "dated before its start counts as 0s._"
    )
    headers = ["Measure", "This incident", f"Target ({severity or 'none'})", "Result"]
    return ["## Response metrics", "", *table(headers, rows), "", note]


def _cadence(live: Sequence[Entry], facts: Facts, target: float | None) -> list[str]:
    name, goal = "Longest gap between updates", "none" if target is None else humanize(target)
    gaps = chronicle.update_gaps(live, facts.first_comms is not None)
    if not gaps:
        return [name, NOT_YET, goal, "no target" if target is None else "pending"]
    longest = max(gaps)
    late = sum(1 for gap in gaps if target is not None and gap > target)
    result = _judged(longest, target) + (f" ({late} late updates)" if late > 1 else "")
    return [name, humanize(longest), goal, result]
