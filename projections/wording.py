"""How events read for people in documents: each type's label and details, the role names.

The postmortem's sections lay these out: a new event type or field changes the wording here,
not the sections.
"""

from typing import Any, Final

from events.schema import LOCAL_PRINCIPAL
from projections.chronicle import Entry
from projections.markdown import because, when, words

NOT_YET: Final = "_not yet_"  # a moment that has not come (yet)
TO_BE_WRITTEN: Final = "_To be written_"  # a section people write, for which no note exists
ROLES: Final = {
    "commander": "Incident Commander",
    "ops": "Operations Lead",
    "comms": "Communications Lead",
    "scribe": "Scribe",
    "tech_lead": "Technical Lead",
    "liaison": "Liaison",
    "product_owner": "Product Owner",
}
_LABELS: Final = {
    "alert.fired": "Alert fired",
    "alert.resolved": "Alert resolved",
    "incident.declared": "Declared",
    "incident.impact_updated": "Impact updated",
    "incident.acknowledged": "Acknowledged",
    "incident.severity_changed": "Severity changed",
    "incident.status_changed": "Status changed",
    "incident.phase_changed": "Phase changed",
    "incident.role_assigned": "Role assigned",
    "incident.role_released": "Role released",
    "incident.escalated": "Escalated",
    "mitigation.started": "Mitigation started",
    "mitigation.completed": "Mitigation completed",
    "comms.sent": "Comms sent",
    "evidence.attached": "Evidence attached",
    "incident.resolved": "Resolved",
    "incident.reopened": "Reopened",
    "incident.closed": "Closed",
    "postmortem.published": "Postmortem published",
    "postmortem.reviewed": "Postmortem reviewed",
    "action_item.added": "Action item added",
    "action_item.started": "Action item started",
    "action_item.completed": "Action item completed",
    "notification.sent": "Notification sent",
    "event.corrected": "Correction",
    "event.retracted": "Retraction",
}
_NOTES: Final = {
    "decision": "Decision",
    "root_cause": "Root cause",
    "impact": "Impact",
    "lesson": "Lesson",
    "went_well": "Went well",
    "went_wrong": "Went wrong",
    "lucky": "Lucky",
    "five_whys": "Five whys",
    "prevention": "Prevention",
}


def attribution(actor: str, principal: str | None, role: str | None) -> str:
    """Who was authenticated, when the actor is someone else (a claimed actor, a monitor's
    name): `(authenticated as alice, responder)`. Empty for events stored before principals were
    recorded, and without tokens (`local`: nobody was authenticated, every actor is as claimed)."""
    if principal in (None, actor, LOCAL_PRINCIPAL):
        return ""
    return f"(authenticated as {principal}, {role})"


def attributed(actor: str, principal: str | None, role: str | None) -> str:
    """Who did it, for people: `ceo@example.com (authenticated as alice, responder)`."""
    return " ".join(part for part in (actor, attribution(actor, principal, role)) if part)


def by(e: Entry) -> str:
    principal = e.body.get("principal")
    if not isinstance(principal, dict):
        return e.actor
    return attributed(e.actor, principal.get("name"), principal.get("role"))


def label(e: Entry) -> str:
    if e.type == "incident.note_added":
        return _NOTES.get(str(e.body.get("kind")), "Note")
    return _LABELS.get(e.type, e.type)


def impact_summary(impact: dict[str, Any]) -> str:
    """An impact statement in one line: its text, then what it names and says."""
    facts = [
        f"{key} {', '.join(impact[key])}"
        for key in ("services", "regions", "customers")
        if impact.get(key)
    ]
    if impact.get("customers_affected") is not None:
        facts.append(f"{impact['customers_affected']} customers affected")
    if impact.get("users_affected_pct") is not None:
        facts.append(f"{impact['users_affected_pct']:g}% of users")
    facts += [
        f"{key.replace('_', ' ')}: {'yes' if impact[key] else 'no'}"
        for key in ("data_loss", "security")
        if impact.get(key) is not None
    ]
    if impact.get("revenue_at_risk") is not None:
        facts.append(f"revenue at risk {impact['revenue_at_risk']:,}")
    return words(impact.get("text"), f"({'; '.join(facts)})" if facts else "")


def details(e: Entry, seq_of: dict[str, int], titles: dict[str, str]) -> str:
    """The event's own fields for people: "P1 → P0: all regions", "m1 failed: no change"."""
    b = e.body
    target = f"seq {seq_of.get(str(b.get('target_event_id')), b.get('target_event_id'))}"
    match e.type:
        case "alert.fired" | "alert.resolved":
            severity = f"({b['severity']})" if b.get("severity") else ""
            name = words(b.get("alertname") or b.get("fingerprint"), severity)
            moment = b.get("starts_at") if e.type == "alert.fired" else b.get("ends_at")
            verb = "started" if e.type == "alert.fired" else "ended"
            text = f"{name}, {verb} {when(moment)}" if moment else name
            left_out = b.get("truncated_alerts") or 0
            return f"{text} ({left_out} more not delivered: truncated)" if left_out else text
        case "incident.declared":
            services = f" [{', '.join(b.get('services') or [])}]" if b.get("services") else ""
            return f"{b.get('severity')} {b.get('category')}: {b.get('title')}{services}"
        case "incident.impact_updated":
            return impact_summary(b.get("impact") or {})
        case "incident.severity_changed":
            return because(f"{b.get('from')} → {b.get('to')}", b.get("reason"))
        case "incident.status_changed" | "incident.phase_changed":
            return str(b.get("status") or b.get("phase"))
        case "incident.role_assigned" | "incident.role_released":
            role = ROLES.get(str(b.get("role")), str(b.get("role")))
            return f"{role}: {b.get('person')}"
        case "incident.escalated":
            return because(f"level {b.get('level')} → {b.get('to')}", b.get("reason"))
        case "mitigation.started":
            how = ["automated"] if b.get("automated") else []
            if b.get("confidence") is not None:
                how.append(f"confidence {b['confidence']:.0%}")
            extra = f" ({', '.join(how)})" if how else ""
            return f"{b.get('mitigation_id')}: {words(b.get('action'), b.get('target'))}{extra}"
        case "mitigation.completed":
            return because(f"{b.get('mitigation_id')} {b.get('outcome')}", b.get("details"))
        case "comms.sent":
            status = f" ({b['status']})" if b.get("status") else ""
            channel = f" via {b['channel']}" if b.get("channel") else ""
            text = f"{b.get('audience')} {b.get('kind')}{channel}{status}: {b.get('message')}"
            due = b.get("next_update_at")
            return f"{text} (next update by {when(due)})" if due else text
        case "incident.note_added":
            return str(b.get("text"))
        case "evidence.attached":
            return because(words(b.get("kind"), b.get("uri")), b.get("description"))
        case "incident.resolved" | "incident.reopened" | "incident.closed":
            return words(b.get("summary"), b.get("reason"))
        case "postmortem.published":
            inline = "inline Markdown" if b.get("markdown") and not b.get("uri") else ""
            # A record from before statuses was a published, final document.
            how = [str(b.get("status") or "final")]
            how += [f"by {', '.join(b['authors'])}"] if b.get("authors") else []
            return because(words(b.get("uri"), inline, f"({', '.join(how)})"), b.get("summary"))
        case "postmortem.reviewed":
            who = f" with {', '.join(b['attendees'])}" if b.get("attendees") else ""
            return because(f"held {when(b.get('held_at'))}{who}", b.get("summary"))
        case "action_item.added" | "action_item.started" | "action_item.completed":
            item = str(b.get("item_id"))
            facts = [f"owner {b['owner']}"] if b.get("owner") else []
            facts += [f"{key} {b[key]}" for key in ("due", "priority") if b.get(key)]
            facts += [f"ticket {b['ticket_url']}"] if b.get("ticket_url") else []
            text = f"{item}: {b.get('title') or titles.get(item, '')}"
            return f"{text} ({', '.join(facts)})" if facts else text
        case "notification.sent":
            to = b.get("target") or b.get("route")
            tries = f", {b['attempts']} attempts" if (b.get("attempts") or 1) > 1 else ""
            sent = f"{b.get('obligation')} to {to} ({b.get('channel')}{tries})"
            return because(sent, b.get("message"))
        case "event.corrected":
            changes = [
                f"time → {when(b['corrected_occurred_at'])}"
                if b.get("corrected_occurred_at")
                else "",
                f"text → “{b['corrected_text']}”" if b.get("corrected_text") is not None else "",
                f"actor → {b['corrected_actor']}" if b.get("corrected_actor") else "",
                f"detected_at → {when(b['corrected_detected_at'])}"
                if b.get("corrected_detected_at")
                else "",
                f"impact_started_at → {when(b['corrected_impact_started_at'])}"
                if b.get("corrected_impact_started_at")
                else "",
            ]
            what = "; ".join(change for change in changes if change)
            return because(f"corrects {target} ({what})", b.get("reason"))
        case "event.retracted":
            return because(f"retracts {target}", b.get("reason"))
        case _:
            return ""
