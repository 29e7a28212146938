"""Definitions version 2 (issue 12): the runbooks' example timelines, replayed through the
projector into a real DuckDB file, measure from detection as the runbooks do.

Runbook 001: detected 14:23:00 (alert), declared 14:23:30, resolved 14:52:00: MTTR 29 min.
Runbook 003: alert 14:35, declared 14:37, resolved 15:22: 47 min.
"""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from events.chain import GENESIS, seal
from events.policy import DEFAULT_POLICY
from events.records import Stored
from events.schema import (
    AlertFired,
    AnyEvent,
    EventCorrected,
    EventRetracted,
    IncidentAcknowledged,
    IncidentDeclared,
    IncidentResolved,
    Severity,
    Source,
    encode,
)
from projections.breaches import breaches
from projections.database import open_database
from projections.metrics import DEFINITIONS, DEFINITIONS_VERSION, METRICS, mttx
from projections.projector import Projector

DAY = datetime(2026, 3, 10, tzinfo=UTC)


def at(hh_mm_ss: str) -> datetime:
    h, m, s = (int(part) for part in hh_mm_ss.split(":"))
    return DAY + timedelta(hours=h, minutes=m, seconds=s)


def _event(cls: Any, incident_id: str, n: int, when: str, **fields: Any) -> AnyEvent:
    event: AnyEvent = cls(
        event_id=f"{incident_id}-{n}",
        incident_id=incident_id,
        occurred_at=at(when),
        actor="oncall@example.com",
        source=Source.SYNTHETIC,
        **fields,
    )
    return event


def timeline(
    incident_id: str, alert: str, declared: str, resolved: str, **declared_fields: Any
) -> list[AnyEvent]:
    return [
        _event(AlertFired, incident_id, 0, declared, fingerprint="fp", starts_at=at(alert)),
        _event(
            IncidentDeclared,
            incident_id,
            1,
            declared,
            title=incident_id,
            severity=Severity.P1,
            **declared_fields,
        ),
        _event(IncidentResolved, incident_id, 2, resolved),
    ]


def project(path: Path, incidents: list[list[AnyEvent]]) -> Any:
    log: list[Stored] = []
    for events in incidents:
        previous = GENESIS
        for event in events:
            (sealed,) = seal([event], previous, at("23:00:00"))
            previous = sealed.hash
            log.append(Stored(len(log) + 1, sealed, encode(sealed)))
    con = open_database(path)
    Projector(con, None).apply(log, len(log))
    return con


def by_incident(con: Any) -> dict[str, dict[str, Any]]:
    cur = con.cursor()
    rows: dict[str, dict[str, Any]] = {}
    for row in mttx(cur, "severity"):
        rows[row["group"]] = row
    return rows


def test_runbook_timelines_measure_from_detection(tmp_path: Path) -> None:
    rb001 = timeline("RB-001", "14:23:00", "14:23:30", "14:52:00")
    rb003 = [
        _event(AlertFired, "RB-003", 0, "14:37:00", fingerprint="fp", starts_at=at("14:35:00")),
        _event(IncidentDeclared, "RB-003", 1, "14:37:00", title="RB-003", severity=Severity.P2),
        _event(IncidentResolved, "RB-003", 2, "15:22:00"),
    ]
    con = project(tmp_path / "runbooks.duckdb", [rb001, rb003])
    rows = by_incident(con)
    assert rows["P1"]["mttr"]["max_s"] == 29 * 60.0  # runbook 001: MTTR 29 minutes
    assert rows["P2"]["mttr"]["max_s"] == 47 * 60.0  # runbook 003: 47 min
    assert rows["P1"]["time_to_declare"]["max_s"] == 30.0
    assert rows["P2"]["time_to_declare"]["max_s"] == 120.0
    assert rows["P1"]["mttd"]["count"] == 0  # impact start unknown: no MTTD
    con.close()


def test_declaration_detected_at_and_impact_start(tmp_path: Path) -> None:
    # No alert: the declaration's detected_at is the detection; MTTD from the impact start.
    events = [
        _event(
            IncidentDeclared,
            "INC-1",
            0,
            "10:10:00",
            title="t",
            severity=Severity.P1,
            detected_at=at("10:00:00"),
            impact_started_at=at("09:55:00"),
        ),
        _event(IncidentAcknowledged, "INC-1", 1, "10:20:00"),
        _event(IncidentResolved, "INC-1", 2, "11:00:00"),
    ]
    con = project(tmp_path / "db.duckdb", [events])
    row = by_incident(con)["P1"]
    assert row["mttd"]["max_s"] == 300.0
    assert row["time_to_declare"]["max_s"] == 600.0
    assert row["mtta"]["max_s"] == 1200.0
    assert row["mttr"]["max_s"] == 3600.0
    cur = con.cursor()
    cur.execute("SELECT impact_started_at FROM incidents WHERE incident_id = 'INC-1'")
    assert cur.fetchone() == (at("09:55:00"),)
    # The ack clock (P1: 15 min) runs from detection: acknowledged 20 min after it (10 after
    # declaring), a breach;
    # first comms never came: judged up to the resolution, 60 min after detection.
    got = {(b["kind"], b["actual_s"]) for b in breaches(cur, DEFAULT_POLICY, at("12:00:00"))}
    assert ("ack", 1200.0) in got
    assert ("first_comms", 3600.0) in got
    con.close()


def _declared_with_times() -> list[AnyEvent]:
    """Runbook 001 declared with its own detected_at (after the alert) and impact start."""
    return timeline(
        "RB-001",
        "14:23:00",
        "14:23:30",
        "14:52:00",
        detected_at=at("14:23:10"),
        impact_started_at=at("14:20:00"),
    )


def _correction(n: int, when: str, **fields: Any) -> AnyEvent:
    return _event(
        EventCorrected,
        "RB-001",
        n,
        when,
        target_event_id="RB-001-1",
        reason="the first page was earlier",
        **fields,
    )


def test_a_detection_correction_moves_mttr(tmp_path: Path) -> None:
    """The declaration's detected_at, corrected to before the alert, becomes the detection:
    MTTR, MTTA and time to declare move with it; retracting the correction moves them back."""
    fix = _correction(3, "15:00:00", corrected_detected_at=at("14:13:00"))
    con = project(tmp_path / "fixed.duckdb", [[*_declared_with_times(), fix]])
    row = by_incident(con)["P1"]
    assert row["mttr"]["max_s"] == 39 * 60.0  # 14:13 -> 14:52, not the runbook's 29 min
    assert row["time_to_declare"]["max_s"] == 10 * 60 + 30.0
    assert row["mttd"]["max_s"] == 0.0  # impact started 14:20, after the corrected detection
    [(detected,)] = con.execute("SELECT detected_at FROM incidents").fetchall()
    assert detected == at("14:13:00")
    con.close()

    retracted = _event(
        EventRetracted,
        "RB-001",
        4,
        "15:01:00",
        target_event_id=fix.event_id,
        reason="it was the alert after all",
    )
    con = project(tmp_path / "retracted.duckdb", [[*_declared_with_times(), fix, retracted]])
    assert by_incident(con)["P1"]["mttr"]["max_s"] == 29 * 60.0  # the alert at 14:23 again
    con.close()


def test_an_impact_start_correction_moves_mttd(tmp_path: Path) -> None:
    con = project(tmp_path / "before.duckdb", [_declared_with_times()])
    assert by_incident(con)["P1"]["mttd"]["max_s"] == 3 * 60.0  # 14:20 -> 14:23
    con.close()
    fix = _correction(3, "15:00:00", corrected_impact_started_at=at("14:05:00"))
    con = project(tmp_path / "after.duckdb", [[*_declared_with_times(), fix]])
    row = by_incident(con)["P1"]
    assert row["mttd"]["max_s"] == 18 * 60.0  # 14:05 -> 14:23
    assert row["mttr"]["max_s"] == 29 * 60.0  # detection did not move
    [(impact,)] = con.execute("SELECT impact_started_at FROM incidents").fetchall()
    assert impact == at("14:05:00")
    con.close()


def test_the_resolution_clock_runs_from_detection(tmp_path: Path) -> None:
    """P1 must resolve within 8 h: detected 8 h 30 min before the resolution but declared
    7 h 30 min before it, a breach of 30 min counted from detection."""
    events = [
        _event(
            IncidentDeclared,
            "INC-R",
            0,
            "10:00:00",
            title="t",
            severity=Severity.P1,
            detected_at=at("09:00:00"),
        ),
        _event(IncidentAcknowledged, "INC-R", 1, "10:01:00"),
        _event(IncidentResolved, "INC-R", 2, "17:30:00"),
    ]
    con = project(tmp_path / "db.duckdb", [events])
    found = [
        (b["kind"], b["actual_s"], b["due_at"], b["open"])
        for b in breaches(con.cursor(), DEFAULT_POLICY, at("23:00:00"), incident_id="INC-R")
        if b["kind"] == "resolution"
    ]
    assert found == [("resolution", 8.5 * 3600, at("17:00:00"), False)]
    con.close()


@pytest.mark.parametrize("key", ["detected_at", "impact_started_at", "time_to_declare"])
def test_definitions_version_2(key: str) -> None:
    assert int(DEFINITIONS_VERSION) >= 2  # version 3 (issue 13) added groups and automation
    assert key in DEFINITIONS
    assert "time_to_declare" in METRICS
    assert "resolution" in DEFINITIONS["breaches"] and "declared_at" not in DEFINITIONS["breaches"]
    assert "corrected_detected_at" in DEFINITIONS["detected_at"]
    assert "region" in DEFINITIONS["groups"]
