"""Every view tells the same story (issue 10, points 8 and 9): board, decide, metrics, breaches,
timeline, postmortem and as-of agree after corrections and retractions of lifecycle facts.

DuckDB only: the log is decided, sealed and numbered here, then projected in one-event batches
(states remembered and read back) and compared with a fresh one-batch fold.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from tests_support import snapshot

from events.chain import GENESIS, seal
from events.commands import (
    Acknowledge,
    AnyCommand,
    Close,
    CorrectEvent,
    Declare,
    Reopen,
    Resolve,
    RetractEvent,
    SendComms,
)
from events.decisions import Rejected, decide
from events.incident import INITIAL, Incident, fold
from events.policy import DEFAULT_POLICY
from events.records import Stored
from events.schema import Audience, CommsKind, Severity, Source, Status, encode
from projections import asof, breaches, metrics, postmortem, queries
from projections.database import open_database
from projections.projector import Projector
from projections.schema import ADDED_COLUMNS, SCHEMA_VERSION, VIEWS

INC = "INC-ONETRUTH"
# The columns `incidents` gained in schema versions 5 and 6, which older files lack.
SINCE_5 = tuple(name for v in (5, 6) for name, _ in ADDED_COLUMNS[v])
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=10)


def at(minute: float) -> datetime:
    return T0 + timedelta(minutes=minute)


@dataclass
class Log:
    state: Incident = INITIAL
    stored: list[Stored] = field(default_factory=list)

    def do(self, minute: float, command: type[Any], event_id: str = "", **fields: Any) -> str:
        event_id = event_id or f"e{len(self.stored) + 1}"
        built: AnyCommand = command(
            incident_id=INC,
            event_id=event_id,
            occurred_at=at(minute),
            actor="alice@example.com",
            source=Source.CLI,
            **fields,
        )
        decision = decide(built, self.state)
        assert not isinstance(decision, Rejected), decision
        prev = self.stored[-1].event.hash if self.stored else GENESIS
        # Recorded when it happened (or when it was typed, for a backfill: never earlier).
        recorded = max(at(minute), self.stored[-1].event.recorded_at or T0) if self.stored else T0
        for event in seal(decision, prev, recorded):
            self.stored.append(Stored(len(self.stored) + 1, event, encode(event)))
        self.state = fold(decision, self.state)
        return event_id


def declared() -> Log:
    log = Log()
    log.do(0, Declare, "declare", title="Checkout 5xx", severity=Severity.P1)
    return log


@dataclass
class Views:
    cur: duckdb.DuckDBPyConnection
    stored: list[Stored]

    def board(self, **filters: Any) -> list[dict[str, Any]]:
        return queries.list_incidents(self.cur, NOW, **filters)

    def incident(self) -> dict[str, Any]:
        row = queries.get_incident(self.cur, INC, NOW)
        assert row is not None
        return row

    def state(self) -> Incident:
        [(blob,)] = self.cur.execute(
            "SELECT state FROM incidents WHERE incident_id = ?", [INC]
        ).fetchall()
        return msgspec.json.decode(blob, type=Incident)

    def breaches(self) -> dict[str, dict[str, Any]]:
        return {b["kind"]: b for b in breaches.breaches(self.cur, DEFAULT_POLICY, NOW)}

    def metric(self, name: str) -> dict[str, Any]:
        [row] = metrics.mttx(self.cur, "severity")
        result: dict[str, Any] = row[name]
        return result

    def draft(self) -> str:
        text = postmortem.report(self.cur, INC, DEFAULT_POLICY, NOW)
        assert text is not None
        return text

    def past(self) -> list[dict[str, Any]]:
        return asof.board(self.stored, NOW, include_closed=True)


@pytest.fixture
def project() -> Iterator[Any]:
    opened: list[duckdb.DuckDBPyConnection] = []

    def views(log: Log) -> Views:
        live = open_database(":memory:")
        projector = Projector(live, None)
        for stored in log.stored:  # one event per batch: states remembered and read back
            projector.apply([stored], stored.seq)
        fresh = open_database(":memory:")
        Projector(fresh, None).apply(log.stored, log.stored[-1].seq)
        assert snapshot(live) == snapshot(fresh)
        opened.extend([live, fresh])
        result = Views(live.cursor(), log.stored)
        # The projected state is the domain's fold of the log, and what decide judges.
        assert result.state() == log.state
        return result

    yield views
    for con in opened:
        con.close()


def test_a_retracted_resolution_is_undone_in_every_view(project: Any) -> None:
    log = declared()
    log.do(3, Acknowledge)
    resolve = log.do(30, Resolve, summary="rolled back")
    log.do(40, RetractEvent, target_event_id=resolve, reason="errors are back")
    views = project(log)

    [row] = views.board()
    assert row["resolved_at"] is None and row["status"] == Status.INVESTIGATING
    assert views.incident()["resolved_at"] is None
    resolution = views.breaches()["resolution"]
    assert resolution["open"] and resolution["actual_s"] == 10 * 3600
    assert views.metric("mttr")["count"] == 0
    assert "| Resolved | _not yet_ |" in views.draft()
    assert views.past() == views.board(include_closed=True)
    decision = decide(Resolve(**_envelope(50, "again")), views.state())
    assert isinstance(decision, list) and len(decision) == 1


def test_a_retracted_acknowledgement_is_missing_from_every_view(project: Any) -> None:
    log = declared()
    ack = log.do(3, Acknowledge)
    log.do(4, RetractEvent, target_event_id=ack, reason="acked the wrong page")
    views = project(log)

    [row] = views.board()
    assert row["acknowledged"] is False and row["acknowledged_at"] is None
    breach = views.breaches()["ack"]
    assert breach["open"] and breach["actual_s"] == 10 * 3600
    assert views.metric("mtta")["count"] == 0
    assert "| Acknowledged | _not yet_ |" in views.draft()
    assert views.past() == views.board(include_closed=True)
    decision = decide(Acknowledge(**_envelope(50, "ack-again")), views.state())
    assert isinstance(decision, list) and len(decision) == 1


def test_corrected_times_move_the_board_and_the_metrics_alike(project: Any) -> None:
    log = declared()
    ack = log.do(10, Acknowledge)
    resolve = log.do(60, Resolve)
    log.do(61, CorrectEvent, target_event_id=ack, corrected_occurred_at=at(4), reason="paged")
    log.do(62, CorrectEvent, target_event_id=resolve, corrected_occurred_at=at(45), reason="r")
    views = project(log)

    row = views.incident()
    assert (row["acknowledged_at"], row["resolved_at"]) == (at(4), at(45))
    assert row["age_s"] == 45 * 60
    assert views.metric("mtta")["max_s"] == 4 * 60
    assert views.metric("mttr")["max_s"] == 45 * 60
    assert "ack" not in views.breaches()  # 4 min against a 15 min target
    draft = views.draft()
    assert "| Acknowledged | 2026-11-01 12:04:00Z (corrected) |" in draft
    assert "| Resolved | 2026-11-01 12:45:00Z (corrected) |" in draft
    [past] = views.past()
    assert (past["acknowledged_at"], past["resolved_at"]) == (at(4), at(45))


def test_a_retracted_correction_restores_the_recorded_time(project: Any) -> None:
    log = declared()
    ack = log.do(10, Acknowledge)
    fix = log.do(11, CorrectEvent, target_event_id=ack, corrected_occurred_at=at(4), reason="r")
    log.do(12, RetractEvent, target_event_id=fix, reason="it was 12:10 after all")
    views = project(log)

    [timeline_ack] = [e for e in queries.timeline(views.cur, INC) if e["event_id"] == ack]
    assert timeline_ack["effective_at"] == timeline_ack["occurred_at"] == at(10)
    assert views.incident()["acknowledged_at"] == at(10)
    assert views.metric("mtta")["max_s"] == 10 * 60
    assert "| Acknowledged | 2026-11-01 12:10:00Z |" in views.draft()


def test_comms_after_the_resolution_keep_it_resolved_without_a_clock(project: Any) -> None:
    log = declared()
    log.do(
        5,
        SendComms,
        audience=Audience.STATUS_PAGE,
        kind=CommsKind.INITIAL,
        message="Investigating",
        status=Status.IDENTIFIED,
        next_update_at=at(35),
    )
    log.do(30, Resolve)
    log.do(
        32,
        SendComms,
        audience=Audience.STATUS_PAGE,
        kind=CommsKind.RESOLUTION,
        message="Resolved; we keep watching",
        status=Status.MONITORING,
        next_update_at=at(90),
    )
    views = project(log)

    row = views.incident()
    assert (row["status"], row["next_update_at"], row["last_comms_at"]) == (
        "resolved",
        None,
        at(32),
    )
    assert "update_cadence" not in views.breaches()
    assert views.board() == []  # off the board of open incidents


def test_a_closed_incident_shows_as_closed(project: Any) -> None:
    log = declared()
    log.do(30, Resolve)
    log.do(90, Reopen, reason="errors are back")
    log.do(100, Resolve)
    log.do(200, Close)
    views = project(log)

    assert views.board() == []
    [row] = views.board(include_closed=True)
    assert row["status"] == "closed" and row["closed_at"] == at(200)
    assert [r["incident_id"] for r in views.board(status="closed")] == [INC]
    assert views.board(status="resolved") == []
    assert views.incident()["status"] == "closed"
    assert "| Status | closed (phase resolved) |" in views.draft()
    assert views.past() == [row]
    assert views.state().status is Status.RESOLVED  # the public status stays resolved


def _envelope(minute: float, event_id: str) -> dict[str, Any]:
    return {
        "incident_id": INC,
        "event_id": event_id,
        "occurred_at": at(minute),
        "actor": "bob@example.com",
        "source": Source.CLI,
    }


def test_a_file_of_schema_version_3_gets_the_impact_start(tmp_path: Path) -> None:
    """Version 4 added `impact_started_at`: a version 3 file folds its incidents again."""
    log = Log()
    log.do(0, Declare, "declare", title="t", severity=Severity.P1, impact_started_at=at(-5))
    path = tmp_path / "v3.duckdb"
    con = open_database(path)
    Projector(con, None).apply(log.stored, log.stored[-1].seq)
    con.execute("DROP VIEW status_board")
    for column in ("impact_started_at", *SINCE_5):
        con.execute(f"ALTER TABLE incidents DROP COLUMN {column}")
    con.execute("UPDATE incidents SET state = ?", [b'{"incident_id":"INC-ONETRUTH"}'])
    con.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    con.execute(VIEWS)
    con.close()

    con = open_database(path)
    Projector(con, None)
    assert con.execute("SELECT impact_started_at FROM incidents").fetchall() == [(at(-5),)]
    [(version,)] = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    assert version == str(SCHEMA_VERSION)
    con.close()


def test_a_file_of_schema_version_1_is_folded_again(tmp_path: Path) -> None:
    """An older file keeps its events; the projector folds them again with today's rules."""
    log = declared()
    ack = log.do(10, Acknowledge)
    log.do(11, CorrectEvent, target_event_id=ack, corrected_occurred_at=at(4), reason="r")
    log.do(30, Resolve)
    log.do(40, Close)
    path = tmp_path / "old.duckdb"
    con = open_database(path)
    Projector(con, None).apply(log.stored, log.stored[-1].seq)
    # What version 1 wrote: no declared_at/first_comms_at, times as recorded, closed shown as
    # resolved, states of the old shape.
    con.execute("DROP VIEW status_board")
    for column in ("declared_at", "first_comms_at", "impact_started_at", *SINCE_5):
        con.execute(f"ALTER TABLE incidents DROP COLUMN {column}")
    con.execute(
        "UPDATE incidents SET status = 'resolved', acknowledged_at = ?, state = ?",
        [at(10), b'{"incident_id":"INC-ONETRUTH","declared":true,"event_ids":["declare"]}'],
    )
    con.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    con.execute(VIEWS)  # as version 1 left them, over its columns
    con.close()

    con = open_database(path)
    projector = Projector(con, None)
    assert projector.checkpoint == len(log.stored)
    fresh = open_database(":memory:")
    Projector(fresh, None).apply(log.stored, log.stored[-1].seq)
    assert snapshot(con) == snapshot(fresh)
    [(version,)] = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
    assert version == str(SCHEMA_VERSION)
    row = queries.get_incident(con.cursor(), INC, NOW)
    assert row is not None and (row["status"], row["acknowledged_at"]) == ("closed", at(4))
    con.close()
    fresh.close()
