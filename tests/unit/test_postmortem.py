"""Postmortem drafts: a scripted incident, projected, drafted and compared byte for byte.

The log goes through the real decider (so it is one `decide` would accept), the hash chain and
the projector into an in-memory DuckDB; `draft` reads the rows `queries` returns. Set
UPDATE_GOLDEN=1 to rewrite tests/golden/postmortem.md (and postmortem_filled.md, a log that fills
every section of the runbooks' templates) after a deliberate change, then read them.
"""

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from events.chain import seal
from events.commands import (
    Acknowledge,
    AddActionItem,
    AddNote,
    AnyCommand,
    AssignRole,
    AttachEvidence,
    ChangeSeverity,
    Close,
    CompleteActionItem,
    CompleteMitigation,
    CorrectEvent,
    Declare,
    Escalate,
    PublishPostmortem,
    RecordAlertFired,
    Resolve,
    RetractEvent,
    ReviewPostmortem,
    SendComms,
    StartActionItem,
    StartMitigation,
)
from events.decisions import Rejected, decide
from events.incident import INITIAL, Incident, fold
from events.policy import DEFAULT_POLICY
from events.records import Stored
from events.schema import AnyEvent, Source, decode, encode
from projections import queries
from projections.database import open_database
from projections.markdown import cell, humanize
from projections.postmortem import draft, report
from projections.projector import Projector

GOLDEN = Path(__file__).parents[1] / "golden" / "postmortem.md"
FILLED = Path(__file__).parents[1] / "golden" / "postmortem_filled.md"
INCIDENT = "INC-PM7K2M9Q"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


@dataclass
class Log:
    """Commands decided in order against the folded state, sealed and numbered like the store."""

    incident_id: str = INCIDENT
    state: Incident = INITIAL
    stored: list[Stored] = field(default_factory=list)

    def do(self, minute: float, command: type[AnyCommand], actor: str, **fields: Any) -> str:
        event_id: str = fields.pop("event_id", f"e{len(self.stored) + 1}")
        at = T0 + timedelta(minutes=minute)
        envelope = {"incident_id": self.incident_id, "event_id": event_id, "occurred_at": at}
        fields.setdefault("source", Source.CLI)
        # convert, not the constructor: it validates and turns "P1" into Severity.P1.
        built = msgspec.convert(envelope | {"actor": actor, **fields}, command)
        decision = decide(built, self.state)
        assert not isinstance(decision, Rejected), decision
        self.append(decision, at)
        return event_id

    def append(self, events: list[AnyEvent], recorded_at: datetime) -> None:
        prev = self.stored[-1].event.hash if self.stored else ""
        for event in seal(events, prev, recorded_at):
            self.stored.append(Stored(len(self.stored) + 1, event, encode(event)))
        self.state = fold(events, self.state)


def scripted() -> Log:
    """A P1 that became a P0: every kind of fact a postmortem draws on."""
    log = Log()
    log.do(
        0,
        Declare,
        "alice@example.com",
        title="Checkout 5xx above 5%",
        severity="P1",
        services=("checkout", "payments"),
        summary="Card payments failed for about 5% of checkout attempts in every region.",
        commander="alice@example.com",
    )
    log.do(
        1,
        RecordAlertFired,
        "alertmanager",
        source=Source.ALERTMANAGER,
        fingerprint="5f1c0a2b9e",
        alertname="CheckoutHighErrorRate",
        severity="critical",
        starts_at=T0 - timedelta(minutes=6),
    )
    ack = log.do(10, Acknowledge, "bob@example.com")
    log.do(12, ChangeSeverity, "alice@example.com", to="P0", reason="errors in all regions")
    log.do(13, AssignRole, "alice@example.com", role="comms", person="carol@example.com")
    log.do(14, Escalate, "alice@example.com", level=2, to="payments-oncall", reason="card auth")
    log.do(
        15,
        SendComms,
        "carol@example.com",
        audience="status_page",
        kind="initial",
        status="investigating",
        message="We are investigating elevated errors at checkout.",
        next_update_at=T0 + timedelta(minutes=30),
    )
    log.do(
        16,
        StartMitigation,
        "auto-remediation",
        source=Source.SYSTEM,
        mitigation_id="m1",
        action="restart",
        target="checkout-api",
        automated=True,
        confidence=0.4,
    )
    log.do(
        20,
        CompleteMitigation,
        "auto-remediation",
        mitigation_id="m1",
        outcome="failed",
        details="error rate unchanged",
    )
    dns = log.do(22, AddNote, "bob@example.com", text="It is DNS.")
    log.do(
        24,
        StartMitigation,
        "dave@example.com",
        mitigation_id="m2",
        action="rollback",
        target="checkout@v41",
    )
    log.do(25, AssignRole, "alice@example.com", role="commander", person="dave@example.com")
    log.do(31, CompleteMitigation, "dave@example.com", mitigation_id="m2", outcome="succeeded")
    log.do(
        32,
        SendComms,
        "carol@example.com",
        audience="status_page",
        kind="update",
        status="monitoring",
        message="A fix is in place; error rates are recovering.",
    )
    log.do(
        33,
        AddNote,
        "dave@example.com",
        kind="decision",
        text="Freeze deploys to checkout until pool settings are validated in CI.",
    )
    log.do(
        34,
        AddNote,
        "dave@example.com",
        kind="root_cause",
        text="v42 set the card-auth connection pool to 0.\nEvery payment waited for a "
        "connection and timed out after 5s.",
        trace_id=TRACE,
    )
    log.do(
        35,
        AttachEvidence,
        "dave@example.com",
        kind="trace",
        uri=f"https://tracing.example.com/trace/{TRACE}",
        sha256=SHA,
        description="a failing card-auth span",
        trace_id=TRACE,
    )
    impact = log.do(
        36,
        AddNote,
        "carol@example.com",
        kind="impact",
        text="About 5% of checkout attempts failed.",
    )
    log.do(38, RetractEvent, "bob@example.com", target_event_id=dns, reason="it was not DNS")
    log.do(
        39,
        CorrectEvent,
        "bob@example.com",
        target_event_id=ack,
        corrected_occurred_at=T0 + timedelta(minutes=4),
        reason="paged at 12:04; the ack was entered late",
    )
    log.do(
        40,
        CorrectEvent,
        "carol@example.com",
        target_event_id=impact,
        corrected_text="About 5% of checkout attempts failed for 31 minutes; no order was lost.",
        reason="measured",
    )
    log.do(41, AddNote, "bob@example.com", text="Dashboards | logs disagreed\nfor ten minutes.")
    log.do(45, Resolve, "dave@example.com", summary="Rolled checkout back to v41.")
    log.do(
        46,
        SendComms,
        "carol@example.com",
        audience="status_page",
        kind="resolution",
        status="resolved",
        message="The issue is resolved.",
    )
    log.do(
        50,
        AddActionItem,
        "dave@example.com",
        item_id="AI-1",
        title="Validate pool settings in CI",
        owner="erin@example.com",
        due=date(2026, 11, 8),
    )
    log.do(
        51,
        AddActionItem,
        "dave@example.com",
        item_id="AI-2",
        title="Alert on card-auth pool exhaustion",
        owner="frank@example.com",
    )
    day = 24 * 60
    log.do(
        day - 2 * 60,
        PublishPostmortem,
        "dave@example.com",
        uri="https://wiki.example.com/postmortems/INC-PM7K2M9Q",
        summary="Pool misconfiguration in v42",
    )
    log.do(day - 60, CompleteActionItem, "erin@example.com", item_id="AI-1")
    log.do(day - 55, Close, "dave@example.com")
    return log


def projected(stored: list[Stored], batches: int = 1) -> duckdb.DuckDBPyConnection:
    con = open_database(":memory:")
    projector = Projector(con, None)
    size = -(-len(stored) // batches)
    for start in range(0, len(stored), size):
        chunk = stored[start : start + size]
        projector.apply(chunk, chunk[-1].seq)
    return con


def drafted(con: duckdb.DuckDBPyConnection, now: datetime = T0, incident_id: str = INCIDENT) -> str:
    cur = con.cursor()
    incident = queries.get_incident(cur, incident_id, now)
    assert incident is not None
    return draft(incident, queries.timeline(cur, incident_id), DEFAULT_POLICY)


@pytest.fixture(scope="module")
def text() -> Iterator[str]:
    con = projected(scripted().stored)
    yield drafted(con)
    con.close()


def test_matches_the_golden_file(text: str) -> None:
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    expected = GOLDEN.read_text(encoding="utf-8")
    assert text == expected, "the draft changed: rerun with UPDATE_GOLDEN=1 and read the diff"


def test_is_deterministic_for_a_log() -> None:
    """Batching, the moment of asking and a second projection change nothing."""
    stored = scripted().stored
    one, two = projected(stored), projected(stored, batches=7)
    later = T0 + timedelta(days=400)
    assert drafted(one) == drafted(one) == drafted(two) == drafted(one, now=later)
    assert report(one.cursor(), INCIDENT, DEFAULT_POLICY, later) == drafted(one)
    assert report(one.cursor(), "INC-NOSUCH", DEFAULT_POLICY, later) is None


def test_sections_carry_the_facts(text: str) -> None:
    for expected in (
        "| Severity | P0 (declared as P1) |",
        "| Acknowledged | 2026-11-01 12:04:00Z (corrected) |",
        "| Duration | 51m (detected → resolved) |",  # definitions 2: from detection
        "**dave@example.com** (since 2026-11-01 12:25:00Z); before: alice@example.com",
        "| Time to declare | 6m | none | no target |",
        "| Time to acknowledge | 10m | 5m | missed by 5m |",
        "| Longest gap between updates | 17m | 15m | missed by 2m |",
        "~~It is DNS.~~",
        "~~Note~~ (retracted)",
        "for 31 minutes; no order was lost.",
        "| AI-1 | Validate pool settings in CI | erin@example.com |  | 2026-11-08 | done (",
        f"- `{TRACE}`: seq 17 (Root cause), seq 18 (Evidence attached)",
        "Generated from stream sequences 1..30 of INC-PM7K2M9Q (30 events).",
    ):
        assert expected in text, expected


def test_table_cells_are_escaped(text: str, full: str) -> None:
    assert "Dashboards \\| logs disagreed<br>for ten minutes." in text
    assert cell("a | b\nc\r\nd") == "a \\| b<br>c<br>d"
    assert cell("C:\\tmp <script>") == "C:\\\\tmp \\<script>"
    assert cell(None) == ""
    _assert_tables_are_regular(text)
    _assert_tables_are_regular(full)


def _assert_tables_are_regular(text: str) -> None:
    in_table = False
    for line in text.splitlines():
        if line.startswith("|") != in_table:
            in_table, columns = line.startswith("|"), None
        if in_table:
            # Unescaped pipes: the separators of one row, the same count on every row.
            count = len(re.findall(r"(?<!\\)\|", line))
            columns = columns or count
            assert count == columns, line


def test_escapes_a_hostile_title_and_note() -> None:
    log = Log(incident_id="INC-ESCAPE1")
    log.do(0, Declare, "x", title="a | b\n# c", severity="P4")
    log.do(1, AddNote, "x", kind="root_cause", text="first\n\n- nested, still this note <b>")
    text = drafted(projected(log.stored), incident_id="INC-ESCAPE1")
    assert text.startswith("# Postmortem: INC-ESCAPE1 — a | b # c\n")
    assert "| Title | a \\| b<br># c |" in text
    assert "- first\n\n  - nested, still this note \\<b> — x, 2026-11-01 12:01:00Z" in text
    assert "| Time to acknowledge | _not yet_ | none | no target |" in text
    assert "**What happened:** _To be written_" in text


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0, "0s"), (42.9, "42s"), (720, "12m"), (750, "12m 30s"), (3900, "1h 05m"), (86400, "1d")],
)
def test_humanize(seconds: float, expected: str) -> None:
    assert humanize(seconds) == expected


GOLDEN_LOG = Path(__file__).parents[1] / "golden" / "events" / "events.jsonl"


def test_an_alert_opened_incident_shows_impact_links_and_truncation() -> None:
    """INC-GOLDEN0003 of the golden corpus: opened by Alertmanager, two alerts left out, links
    the alert brought, the impact restated, the declaration's times corrected, auto-resolved."""
    records = GOLDEN_LOG.read_bytes().splitlines()
    stored = [Stored(n, decode(raw), raw) for n, raw in enumerate(records, start=1)]
    text = drafted(projected(stored), incident_id="INC-GOLDEN0003")
    for expected in (
        # Detection as folded: the corrected detected_at (11:54) beats the alert (11:55).
        "| Detected | 2026-11-01 11:54:00Z (detected_at, corrected) |",
        "| Duration | 26m (detected → resolved) |",
        "_2 alerts were not delivered by the monitor (truncated)._",
        "| Impact started | 2026-11-01 11:50:00Z (corrected) |",
        "| Services | login, sso |",
        "| Regions | eu-west-1, eu-central-1 |",
        "| Customers / tenants | acme |",
        "| Customers affected | 40 |",
        "| Share of users affected | 20% |",
        "| Data loss | no |",
        "| Security | no |",
        "| Revenue at risk | 1,500 |",
        "| Statement | Logins slow; SSO too |",
        "_Impact as updated by alice@example.com, 2026-11-01 12:03:00Z._",
        "| Time to detect | 4m | none | no target |",  # 11:50 -> 11:54, both corrected
        "| runbook | https://runbooks.example/login |  | runbook_url | alertmanager |",
        "| metrics | http://prometheus:9090/graph?g0.expr=latency |  | generatorURL | alertmanager",
        "detected_at → 2026-11-01 11:54:00Z; impact_started_at → 2026-11-01 11:50:00Z",
        "(detected_at originally 2026-11-01 11:55:00Z; impact_started_at originally",
    ):
        assert expected in text, expected
    impact = text.split("## Impact", 1)[1].split("## Timeline", 1)[0]
    assert impact.index("| Statement |") < impact.index("_No impact notes._")


def test_an_impact_statement_keeps_unknown_apart_from_no() -> None:
    log = Log(incident_id="INC-IMPACT1")
    log.do(
        0,
        Declare,
        "alice@example.com",
        title="Slow search",
        severity="P3",
        impact={"regions": ["us-east-1"], "security": True, "text": "Search p99 at 4s"},
    )
    log.do(5, AddNote, "bob@example.com", kind="impact", text="Mostly mobile users.")
    text = drafted(projected(log.stored), incident_id="INC-IMPACT1")
    for expected in (
        "| Impact started | _unknown_ |",
        "| Services | _none stated_ |",
        "| Regions | us-east-1 |",
        "| Customers affected | _unknown_ |",
        "| Share of users affected | _unknown_ |",
        "| Data loss | unknown |",
        "| Security | yes |",
        "| Revenue at risk | _unknown_ |",
        "_Impact as declared by alice@example.com, 2026-11-01 12:00:00Z._",
        "- Mostly mobile users. — bob@example.com, 2026-11-01 12:05:00Z",
        "| Detected | 2026-11-01 12:00:00Z (declaration) |",
    ):
        assert expected in text, expected
    assert "truncated" not in text


def filled() -> Log:
    """A P1 whose responders filed a note of every kind, with action items, a postmortem
    published three times (draft, in review, final) and its review meeting: every section of
    the runbooks' templates (runbooks 001 to 004) has something to show."""
    log = Log(incident_id="INC-FILLED01")
    log.do(
        0,
        Declare,
        "alice@example.com",
        title="Login 500s after API v2.3.1",
        severity="P1",
        category="application",
        services=("api", "auth"),
        summary="Logins failed for most users after the v2.3.1 deploy.",
        commander="alice@example.com",
        impact_started_at=T0 - timedelta(minutes=3),
        impact={
            "services": ["api", "auth"],
            "regions": ["eu-west-1"],
            "customers_affected": 1200,
            "users_affected_pct": 80,
            "data_loss": False,
            "security": False,
            "revenue_at_risk": 5000,
            "text": "Users could not sign in",
        },
    )
    log.do(
        1,
        RecordAlertFired,
        "alertmanager",
        source=Source.ALERTMANAGER,
        fingerprint="a1b2c3",
        alertname="LoginErrorRate",
        severity="critical",
        starts_at=T0 - timedelta(minutes=1),
    )
    log.do(3, Acknowledge, "bob@example.com")
    log.do(4, AssignRole, "alice@example.com", role="tech_lead", person="bob@example.com")
    log.do(4.5, AssignRole, "alice@example.com", role="product_owner", person="pat@example.com")
    log.do(5, Escalate, "alice@example.com", level=1, to="secondary-oncall", reason="5 min")
    log.do(
        6,
        SendComms,
        "carol@example.com",
        audience="internal",
        channel="slack",
        kind="initial",
        status="investigating",
        message="Investigating login failures.",
        next_update_at=T0 + timedelta(minutes=36),
    )
    log.do(
        8,
        StartMitigation,
        "bob@example.com",
        mitigation_id="m1",
        action="config_rollback",
        target="api@v2.3.0",
    )
    log.do(14, CompleteMitigation, "bob@example.com", mitigation_id="m1", outcome="succeeded")
    log.do(15, Resolve, "alice@example.com", summary="Rolled the API config back to v2.3.0.")
    log.do(
        16,
        SendComms,
        "carol@example.com",
        audience="status_page",
        channel="status_page",
        kind="resolution",
        status="resolved",
        message="Logins work again.",
    )
    notes = [
        ("root_cause", "v2.3.1 held DB connections for 30s, exhausting the pool."),
        ("five_whys", "Why did logins fail? The auth service got no DB connection."),
        ("five_whys", "Why no connection? The pool was exhausted."),
        ("five_whys", "Why exhausted? A new query held connections for 30s."),
        ("five_whys", "Why 30s? It scanned the sessions table without an index."),
        ("five_whys", "Why unnoticed? Staging has 1% of production's sessions."),
        ("decision", "Roll back the config instead of fixing forward."),
        ("went_well", "The alert fired within a minute."),
        ("went_well", "The rollback was one command."),
        ("went_wrong", "The slow query passed staging.\nNo pool saturation alert existed."),
        ("lucky", "It happened during business hours."),
        ("lesson", "Staging must carry production-like data volumes."),
        ("prevention", "Query performance regression tests in CI."),
        ("prevention", "Alert on connection pool saturation above 80%."),
        ("impact", "About 45,000 login requests failed."),
        ("note", "The war room was #inc-login."),
    ]
    for n, (kind, text) in enumerate(notes):
        trace = TRACE if kind == "root_cause" else None
        log.do(20 + n, AddNote, "bob@example.com", kind=kind, text=text, trace_id=trace)
    log.do(
        40,
        AttachEvidence,
        "bob@example.com",
        kind="dashboard",
        uri="https://grafana.example.com/d/auth",
        description="DB pool saturation",
    )
    items = [
        ("AI-1", "Add slow query detection to CI", "dev-team", date(2026, 11, 3), "P0"),
        ("AI-2", "Alert on connection pool saturation", "sre-team", date(2026, 11, 4), "P0"),
        ("AI-3", "Automate deployment rollback", "platform", date(2026, 11, 17), "P1"),
    ]
    for n, (item_id, title, owner, due, priority) in enumerate(items):
        log.do(
            45 + n,
            AddActionItem,
            "alice@example.com",
            item_id=item_id,
            title=title,
            owner=owner,
            due=due,
            priority=priority,
            ticket_url=f"https://jira.example.com/browse/OPS-{n + 1}",
        )
    log.do(50, StartActionItem, "dev-team", item_id="AI-1")
    log.do(51, StartActionItem, "sre-team", item_id="AI-2")
    log.do(52, CompleteActionItem, "sre-team", item_id="AI-2")
    log.do(
        60,
        PublishPostmortem,
        "alice@example.com",
        markdown="# Postmortem (draft)",
        status="draft",
        authors=("alice@example.com", "bob@example.com"),
        summary="First draft",
    )
    log.do(
        20 * 60,
        PublishPostmortem,
        "alice@example.com",
        uri="https://wiki.example.com/pm/INC-FILLED01",
        status="in_review",
    )
    log.do(
        3 * 24 * 60,
        ReviewPostmortem,
        "alice@example.com",
        held_at=T0 + timedelta(days=2, hours=3),
        attendees=("alice@example.com", "bob@example.com", "carol@example.com", "sre-lead"),
        summary="Agreed the action items; AI-3 moves to the platform roadmap.",
    )
    log.do(
        3 * 24 * 60 + 5,
        PublishPostmortem,
        "bob@example.com",
        uri="https://wiki.example.com/pm/INC-FILLED01",
        status="final",
        summary="Connection pool exhaustion from an unindexed query",
    )
    return log


@pytest.fixture(scope="module")
def full() -> Iterator[str]:
    con = projected(filled().stored)
    yield drafted(con, incident_id="INC-FILLED01")
    con.close()


def test_a_filled_log_matches_its_golden_file(full: str) -> None:
    if os.environ.get("UPDATE_GOLDEN") == "1":
        FILLED.write_text(full, encoding="utf-8")
    expected = FILLED.read_text(encoding="utf-8")
    assert full == expected, "the draft changed: rerun with UPDATE_GOLDEN=1 and read the diff"


def test_every_runbook_section_is_filled_from_notes(full: str) -> None:
    assert "_To be written_" not in full
    assert "_None" not in full  # no empty section at all
    sections = [line for line in full.splitlines() if line.startswith("#")]
    for heading in (
        "## Summary",
        "## Impact",
        "## Timeline",
        "### Root cause",
        "### Five whys",
        "### Decisions",
        "## Lessons learned",
        "### What went well",
        "### What went wrong",
        "### Where we got lucky",
        "### Lessons",
        "## Preventive measures",
        "## Action items",
        "## Review",
    ):
        assert heading in sections, heading
    for expected in (
        "1. Why did logins fail? The auth service got no DB connection. — bob@example.com",
        "5. Why unnoticed? Staging has 1% of production's sessions. — bob@example.com",
        "- The slow query passed staging.\n  No pool saturation alert existed. — bob@example.com",
        "- It happened during business hours. — bob@example.com",
        "- Alert on connection pool saturation above 80%. — bob@example.com",
        # The latest publication's status; authors carried from the one that named them.
        "| Postmortem status | final (published 2026-11-04 12:05:00Z) |",
        "| Postmortem authors | alice@example.com, bob@example.com |",
        "| Published postmortem | https://wiki.example.com/pm/INC-FILLED01: Connection pool "
        "exhaustion from an unindexed query |",
        "| Postmortem review | 2026-11-03 15:00:00Z with alice@example.com, bob@example.com, "
        "carol@example.com, sre-lead |",
        "| Product Owner | **pat@example.com** (since 2026-11-01 12:04:30Z) |",
        "| AI-1 | Add slow query detection to CI | dev-team | P0 | 2026-11-03 | in progress "
        "(since 2026-11-01 12:50:00Z) | https://jira.example.com/browse/OPS-1 |",
        "| AI-2 | Alert on connection pool saturation | sre-team | P0 | 2026-11-04 | done "
        "(2026-11-01 12:52:00Z) | https://jira.example.com/browse/OPS-2 |",
        "| AI-3 | Automate deployment rollback | platform | P1 | 2026-11-17 | todo |",
        "| 2026-11-03 15:00:00Z | alice@example.com, bob@example.com, carol@example.com, "
        "sre-lead | Agreed the action items; AI-3 moves to the platform roadmap. | "
        "alice@example.com |",
        "| internal | slack | initial |",
        "Postmortem published | inline Markdown (draft, by alice@example.com, "
        "bob@example.com): First draft |",
        "Postmortem reviewed | held 2026-11-03 15:00:00Z with alice@example.com",
        "Action item started | AI-1: Add slow query detection to CI |",
    ):
        assert expected in full, expected


def test_a_section_keeps_its_placeholder_only_without_a_note() -> None:
    log = Log(incident_id="INC-PARTLY1")
    log.do(0, Declare, "x", title="Partly written", severity="P3")
    log.do(1, AddNote, "x", kind="lucky", text="Nobody was on a plane.")
    lucky = log.do(2, AddNote, "x", kind="went_well", text="retracted later")
    log.do(3, RetractEvent, "x", target_event_id=lucky, reason="wrong kind")
    text = drafted(projected(log.stored), incident_id="INC-PARTLY1")
    section = text.split("## Lessons learned", 1)[1].split("## Preventive measures", 1)[0]
    assert section == (
        "\n\n### What went well\n\n_To be written_"  # its only note was retracted
        "\n\n### What went wrong\n\n_To be written_"
        "\n\n### Where we got lucky\n\n- Nobody was on a plane. — x, 2026-11-01 12:01:00Z"
        "\n\n### Lessons\n\n_To be written_\n\n"
    )
    for expected in (
        "| Postmortem status | _not published_ |",
        "| Postmortem review | _not held_ |",
        "## Review\n\n_No review meeting recorded yet._",
        "## Preventive measures\n\n_To be written_",
        "### Five whys\n\n_To be written_",
    ):
        assert expected in text, expected
    assert "Postmortem authors" not in text


def test_a_filled_draft_is_deterministic() -> None:
    stored = filled().stored
    one, two = projected(stored), projected(stored, batches=9)
    later = T0 + timedelta(days=400)
    first = drafted(one, incident_id="INC-FILLED01")
    assert first == drafted(two, incident_id="INC-FILLED01")
    assert first == drafted(one, now=later, incident_id="INC-FILLED01")
