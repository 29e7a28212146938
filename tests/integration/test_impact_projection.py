"""Issue 12 in the read models: the impact statement, detection and the alerts' own facts as
typed `incidents` columns (schema version 5), in the incident reads, in SQL, grouped by region,
and brought to files of schema version 4 by folding their incidents again.

DuckDB only: the log is decided, sealed and numbered here, then projected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from tests_support import snapshot

from events.chain import GENESIS, seal
from events.commands import (
    AnyCommand,
    AssignRole,
    CorrectEvent,
    Declare,
    Link,
    RecordAlertFired,
    RetractEvent,
    UpdateImpact,
)
from events.decisions import Rejected, decide
from events.incident import INITIAL, Incident, fold
from events.records import Stored
from events.schema import EvidenceKind, Impact, Role, Severity, Source, encode
from projections import asof, metrics, queries, sandbox
from projections.database import open_database
from projections.projector import Projector
from projections.schema import ADDED_COLUMNS, SCHEMA_VERSION, VIEWS

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=2)
# The columns `incidents` gained in schema versions 5 and 6, which older files lack.
ADDED_IN_5 = tuple(name for v in (5, 6) for name, _ in ADDED_COLUMNS[v])
DECLARED_IMPACT = Impact(
    services=("login",), regions=("eu-west-1",), users_affected_pct=12.5, data_loss=False
)
UPDATED_IMPACT = Impact(
    services=("login", "sso"),
    regions=("eu-west-1", "eu-central-1"),
    customers=("acme",),
    customers_affected=40,
    users_affected_pct=20.0,
    data_loss=False,
    security=False,
    revenue_at_risk=1500,
    text="Logins slow; SSO too",
)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


@dataclass
class Log:
    """Commands decided against the folded state, sealed and numbered like the store."""

    state: dict[str, Incident] = field(default_factory=dict)
    stored: list[Stored] = field(default_factory=list)

    def do(
        self,
        incident_id: str,
        minute: float,
        command: type[Any],
        event_id: str,
        source: Source = Source.CLI,
        **fields: Any,
    ) -> str:
        built: AnyCommand = command(
            incident_id=incident_id,
            event_id=event_id,
            occurred_at=at(minute),
            actor="alertmanager" if source is Source.ALERTMANAGER else "alice@example.com",
            source=source,
            **fields,
        )
        state = self.state.get(incident_id, INITIAL)
        decision = decide(built, state)
        assert not isinstance(decision, Rejected), decision
        mine = [s.event for s in self.stored if s.event.incident_id == incident_id]
        prev = mine[-1].hash if mine else GENESIS
        for event in seal(decision, prev, max(at(minute), T0)):
            self.stored.append(Stored(len(self.stored) + 1, event, encode(event)))
        self.state[incident_id] = fold(decision, state)
        return event_id


def alert_opened(log: Log) -> Log:
    """INC-A: opened by Alertmanager with an impact, an alert that left two out and brought two
    links, the impact restated by a person, the declaration's times corrected."""
    log.do(
        "INC-A",
        0,
        Declare,
        "declare-a",
        Source.ALERTMANAGER,
        title="LoginLatency",
        severity=Severity.P2,
        services=("login",),
        detected_at=at(-5),
        impact_started_at=at(-9),
        impact=DECLARED_IMPACT,
    )
    log.do(
        "INC-A",
        1,
        RecordAlertFired,
        "alert-a",
        Source.ALERTMANAGER,
        fingerprint="fp-a",
        alertname="LoginLatency",
        starts_at=at(-5),
        truncated_alerts=2,
        links=(
            Link(uri="https://runbooks.example/login", kind=EvidenceKind.RUNBOOK),
            Link(uri="http://prometheus:9090/graph", kind=EvidenceKind.METRICS),
        ),
    )
    log.do("INC-A", 3, UpdateImpact, "impact-a", impact=UPDATED_IMPACT)
    log.do(
        "INC-A",
        4,
        CorrectEvent,
        "fix-a",
        target_event_id="declare-a",
        corrected_detected_at=at(-6),
        corrected_impact_started_at=at(-10),
        reason="the first page was earlier",
    )
    return log


def project(stored: list[Stored], path: Path | str = ":memory:") -> duckdb.DuckDBPyConnection:
    con = open_database(path)
    Projector(con, None).apply(stored, stored[-1].seq)
    return con


def column(con: duckdb.DuckDBPyConnection, name: str, incident_id: str = "INC-A") -> Any:
    [(value,)] = con.execute(
        f"SELECT {name} FROM incidents WHERE incident_id = ?", [incident_id]
    ).fetchall()
    return value


def test_the_incident_row_carries_the_folded_impact_and_alert_facts() -> None:
    log = alert_opened(Log())
    con = project(log.stored)
    row = con.execute(
        f"SELECT detected_at, impact_started_at, {', '.join(ADDED_IN_5)} FROM incidents"
    ).fetchall()
    assert row == [
        (
            at(-6),  # corrected detected_at: before the alert's start
            at(-10),
            ["login", "sso"],
            ["eu-west-1", "eu-central-1"],
            ["acme"],
            40,
            20.0,
            False,
            False,
            1500,
            "Logins slow; SSO too",
            2,
            True,
            False,
            False,  # no mitigation: no automation
            False,
            False,
        )
    ]
    state = log.state["INC-A"]
    assert (column(con, "detected_at"), column(con, "taken_over")) == (state.detected_at, False)

    log.do("INC-A", 5, AssignRole, "commander-a", role=Role.COMMANDER, person="bob@example.com")
    assert column(project(log.stored), "taken_over") is True


def test_the_incident_reads_nest_the_impact() -> None:
    log = alert_opened(Log())
    log.do("INC-B", 0, Declare, "declare-b", title="No impact known", severity=Severity.P3)
    con = project(log.stored)
    cur = con.cursor()
    incident = queries.get_incident(cur, "INC-A", NOW)
    assert incident is not None
    assert incident["impact"] == {
        "services": ["login", "sso"],
        "regions": ["eu-west-1", "eu-central-1"],
        "customers": ["acme"],
        "customers_affected": 40,
        "users_affected_pct": 20.0,
        "data_loss": False,
        "security": False,
        "revenue_at_risk": 1500,
        "text": "Logins slow; SSO too",
    }
    assert (incident["alerts_truncated"], incident["impact_started_at"]) == (2, at(-10))
    assert (incident["alert_opened"], incident["taken_over"]) == (True, False)
    assert not any(key in incident for key in ("impact_regions", "impact_text"))
    board = {row["incident_id"]: row for row in queries.list_incidents(cur, NOW)}
    assert board["INC-A"]["impact"] == incident["impact"]
    assert board["INC-B"]["impact"] is None and board["INC-B"]["alerts_truncated"] == 0
    for key in ("incident_id", "title", "severity", "status", "phase", "opened_at", "commander"):
        assert key in board["INC-B"]
    # As of any instant: folded from the log into the same tables, read by the same queries.
    [then] = [r for r in asof.board(log.stored, at(2)) if r["incident_id"] == "INC-A"]
    assert then["impact"] is not None and then["impact"]["regions"] == ["eu-west-1"]
    assert then["impact_started_at"] == at(-9)  # the correction came later


def test_a_retracted_statement_gives_way_to_the_one_before() -> None:
    log = alert_opened(Log())
    log.do("INC-A", 6, RetractEvent, "undo-impact", target_event_id="impact-a", reason="wrong")
    con = project(log.stored)
    assert column(con, "impact_regions") == ["eu-west-1"]
    assert column(con, "customers_affected") is None  # not known, not zero
    assert column(con, "data_loss") is False
    assert column(con, "security") is None


def test_the_impact_columns_answer_sql() -> None:
    con = project(alert_opened(Log()).stored)
    result = sandbox.run(
        con,
        "SELECT incident_id, r AS region, users_affected_pct, data_loss, revenue_at_risk, "
        "alerts_truncated FROM incidents, unnest(impact_regions) AS t(r) ORDER BY region",
    )
    assert result.rows == [
        ["INC-A", "eu-central-1", 20.0, False, 1500, 2],
        ["INC-A", "eu-west-1", 20.0, False, 1500, 2],
    ]


def test_metrics_group_by_region() -> None:
    log = alert_opened(Log())
    log.do(
        "INC-B",
        0,
        Declare,
        "declare-b",
        title="Checkout",
        severity=Severity.P1,
        impact=Impact(regions=("us-east-1", "eu-west-1", "us-east-1")),
    )
    log.do("INC-C", 0, Declare, "declare-c", title="Unknown", severity=Severity.P3)
    log.do(
        "INC-D",
        0,
        Declare,
        "declare-d",
        title="No region",
        severity=Severity.P3,
        impact=Impact(text="some users"),
    )
    # A statement that is taken back counts for nothing: INC-E groups by its declaration's.
    log.do(
        "INC-E",
        0,
        Declare,
        "declare-e",
        title="Moved",
        severity=Severity.P4,
        impact=Impact(regions=("ap-south-1",)),
    )
    log.do("INC-E", 1, UpdateImpact, "impact-e", impact=Impact(regions=("us-east-1",)))
    log.do("INC-E", 2, RetractEvent, "undo-e", target_event_id="impact-e", reason="wrong")
    cur = project(log.stored).cursor()
    counts = {row["group"]: row["count"] for row in metrics.mttx(cur, "region")}
    assert counts == {
        metrics.NO_REGION: 2,  # INC-C (no statement) and INC-D (a statement without regions)
        "ap-south-1": 1,
        "eu-central-1": 1,
        "eu-west-1": 2,  # INC-A and INC-B, each once
        "us-east-1": 1,  # INC-B once although named twice
    }
    assert "region" in metrics.GROUPS


def test_a_file_of_schema_version_4_is_folded_again(tmp_path: Path) -> None:
    """Version 5 made `detected_at` the effective detection and added the impact columns: a
    version 4 file folds its incidents again at start, and then equals a fresh projection."""
    log = alert_opened(Log())
    path = tmp_path / "v4.duckdb"
    con = project(log.stored, path)
    # What version 4 wrote: no version 5 columns, detection without the alert and the
    # correction (the declaration's own detected_at), states of the older shape.
    con.execute("DROP VIEW status_board")
    for name in ADDED_IN_5:
        con.execute(f"ALTER TABLE incidents DROP COLUMN {name}")
    con.execute(
        "UPDATE incidents SET detected_at = ?, impact_started_at = ?, state = ?",
        [at(-5), at(-9), b'{"incident_id":"INC-A","declared":true}'],
    )
    con.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    con.execute(VIEWS)
    con.close()

    con = open_database(path)
    assert Projector(con, None).checkpoint == len(log.stored)
    fresh = project(log.stored)
    assert snapshot(con) == snapshot(fresh)
    [(version,)] = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    assert version == str(SCHEMA_VERSION)
    assert (column(con, "detected_at"), column(con, "impact_started_at")) == (at(-6), at(-10))
    assert column(con, "impact_regions") == ["eu-west-1", "eu-central-1"]
    assert column(con, "alerts_truncated") == 2
    con.close()
    fresh.close()


@pytest.mark.parametrize("retracted", [False, True])
def test_detection_moves_every_clock_from_the_fold(retracted: bool) -> None:
    """The metrics read detection from the folded row only: a detection correction, and its
    retraction, move MTTA/MTTR exactly as `incidents.detected_at` moves."""
    log = alert_opened(Log())
    if retracted:
        log.do("INC-A", 7, RetractEvent, "undo-fix", target_event_id="fix-a", reason="no")
    cur = project(log.stored).cursor()
    detected = column(cur, "detected_at")
    assert detected == (at(-5) if retracted else at(-6))  # the alert's start, else corrected
    [row] = metrics.mttx(cur, "severity")
    assert row["time_to_declare"]["max_s"] == (T0 - detected).total_seconds()
    assert row["mttd"]["max_s"] == (detected - column(cur, "impact_started_at")).total_seconds()
