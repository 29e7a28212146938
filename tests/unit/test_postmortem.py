"""Postmortem drafts: a scripted incident, projected, drafted and compared byte for byte.

The log goes through the real decider (so it is one `decide` would accept), the hash chain and
the projector into an in-memory DuckDB; `draft` reads the rows `queries` returns. Set
UPDATE_GOLDEN=1 to rewrite tests/golden/postmortem.md after a deliberate change, then read it.
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
    SendComms,
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
        "| AI-1 | Validate pool settings in CI | erin@example.com | 2026-11-08 | done (",
        f"- `{TRACE}`: seq 17 (Root cause), seq 18 (Evidence attached)",
        "Generated from stream sequences 1..30 of INC-PM7K2M9Q (30 events).",
    ):
        assert expected in text, expected


def test_table_cells_are_escaped(text: str) -> None:
    assert "Dashboards \\| logs disagreed<br>for ten minutes." in text
    assert cell("a | b\nc\r\nd") == "a \\| b<br>c<br>d"
    assert cell("C:\\tmp <script>") == "C:\\\\tmp \\<script>"
    assert cell(None) == ""
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
