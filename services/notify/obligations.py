"""What is due to be told, and the one id each telling gets.

Pure. Notices come from the log's events (`of_event`) and from the read models' due
obligations: open breaches, consumed by kind (`of_breach`), and the reminder ahead of the next
comms deadline (`reminders`). A notice names one occurrence of its obligation (`instance`: the
event's id, or the deadline it is about), so the delivery id made of route, obligation,
incident and instance is the same however often, and by whichever replica, it is computed.
"""

import hashlib
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
from msgspec import Struct

from events.notifications import NEXT_UPDATE_DUE, breach_obligation
from events.policy import Policy
from events.records import Stored
from events.schema import AnyEvent, type_name
from events.subjects import SERVICE_ID_PREFIX

# Breach fields that tell two breaches of one kind and incident apart besides their clock's
# start (escalation levels all run from detection); the others (`actual_s` grows with now,
# `due_at` moves with the severity's target) never enter an id.
_IDENTITY: Final = ("level", "item_id")
NOTIFICATION_ID_PREFIX: Final = f"{SERVICE_ID_PREFIX}notify-"


class Notice(Struct, frozen=True, kw_only=True):
    """One thing to tell about one incident."""

    obligation: str  # an event type, or an obligation (`ack_overdue`, `next_update_due`...)
    incident_id: str
    instance: str  # which occurrence: the event's id, or the deadline (and item) it is about
    seq: int = 0  # the log position the read models must include before reading the incident
    due_at: datetime | None = None
    event: AnyEvent | None = None
    details: dict[str, Any] = {}  # the breach as `/v1/breaches` has it, or the reminder's facts


def of_event(stored: Stored) -> Notice:
    event = stored.event
    return Notice(
        obligation=type_name(event),
        incident_id=event.incident_id,
        instance=event.event_id,
        seq=stored.seq,
        event=event,
    )


def of_breach(breach: Mapping[str, Any]) -> Notice:
    """A breach row (`projections.breaches.breaches`) of any kind, known today or added later.

    Its occurrence is when its clock started (the deadline less the target): an incident raised
    from P1 to P0 has an earlier acknowledgement deadline, not a second missed acknowledgement.
    """
    due_at: datetime = breach["due_at"]
    target_s = breach.get("target_s")
    started = due_at - timedelta(seconds=target_s) if isinstance(target_s, int | float) else due_at
    identity = [started.isoformat()]
    identity += [f"{k}={breach[k]}" for k in _IDENTITY if breach.get(k) is not None]
    return Notice(
        obligation=breach_obligation(str(breach["kind"])),
        incident_id=str(breach["incident_id"]),
        instance=" ".join(identity),
        due_at=due_at,
        details=dict(breach),
    )


def next_update_due(incident: Mapping[str, Any], policy: Policy) -> datetime | None:
    """The incident's next comms deadline: the first message's (from detection, or the cadence
    from declaration), else the earlier of the promised `next_update_at` and the cadence."""
    targets = policy.for_severity(incident["severity"])
    deadlines: list[datetime] = []
    if not incident["comms_count"]:
        if targets.first_comms_s is not None and incident["detected_at"] is not None:
            deadlines.append(incident["detected_at"] + timedelta(seconds=targets.first_comms_s))
        if targets.update_s is not None and incident["declared_at"] is not None:
            deadlines.append(incident["declared_at"] + timedelta(seconds=targets.update_s))
    else:
        if incident["next_update_at"] is not None:
            deadlines.append(incident["next_update_at"])
        if targets.update_s is not None and incident["last_comms_at"] is not None:
            deadlines.append(incident["last_comms_at"] + timedelta(seconds=targets.update_s))
    return min(deadlines, default=None)


def reminders(
    incidents: Iterable[Mapping[str, Any]], policy: Policy, now: datetime, before_s: float
) -> list[Notice]:
    """`next_update_due` for each open incident whose next comms deadline is less than
    `before_s` away (once it has passed, the breach says so instead)."""
    found = []
    for incident in incidents:
        due = next_update_due(incident, policy)
        if due is not None and due - timedelta(seconds=before_s) <= now < due:
            found.append(
                Notice(
                    obligation=NEXT_UPDATE_DUE,
                    incident_id=str(incident["incident_id"]),
                    instance=due.isoformat(),
                    due_at=due,
                    details={"due_at": due, "due_in_s": (due - now).total_seconds()},
                )
            )
    return found


def delivery_id(route: str, notice: Notice) -> str:
    """The same for the same route, obligation, incident and occurrence, everywhere, always."""
    key = [route, notice.obligation, notice.incident_id, notice.instance]
    return hashlib.sha256(msgspec.json.encode(key)).hexdigest()


def record_id(delivery: str) -> str:
    """The event id of the delivery's `notification.sent`: the service's own (no claim)."""
    return NOTIFICATION_ID_PREFIX + delivery
