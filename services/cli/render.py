"""How the CLI's read verbs print answers for people: rich tables, UTC times, short durations.

Every cell goes through `cell`, which knows the API's naming conventions (`_s` durations,
`_at` times). `--json` bypasses all of this and prints the answer verbatim.
"""

import os
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from events.durations import format_duration
from projections.wording import attributed
from services.clock import utc_text

out = Console(highlight=False)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 200  # piped or captured: rows stay on one line instead of wrapping at 80

Answer = dict[str, Any]
Columns = Sequence[tuple[str, str]]  # (key in the answer row, header)


def _cell(key: str, value: Any) -> str:
    """A value of the answer for people: `_s` durations, `_at` times, yes/no, joined lists."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key.endswith("_s") and isinstance(value, int | float):
        return format_duration(value)
    if key.endswith("_at") and isinstance(value, str):
        return utc_text(value)
    if isinstance(value, list):
        return ", ".join(": ".join(map(str, v)) if isinstance(v, list) else str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(k, v)}" for k, v in value.items())  # next_escalation
    return str(value)


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _new_table(title: str, headers: Iterable[str], no_wrap: Iterable[str] = ()) -> Table:
    table = Table(title=Text(title), title_justify="left")
    for header in headers:
        # fold, not "…": ids and values stay whole (and greppable) in narrow columns
        table.add_column(header, no_wrap=header in no_wrap, overflow="fold")
    return table


def _add_row(table: Table, cells: Iterable[str], style: str | None = None) -> None:
    # Text, not markup: titles and messages may contain "[...]".
    table.add_row(*map(Text, cells), style=style)


def _print_rows(title: str, rows: Sequence[Answer], columns: Columns | None = None) -> None:
    """A table of `rows`; without `columns`, every key of the first row in order."""
    if not rows:
        out.print(f"{title}: none")
        return
    columns = columns or [(key, key) for key in rows[0]]
    table = _new_table(title, (header for _, header in columns), no_wrap=("id", "age"))
    for row in rows:
        _add_row(table, (_cell(key, row.get(key)) for key, _ in columns))
    out.print(table)


def _words(*parts: Any) -> str:
    return " ".join(str(part) for part in parts if part not in (None, "", False))


def _because(text: str, why: Any) -> str:
    return f"{text}: {why}" if why else text


def _details(event: Answer, seq_of: dict[str, int]) -> str:
    """The event body's own fields, short: "P1 -> P0: all regions", "rollback checkout@v41"."""
    b: Answer = event.get("body") or {}
    target = f"seq {seq_of.get(b.get('target_event_id', ''), b.get('target_event_id'))}"
    match event.get("type"):
        case "alert.fired" | "alert.resolved":
            text = _words(b.get("alertname"), b.get("severity"), b.get("fingerprint"))
        case "incident.declared":
            services = f"[{', '.join(b.get('services') or [])}]" if b.get("services") else ""
            text = _words(b.get("severity"), f"{b.get('category')}:", b.get("title"), services)
        case "incident.impact_updated":
            text = "; ".join(f"{label} {value}" for label, value in _stated(b.get("impact") or {}))
        case "incident.severity_changed":
            text = _because(f"{b.get('from')} -> {b.get('to')}", b.get("reason"))
        case "incident.status_changed" | "incident.phase_changed":
            text = str(b.get("status") or b.get("phase"))
        case "incident.role_assigned" | "incident.role_released":
            released = "released" if event["type"] == "incident.role_released" else ""
            text = _words(f"{b.get('role')}:", b.get("person"), released)
        case "incident.escalated":
            text = _because(f"level {b.get('level')} -> {b.get('to')}", b.get("reason"))
        case "mitigation.started":
            automated = "automated" if b.get("automated") else None
            how = ", ".join(part for part in (b.get("mitigation_id"), automated) if part)
            text = _words(b.get("action"), b.get("target"), f"({how})" if how else "")
        case "mitigation.completed":
            text = _because(_words(b.get("mitigation_id"), b.get("outcome")), b.get("details"))
        case "comms.sent":
            text = f"{b.get('audience')} {b.get('kind')}: {b.get('message')}"
        case "incident.note_added":
            kind = b.get("kind")
            text = str(b.get("text")) if kind in (None, "note") else f"{kind}: {b.get('text')}"
        case "evidence.attached":
            text = _words(b.get("kind"), b.get("uri"), b.get("description"))
        case "incident.resolved" | "incident.reopened" | "incident.closed":
            text = _words(b.get("summary"), b.get("reason"))
        case "postmortem.published":
            text = _words(b.get("uri"), b.get("summary"))
        case "action_item.added" | "action_item.completed":
            text = _words(b.get("item_id"), b.get("title"), b.get("owner"), b.get("due"))
        case "event.corrected":
            fixed = {k.removeprefix("corrected_"): v for k, v in b.items() if "corrected_" in k}
            changes = ", ".join(f"{k} -> {_cell(k, v)}" for k, v in fixed.items() if v)
            text = _because(f"corrects {target}: {changes}", b.get("reason"))
        case "event.retracted":
            text = _because(f"retracts {target}", b.get("reason"))
        case _:
            text = ""
    return _short(text)


# Renderers, one per verb: they receive the decoded answer.


_BOARD: Final = (
    *(("incident_id", "id"), ("severity", "sev"), ("status", "status"), ("phase", "phase")),
    *(("title", "title"), ("commander", "commander"), ("age_s", "age")),
    *(("acknowledged", "acked"), ("last_comms_at", "last comms")),
    *(("due", "next update due"), ("escalation", "next escalation")),
    ("alerts_firing", "alerts firing"),
)


def board(answer: Answer) -> None:
    incidents: list[Answer] = answer.get("incidents") or []
    now = datetime.now(UTC)
    for i in incidents:
        due = i.get("next_update_at")
        overdue = " (overdue)" if due and datetime.fromisoformat(due) < now else ""
        i["due"] = _cell("next_update_at", due) + overdue
        escalation = i.get("next_escalation")
        i["escalation"] = (
            f"L{escalation['level']} {escalation['to']}, {_cell('due_at', escalation['due_at'])}"
            if escalation
            else ""
        )
    _print_rows(f"{len(incidents)} incidents", incidents, _BOARD)


# Shown in blocks of their own, not in the incident's grid.
_BLOCKS: Final = frozenset({"alerts", "breaches", "title", "impact", "alerts_truncated"})
_IMPACT: Final = (
    *(("users_affected_pct", "users affected"), ("customers_affected", "customers affected")),
    *(("customers", "customers"), ("regions", "regions"), ("services", "services")),
    *(("data_loss", "data loss"), ("security", "security")),
    *(("revenue_at_risk", "revenue at risk"), ("text", "text")),
)
_EVIDENCE: Final = (("kind", "kind"), ("uri", "uri"), ("description", "description"))
_CHANGES: Final = (
    *(("occurred_at", "when"), ("summary", "change"), ("source", "source")),
    *(("host", "host"), ("links", "links")),
)


def _stated(impact: Answer) -> list[tuple[str, str]]:
    """(label, value) of an impact statement's fields; those not stated are not known."""
    found = []
    for key, label in _IMPACT:
        value = impact.get(key)
        if value not in (None, "", []):
            found.append(
                (label, f"{value:g}%" if key == "users_affected_pct" else _cell(key, value))
            )
    return found


def _impact(impact: Answer | None) -> None:
    if not impact:
        out.print("impact: not stated")
        return
    grid = Table.grid(padding=(0, 2))
    for label, value in _stated(impact):
        grid.add_row(label, Text(value))
    out.print(Panel(grid, title="impact", title_align="left", expand=False))


def _link(link: Answer) -> str:
    """A change's link, PagerDuty's `{href, text}`: "text <href>"."""
    href, text = link.get("href") or "", link.get("text") or ""
    return f"{text} <{href}>" if text else str(href)


def _evidence(events: list[Answer]) -> list[Answer]:
    """The evidence attached and not retracted, from the timeline's events."""
    attached = (e for e in events if e.get("type") == "evidence.attached")
    return [e.get("body") or {} for e in attached if not e.get("retracted")]


def incident(answer: Answer) -> None:
    """One incident from its timeline answer (or the incident answer: then without the
    evidence); impact, truncated alerts and changes only where the service answers them."""
    incident: Answer = answer.get("incident") or {}
    grid = Table.grid(padding=(0, 2))
    for key, value in incident.items():
        if key not in _BLOCKS:
            grid.add_row(key.removesuffix("_s"), Text(_cell(key, value)))
    title = Text(f"{incident.get('incident_id')}: {incident.get('title')}")
    out.print(Panel(grid, title=title, title_align="left", expand=False))
    if "impact" in incident:
        _impact(incident["impact"])
    _print_rows("alerts", incident.get("alerts") or [])
    if truncated := incident.get("alerts_truncated"):
        out.print(f"{truncated} alerts not delivered (truncated)")
    _print_rows("breaches", incident.get("breaches") or [], _BREACH)
    if "events" in answer:
        _print_rows("evidence", _evidence(answer["events"]), _EVIDENCE)
    changes: list[Answer] | None = answer.get("changes_before_detection")
    if changes is not None:
        rows = [c | {"links": [_link(link) for link in c.get("links") or []]} for c in changes]
        _print_rows("changes before detection", rows, _CHANGES)


def timeline(answer: Answer, as_of: datetime | None) -> None:
    incident: Answer = answer.get("incident") or {}
    events: list[Answer] = answer.get("events") or []
    seq_of = {e["event_id"]: e["seq"] for e in events}
    title = f"{incident.get('incident_id')}: {incident.get('title')}"
    title += f" as of {utc_text(as_of)}" if as_of else ""
    headers = ("seq", "time", "actor", "source", "type", "details", "trace id")
    table = _new_table(title, headers, no_wrap=("seq", "time", "type"))
    for e in events:
        time = utc_text(e["effective_at"])
        if e["effective_at"] != e["occurred_at"]:
            time += f" (corrected, was {utc_text(e['occurred_at'])})"
        details = _details(e, seq_of)
        retracted = bool(e.get("retracted"))
        details = f"[retracted] {details}" if retracted else details
        cells = (str(e["seq"]), time, _by(e), e["source"], e["type"], details)
        _add_row(table, (*cells, e.get("trace_id") or ""), "strike dim" if retracted else None)
    out.print(table)


_METRICS: Final = (
    ("mttd", "MTTD"),
    ("time_to_declare", "Time to declare"),
    ("mtta", "MTTA"),
    ("mttm", "MTTM"),
    ("mttr", "MTTR"),
)
_STATS: Final = (("count", "count"), ("mean_s", "mean"), ("p50_s", "p50"), ("p90_s", "p90"))


def mttr(answer: Answer) -> None:
    rows: list[Answer] = answer.get("rows") or []
    out.print(
        f"grouped by {answer.get('group_by')}, definitions {answer.get('definitions_version')}"
    )
    group = str(answer.get("group_by") or "group")
    for key, name in _METRICS:
        flat = [{"group": row.get("group"), **(row.get(key) or {})} for row in rows]
        _print_rows(name, flat, [("group", group), *_STATS, ("max_s", "max")])


_BREACH: Final = (
    *(("incident_id", "incident"), ("severity", "sev"), ("kind", "missed")),
    *(("target_s", "target"), ("actual_s", "took"), ("due_at", "due"), ("open", "open")),
)
_REPEAT: Final = (
    *(("incident_id", "incident"), ("previous_incident_id", "repeats")),
    *(("reason", "same"), ("gap_s", "after")),
)


def breaches(answer: Answer) -> None:
    title = f"breaches (policy {answer.get('policy_version')})"
    _print_rows(title, answer.get("breaches") or [], _BREACH)
    _print_rows("repeat incidents", answer.get("repeats") or [], _REPEAT)


_AUDIT: Final = (
    *(("seq", "seq"), ("recorded_at", "recorded"), ("occurred_at", "occurred")),
    *(("by", "actor"), ("source", "source"), ("type", "type")),
    *(("incident_id", "incident"), ("event_id", "event id"), ("trace_id", "trace id")),
)


def _by(event: Answer) -> str:
    return attributed(str(event.get("actor")), event.get("principal"), event.get("principal_role"))


def audit(answer: Answer) -> None:
    entries: list[Answer] = answer.get("entries") or []
    _print_rows("audit", [entry | {"by": _by(entry)} for entry in entries], _AUDIT)


def result(answer: Answer) -> None:
    columns: list[str] = answer.get("columns") or []
    rows: list[list[Any]] = answer.get("rows") or []
    table = _new_table("", columns)
    for row in rows:
        _add_row(table, ("NULL" if v is None else str(v) for v in row))
    out.print(table)
    more = ", truncated: the service returns at most this many" if answer.get("truncated") else ""
    out.print(f"{len(rows)} rows{more}")
