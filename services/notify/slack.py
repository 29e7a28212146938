"""The Slack incoming-webhook format: `{"text", "blocks"}`, as Slack documents it.

Pure. `text` is what Slack shows in notifications and where blocks cannot be shown; the blocks
lay out what runbook 003's `#incidents` template does: severity, status, impact, responder,
next update, and a link to the incident's page. Slack's limits are kept (a header's text at
most 150 characters, a section's 3000, a field's 2000), and `&`, `<`, `>` are escaped in
mrkdwn as Slack asks, so no text from an incident can turn into a mention or a link.
"""

from typing import Any, Final

from services.clock import utc_text
from services.notify.messages import incident_facts, link, text, what
from services.notify.obligations import Notice

_HEADER_MAX: Final = 150
_SECTION_MAX: Final = 3000
_FIELD_MAX: Final = 2000
_EMOJI: Final = {
    "incident.declared": ":rotating_light:",
    "incident.escalated": ":rotating_light:",
    "incident.severity_changed": ":rotating_light:",
    "incident.resolved": ":white_check_mark:",
    "incident.closed": ":white_check_mark:",
    "next_update_due": ":alarm_clock:",
}
_OVERDUE: Final = ":warning:"
_NEWS: Final = ":information_source:"


def escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cut(value: str, limit: int) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _mrkdwn(value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": value}


def _field(name: str, value: object) -> dict[str, str]:
    return _mrkdwn(_cut(f"*{name}*\n{value}", _FIELD_MAX))


def body(
    notice: Notice, incident: dict[str, Any] | None, delivery: str, base_url: str | None
) -> dict[str, Any]:
    facts = incident_facts(notice, incident)
    emoji = _EMOJI.get(notice.obligation, _NEWS if notice.event is not None else _OVERDUE)
    severity = f"[{facts['severity']}] " if facts.get("severity") else ""
    title = facts.get("title") or notice.incident_id
    page = link(base_url, notice.incident_id)
    name = f"<{escape(page)}|{notice.incident_id}>" if page else notice.incident_id
    impact = (facts.get("impact") or {}).get("text") or ", ".join(facts.get("services") or [])
    next_update = facts.get("next_update_at")
    fields = [
        _field("Incident", name),
        _field("Severity", escape(str(facts.get("severity") or "unknown"))),
        _field("Status", escape(str(facts.get("status") or "unknown"))),
        _field("Responder", escape(str(facts.get("commander") or "not assigned"))),
        _field("Next update", utc_text(next_update) if next_update else "not promised"),
    ]
    if impact:
        fields.append(_field("Impact", escape(impact)))
    return {
        "text": text(notice, incident),
        "blocks": [
            {
                "type": "header",
                "text": {
                    "type": "plain_text",
                    "text": _cut(f"{emoji} {severity}{title}", _HEADER_MAX),
                    "emoji": True,
                },
            },
            {"type": "section", "text": _mrkdwn(_cut(escape(what(notice)), _SECTION_MAX))},
            {"type": "section", "fields": fields},
            {
                "type": "context",
                "elements": [_mrkdwn(f"{escape(notice.obligation)} · delivery {delivery[:16]}")],
            },
        ],
    }
