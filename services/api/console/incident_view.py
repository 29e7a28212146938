"""What the incident page shows: the incident now (or as the log knew it at an instant), its
timeline with details, and the forms its viewer may use.

Now: from the live read models, after waiting for a write the page follows (`wait_for`). As of
an instant: the incident's events recorded by then, folded in memory, as
`GET /v1/incidents/{id}/timeline?as_of=` does (`projections.asof`); such a page is read only.
"""

from datetime import datetime
from typing import Any, Final

from events.schema import (
    Audience,
    Channel,
    CommsKind,
    EvidenceKind,
    MitigationAction,
    NoteKind,
    Outcome,
    Phase,
    Role,
    Severity,
    Status,
)
from events.templates import variables_of
from projections import action_items, changes, queries
from services.api.console import timeline
from services.api.console.access import Viewer
from services.api.console.forms import ACTIONS
from services.api.reads import incident_then, incident_with_breaches
from services.api.state import AnyRequest, reader_of
from services.auth import Permission
from services.readmodels import Reader
from services.write.comms import BUILT_IN

WAIT_S: Final = 10.0
# The choices of the forms' fixed lists.
CHOICES: Final = {
    "severity": [s.value for s in Severity],
    "status": [s.value for s in Status if s is not Status.RESOLVED],
    "phase": [p.value for p in Phase],
    "role": [r.value for r in Role],
    "mitigation_action": [a.value for a in MitigationAction],
    "outcome": [o.value for o in Outcome],
    "note_kind": [k.value for k in NoteKind],
    "evidence_kind": [k.value for k in EvidenceKind],
    "audience": [a.value for a in Audience],
    "channel": [c.value for c in Channel],
    "comms_kind": [k.value for k in CommsKind],
}


def _live(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Bodies of the events of one type not retracted, with when (corrected) and who."""
    return [
        e["body"] | {"at": e["effective_at"], "by": e["actor"]}
        for e in events
        if e["type"] == kind and not e["retracted"]
    ]


def _postmortem(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest publication (status, document, summary), its authors as the fold keeps them
    (the latest publication that names any), and every review meeting held."""
    published = _live(events, "postmortem.published")
    reviews = _live(events, "postmortem.reviewed")
    if not published and not reviews:
        return None
    latest = published[-1] if published else {}
    authors: list[str] = next((p["authors"] for p in reversed(published) if p.get("authors")), [])
    # A record from before issue 13 carries no status: it was a published, final document.
    status = latest.get("status", "final") if published else None
    return latest | {"status": status, "authors": authors, "reviews": reviews}


def available(incident: dict[str, Any], open_mitigations: int, seen_by: Viewer) -> list[str]:
    """The forms of the button bar, by the viewer's role and the incident's state: what the
    lifecycle would refuse anyway is not offered (the service still decides)."""
    if not seen_by.may_command:
        return []
    if incident["closed_at"] is not None:
        return ["reopen", "note", "evidence"]
    resolved = incident["resolved_at"] is not None
    wanted = {
        "ack": not incident["acknowledged"] and not resolved,
        "escalate": not resolved,
        "mitigation": not resolved,
        "mitigation-complete": open_mitigations > 0,
        "resolve": not resolved,
        "close": resolved,
        "reopen": resolved,
    }
    return [name for name in ACTIONS if wanted.get(name, True)]


def form_choices(reader: Reader, running: list[dict[str, Any]]) -> dict[str, Any]:
    """The choices that depend on the policy and the incident: the comms templates (with the
    variables a person gives, `vars`, and which of them need a next update) and the
    mitigations still running."""
    templates = list(reader.policy.templates.values())
    used = {t.name: variables_of(t.text) for t in templates}
    extras: dict[str, list[str]] = {}
    for template in templates:
        for name in sorted(used[template.name] - BUILT_IN):
            extras.setdefault(name, []).append(template.name)
    return {
        "templates": [
            (t.name, f"{t.name} ({t.audience.value}, {t.channel.value if t.channel else '-'})")
            for t in templates
        ],
        "extras": sorted(extras.items()),
        "need_next_update": [t.name for t in templates if "next_update" in used[t.name]],
        "mitigations": [
            (m["mitigation_id"], f"{m['mitigation_id']}: {m['action']} {m.get('target', '')}")
            for m in running
        ],
    }


async def _settled(reader: Reader, wait_for: int | None) -> bool:
    """Waits for the read models to hold `wait_for`; False when they lag behind still."""
    if wait_for is None:
        return True
    try:
        await reader.projector.wait(wait_for, timeout=WAIT_S)
    except TimeoutError:
        return False
    return True


async def incident_context(
    request: AnyRequest,
    seen_by: Viewer,
    incident_id: str,
    as_of: datetime | None = None,
    wait_for: int | None = None,
) -> dict[str, Any]:
    """The incident page's context; `NotFoundException` for an incident the models lack."""
    settled = True
    reader = reader_of(request)
    if as_of is not None:
        then = await incident_then(request, reader, incident_id, as_of)
        now = as_of
        incident, events, items = then.incident, then.events, then.action_items
    else:
        settled = await _settled(reader, wait_for)
        now = reader.clock()
        incident = await incident_with_breaches(reader, incident_id, now)
        events = await reader.run(queries.timeline, incident_id)
        items = await reader.run(action_items.of_incident, incident_id, now)
    running = timeline.open_mitigations(events)
    detected_at = incident["detected_at"]
    return {
        "incident": incident,
        "events": events,
        "entries": timeline.entries(events),
        "evidence": _live(events, "evidence.attached"),
        "comms": _live(events, "comms.sent"),
        "action_items": items,
        "postmortem": _postmortem(events),
        "now": now,
        "as_of": as_of,
        "settled": settled,
        "changes": await reader.run(changes.before, detected_at, as_of),
        "actions": ACTIONS,
        "available": [] if as_of is not None else available(incident, len(running), seen_by),
        "open_mitigations": running,
        "forms_data": form_choices(reader, running),
        "may_export": seen_by.may(Permission.ADMINISTER),
        "choices": CHOICES,
        "checkpoint": reader.projector.checkpoint,
        "failed": None,
        "error": None,
        "values": {},
    }
