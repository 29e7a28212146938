"""What a notice says: one line of text for people, and the generic JSON webhook's body.

Pure. The incident is its read-model row (`projections.queries.get_incident`) when the notice
is told; the Slack format (`services.notify.slack`) lays out the same facts.
"""

from typing import Any, Final

import msgspec

from events.schema import (
    CommsSent,
    IncidentClosed,
    IncidentDeclared,
    IncidentEscalated,
    IncidentReopened,
    IncidentResolved,
    IncidentSeverityChanged,
    IncidentStatusChanged,
    PostmortemPublished,
    type_name,
)
from services.clock import utc_text
from services.notify.obligations import Notice

# The incident's fields a receiver gets (all in `incident`), as the read API names them.
INCIDENT_FIELDS: Final = (
    "incident_id",
    "title",
    "severity",
    "category",
    "status",
    "phase",
    "services",
    "commander",
    "opened_at",
    "detected_at",
    "acknowledged_at",
    "resolved_at",
    "closed_at",
    "next_update_at",
    "escalation_level",
    "impact",
)
_OBLIGATION_WORDS: Final = {
    "next_update_due": "next update due",
    "ack_overdue": "not acknowledged in time",
    "first_comms_overdue": "first comms overdue",
    "update_cadence_overdue": "comms update overdue",
    "resolution_overdue": "resolution target missed",
    "postmortem_overdue": "postmortem overdue",
    "escalation_overdue": "escalation due",
    "next_update_missed": "promised update missed",
    "action_item_overdue": "action item overdue",
    "postmortem_review_overdue": "postmortem review overdue",
}
_DETAILS: Final = ("level", "to", "item_id")  # what a breach names besides its deadline
MAX_TEXT: Final = 3000  # Slack's limit for a section's text; plenty for one line


def incident_facts(notice: Notice, incident: dict[str, Any] | None) -> dict[str, Any]:
    if incident is None:  # not in the read models (yet): what the notice itself knows
        return {"incident_id": notice.incident_id}
    return {name: incident.get(name) for name in INCIDENT_FIELDS}


def link(base_url: str | None, incident_id: str) -> str | None:
    return f"{base_url}/incidents/{incident_id}" if base_url else None


def what(notice: Notice) -> str:
    """What happened or is due, without the incident's name."""
    match notice.event:
        case None:
            words = _OBLIGATION_WORDS.get(notice.obligation, notice.obligation.replace("_", " "))
            extra = [f"{k} {notice.details[k]}" for k in _DETAILS if notice.details.get(k)]
            due = f" (due {utc_text(notice.due_at)})" if notice.due_at else ""
            return f"{words}{due}" + (f": {', '.join(extra)}" if extra else "")
        case IncidentDeclared(category=category, services=services, summary=summary):
            on = f" on {', '.join(services)}" if services else ""
            return f"declared ({category}{on})" + (f": {summary}" if summary else "")
        case IncidentSeverityChanged(from_=from_, to=to, reason=reason):
            return f"severity {from_} -> {to}" + (f": {reason}" if reason else "")
        case IncidentStatusChanged(status=status):
            return f"status {status}"
        case IncidentEscalated(level=level, to=to, reason=reason):
            return f"escalated to level {level}, {to}" + (f": {reason}" if reason else "")
        case CommsSent(kind=kind, audience=audience, message=message, next_update_at=next_at):
            then = f" (next update {utc_text(next_at)})" if next_at else ""
            return f"{kind} comms to {audience}: {message}{then}"
        case IncidentResolved(summary=summary):
            return "resolved" + (f": {summary}" if summary else "")
        case IncidentReopened(reason=reason):
            return "reopened" + (f": {reason}" if reason else "")
        case IncidentClosed(reason=reason):
            return "closed" + (f": {reason}" if reason else "")
        case PostmortemPublished(status=status, uri=uri, summary=summary):
            where = f" {uri}" if uri else ""
            return f"postmortem published ({status}){where}" + (f": {summary}" if summary else "")
        case event:
            return f"{type_name(event)} by {event.actor}"


def text(notice: Notice, incident: dict[str, Any] | None) -> str:
    """`[P1] INC-7K2M9Q4TWZ Checkout 5xx: severity P2 -> P1: all regions`, at most MAX_TEXT."""
    facts = incident_facts(notice, incident)
    severity = f"[{facts['severity']}] " if facts.get("severity") else ""
    title = f" {facts['title']}" if facts.get("title") else ""
    line = f"{severity}{notice.incident_id}{title}: {what(notice)}"
    return line if len(line) <= MAX_TEXT else line[: MAX_TEXT - 1] + "…"


def webhook_body(
    notice: Notice, incident: dict[str, Any] | None, delivery: str, base_url: str | None
) -> dict[str, Any]:
    """The generic JSON webhook's body (times RFC 3339 in UTC once encoded)."""
    body: dict[str, Any] = {
        "delivery_id": delivery,
        "obligation": notice.obligation,
        "incident": incident_facts(notice, incident),
        "event": msgspec.to_builtins(notice.event) if notice.event is not None else None,
        "due_at": notice.due_at,
        "details": notice.details or None,
        "text": text(notice, incident),
    }
    url = link(base_url, notice.incident_id)
    if url is not None:
        body["url"] = url
    return body
