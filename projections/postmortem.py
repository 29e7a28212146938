"""Postmortem drafts: one incident's read-model rows rendered as a Markdown document.

`draft` is pure over the rows of `queries.get_incident` and `queries.timeline` and the severity
policy: no clock, no I/O, so one log always gives the same bytes. Times follow the metrics'
rules through `projections.chronicle`; `projections.markdown` keeps authored text inert. How each
event reads is `projections.wording`'s; the response metrics section is `projections.measures`',
the sections people write from their notes (runbooks' templates) `projections.retrospective`'s.
"""

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

import duckdb

from events.policy import Policy
from projections import chronicle, queries, retrospective, wording
from projections.chronicle import Entry, Facts, Row
from projections.markdown import because, cell, heading, humanize, prose, table, when, words
from projections.measures import response_metrics
from projections.retrospective import notes
from projections.wording import NOT_YET, ROLES, TO_BE_WRITTEN


def _moment(event: Entry | None) -> str:
    if event is None:
        return NOT_YET
    return when(event.at) + (" (corrected)" if event.at != event.occurred else "")


def _roles(live: Iterable[Entry]) -> dict[str, list[tuple[str, datetime, datetime | None]]]:
    """Who held each role when: (person, since, until), until None while still held."""
    held: dict[str, list[tuple[str, datetime, datetime | None]]] = {}
    for e in live:
        if e.type not in ("incident.role_assigned", "incident.role_released"):
            continue
        role, person = str(e.body.get("role")), str(e.body.get("person"))
        spans = held.setdefault(role, [])
        current = spans[-1] if spans and spans[-1][2] is None else None
        if e.type == "incident.role_assigned" and (current is None or current[0] != person):
            if current is not None:
                spans[-1] = (current[0], current[1], e.at)
            spans.append((person, e.at, None))
        elif e.type == "incident.role_released" and current is not None and current[0] == person:
            spans[-1] = (person, current[1], e.at)
    return held


def _holders(spans: Sequence[tuple[str, datetime, datetime | None]]) -> str:
    person, since, until = spans[-1]
    now = f"**{cell(person)}** (since {when(since)})" if until is None else "_nobody_"
    before = [f"{cell(p)} ({when(s)} to {when(u)})" for p, s, u in spans if u is not None]
    return now + (f"; before: {', '.join(before)}" if before else "")


def _metadata(incident: Row, live: Sequence[Entry], facts: Facts) -> list[str]:
    declared = facts.declared.body if facts.declared else {}
    severity = str(incident.get("severity") or declared.get("severity") or "")
    if declared.get("severity") and declared["severity"] != severity:
        severity += f" (declared as {declared['severity']})"
    status = words(
        incident.get("status"), f"(phase {incident['phase']})" if incident.get("phase") else ""
    )
    detected = words(when(facts.detected), f"({facts.detected_from})" * bool(facts.detected_from))
    if facts.detected and facts.resolved:
        duration = f"{humanize(max((facts.resolved.at - facts.detected).total_seconds(), 0.0))}"
        duration += " (detected → resolved)"
    else:
        duration = "_ongoing_"
    rows = [
        ("Incident", cell(incident.get("incident_id"))),
        ("Title", cell(incident.get("title"))),
        ("Severity", cell(severity)),
        ("Category", cell(incident.get("category"))),
        ("Services", cell(", ".join(incident.get("services") or [])) or "_none_"),
        ("Status", cell(status)),
        ("Detected", detected or "_unknown_"),
        ("Declared", _moment(facts.declared)),
        ("Acknowledged", _moment(facts.acknowledged)),
        ("Mitigated", _moment(facts.mitigated)),
        ("Resolved", _moment(facts.resolved)),
        ("Closed", _moment(facts.closed)),
        ("Duration", duration),
    ]
    held = _roles(live)
    if "commander" not in held:
        rows.append((ROLES["commander"], "_unassigned_"))
    order = [*ROLES, *sorted(held.keys() - ROLES.keys())]
    rows += [(ROLES.get(role, role), _holders(held[role])) for role in order if role in held]
    escalations = [
        f"level {e.body.get('level')} → {cell(e.body.get('to'))} ({when(e.at)})"
        for e in live
        if e.type == "incident.escalated"
    ]
    rows.append(("Escalation", "; ".join(escalations) or "_not escalated_"))
    rows += retrospective.header(live)
    return table(["Field", "Value"], rows)


def _summary(facts: Facts) -> list[str]:
    what = str(facts.declared.body.get("summary") or "") if facts.declared else ""
    how = str(facts.resolved.body.get("summary") or "") if facts.resolved else ""
    return [
        "## Summary",
        "",
        f"**What happened:** {prose(what) or TO_BE_WRITTEN}",
        "",
        f"**Resolution:** {prose(how) or TO_BE_WRITTEN}",
    ]


def _truncated(incident: Row) -> list[str]:
    count = int(incident.get("alerts_truncated") or 0)
    if count <= 0:
        return []
    were = "alert was" if count == 1 else "alerts were"
    return ["", f"_{count} {were} not delivered by the monitor (truncated)._"]


def _known(value: Any, shown: Callable[[Any], str] = str) -> str:
    return "_unknown_" if value is None else cell(shown(value))


def _yes_no(value: Any) -> str:
    return "unknown" if value is None else ("yes" if value else "no")


def _statement(live: Sequence[Entry]) -> tuple[Row | None, Entry | None]:
    """The latest impact statement not retracted, and the event that made it (log order, the
    fold's rule)."""
    stated = [
        e
        for e in live
        if e.type == "incident.impact_updated"
        or (e.type == "incident.declared" and isinstance(e.body.get("impact"), dict))
    ]
    last = max(stated, key=lambda e: e.seq, default=None)
    return (last.body["impact"] if last is not None else None), last


def _impact(incident: Row, live: Sequence[Entry], facts: Facts) -> list[str]:
    """The structured impact (the folded row's, else the latest statement), then the notes."""
    derived, by = _statement(live)
    impact: Row | None = incident.get("impact", derived)
    started = when(facts.impact_started) + " (corrected)" * facts.impact_corrected
    rows = [("Impact started", started or "_unknown_")]
    if impact is not None:

        def listed(key: str) -> str:
            return cell(", ".join(impact.get(key) or [])) or "_none stated_"

        pct = impact.get("users_affected_pct")
        rows += [
            ("Services", listed("services")),
            ("Regions", listed("regions")),
            ("Customers / tenants", listed("customers")),
            ("Customers affected", _known(impact.get("customers_affected"))),
            ("Share of users affected", _known(pct, lambda p: f"{p:g}%")),
            ("Data loss", _yes_no(impact.get("data_loss"))),
            ("Security", _yes_no(impact.get("security"))),
            ("Revenue at risk", _known(impact.get("revenue_at_risk"), lambda n: f"{n:,}")),
            ("Statement", cell(impact.get("text")) or "_none_"),
        ]
    lines = ["## Impact", "", *table(["Field", "Value"], rows), ""]
    if impact is None:
        lines += ["_No impact statement recorded._", ""]
    elif by is not None:
        how = "updated" if by.type == "incident.impact_updated" else "declared"
        lines += [f"_Impact as {how} by {cell(wording.by(by))}, {when(by.at)}._", ""]
    return lines + notes(live, "impact", TO_BE_WRITTEN if impact is None else "_No impact notes._")


def _timeline(timeline: Sequence[Entry]) -> list[str]:
    seq_of = {e.event_id: e.seq for e in timeline}
    titles = {
        str(e.body.get("item_id")): str(e.body.get("title"))
        for e in timeline
        if e.type == "action_item.added"
    }
    rows = []
    for e in timeline:
        label, details = cell(wording.label(e)), cell(wording.details(e, seq_of, titles))
        if e.was:
            details = words(details, f"({cell('; '.join(e.was))})")
        marks = ["corrected"] * e.corrected
        if e.retracted:
            label, details = f"~~{label}~~", f"~~{details}~~" if details else ""
            marks.append("retracted")
        label += f" ({', '.join(marks)})" if marks else ""
        trace = f"`{cell(e.trace_id)}`" if e.trace_id else ""
        rows.append([str(e.seq), when(e.at), cell(wording.by(e)), label, details, trace])
    headers = ["Seq", "Time (UTC)", "Actor", "Event", "Details", "Trace id"]
    return ["## Timeline", "", *table(headers, rows)]


def _mitigations(live: Sequence[Entry]) -> list[str]:
    done = {str(e.body.get("mitigation_id")): e for e in live if e.type == "mitigation.completed"}
    rows = []
    for e in live:
        if e.type != "mitigation.started":
            continue
        b, end = e.body, done.get(str(e.body.get("mitigation_id")))
        outcome = "_not completed_"
        if end is not None:
            outcome = cell(because(str(end.body.get("outcome")), end.body.get("details")))
        rows.append(
            [
                cell(b.get("mitigation_id")),
                cell(b.get("action")),
                cell(b.get("target")),
                "yes" if b.get("automated") else "no",
                when(e.at),
                when(end.at) if end else "",
                outcome,
            ]
        )
    headers = ["Id", "Action", "Target", "Automated", "Started", "Completed", "Outcome"]
    body = table(headers, rows) if rows else ["_No mitigations recorded._"]
    return ["## Mitigations", "", *body]


def _comms(live: Sequence[Entry]) -> list[str]:
    rows = [
        [
            cell(e.body.get("audience")),
            cell(e.body.get("channel")),
            cell(e.body.get("kind")),
            when(e.at),
            cell(e.body.get("status")),
            cell(e.body.get("message")),
        ]
        for e in live
        if e.type == "comms.sent"
    ]
    headers = ["Audience", "Channel", "Kind", "Sent (UTC)", "Status", "Message"]
    body = table(headers, rows) if rows else ["_No communications sent._"]
    return ["## Communications", "", *body]


def _evidence(timeline: Sequence[Entry], live: Sequence[Entry]) -> list[str]:
    rows = [
        [
            cell(e.body.get("kind")),
            cell(e.body.get("uri")),
            f"`{cell(e.body['sha256'])}`" if e.body.get("sha256") else "",
            cell(e.body.get("description")),
            cell(wording.by(e)),
            when(e.at),
        ]
        for e in live
        if e.type == "evidence.attached"
    ]
    # Links the alerts brought (runbook, dashboard, generator URL) are attached by the monitor.
    headers = ["Kind", "URI", "SHA-256", "Description", "Attached by", "Attached (UTC)"]
    lines = ["## Evidence", "", *(table(headers, rows) if rows else ["_No evidence attached._"])]
    seen: dict[str, list[str]] = {}
    for e in sorted(timeline, key=lambda e: e.seq):
        if e.trace_id:
            seen.setdefault(e.trace_id, []).append(f"seq {e.seq} ({cell(wording.label(e))})")
    traces = [f"- `{cell(trace)}`: {', '.join(uses)}" for trace, uses in seen.items()]
    return [*lines, "", "Trace ids seen on events:", "", *(traces or ["_None._"])]


def draft(incident: Row, events: list[Row], policy: Policy) -> str:
    """The postmortem of `incident` (a `queries.get_incident` row) from its timeline rows."""
    timeline = chronicle.entries(events)
    live = [e for e in timeline if not e.retracted]
    facts = chronicle.facts(live, incident)
    seqs = [e.seq for e in timeline] or [incident.get("first_seq", 0), incident.get("last_seq", 0)]
    title = f"# Postmortem: {heading(str(incident.get('incident_id')))}"
    title += f" — {heading(str(incident.get('title') or ''))}"
    sections = [
        [title, "", *_metadata(incident, live, facts), *_truncated(incident)],
        _summary(facts),
        _impact(incident, live, facts),
        _timeline(timeline),
        response_metrics(incident, live, facts, policy),
        _mitigations(live),
        _comms(live),
        retrospective.analysis(live),
        retrospective.lessons(live),
        retrospective.prevention(live),
        ["## Other notes", "", *notes(live, "note", "_None._")],
        _evidence(timeline, live),
        retrospective.action_items(live),
        retrospective.review(live),
        [
            "---",
            "",
            f"Generated from stream sequences {min(seqs)}..{max(seqs)} of "
            f"{heading(str(incident.get('incident_id')))} ({len(events)} events).",
        ],
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def report(
    cur: duckdb.DuckDBPyConnection, incident_id: str, policy: Policy, now: datetime
) -> str | None:
    """The draft from one snapshot of the read models (the projector may commit meanwhile)."""
    cur.execute("BEGIN TRANSACTION")
    try:
        incident = queries.get_incident(cur, incident_id, now, policy)
        events = queries.timeline(cur, incident_id) if incident is not None else []
    finally:
        cur.execute("ROLLBACK")
    return None if incident is None else draft(incident, events, policy)
