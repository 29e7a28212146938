"""As-of folded in memory (`projections.asof`) equals the projector's read models of the same
events: the incident with its breaches, its timeline, its action items, and the status board, at
every instant of the golden corpus (every event type) and of amendments of amendments."""

import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from events.policy import DEFAULT_POLICY
from events.records import Stored
from events.schema import AnyEvent, EventCorrected, EventRetracted, Source, decode, encode
from projections import action_items, asof, breaches, queries
from projections.database import open_database
from projections.projector import Projector

GOLDEN = Path(__file__).parents[1] / "golden" / "events" / "events.jsonl"


def golden() -> list[Stored]:
    lines = GOLDEN.read_bytes().splitlines()
    return [Stored(seq, decode(raw), raw) for seq, raw in enumerate(lines, start=1)]


def amendments(after: list[Stored]) -> list[Stored]:
    """A note's time corrected twice, the later correction retracted: the earlier one holds."""
    last = after[-1].event.recorded_at
    assert last is not None

    def at(minutes: int) -> dict[str, Any]:
        moment = last + timedelta(minutes=minutes)
        return {
            "incident_id": "INC-GOLDEN0001",
            "occurred_at": moment,
            "recorded_at": moment,
            "actor": "tester",
            "source": Source.API,
        }

    made: list[AnyEvent] = [
        EventCorrected(
            event_id="t-correct-1",
            target_event_id="golden-note",
            corrected_occurred_at=last - timedelta(hours=3),
            reason="typed late",
            **at(1),
        ),
        EventCorrected(
            event_id="t-correct-2",
            target_event_id="golden-note",
            corrected_occurred_at=last - timedelta(hours=2),
            reason="typed later",
            **at(2),
        ),
        EventRetracted(
            event_id="t-retract", target_event_id="t-correct-2", reason="wrong", **at(3)
        ),
    ]
    return [Stored(len(after) + n, e, encode(e)) for n, e in enumerate(made, start=1)]


LOG = golden()
LOG += amendments(LOG)
INSTANTS = sorted({s.event.recorded_at for s in LOG if s.event.recorded_at is not None})
INCIDENTS = sorted({s.event.incident_id for s in LOG})


@pytest.fixture
def projected() -> Iterator[Any]:
    opened: list[duckdb.DuckDBPyConnection] = []

    def at(instant: datetime) -> duckdb.DuckDBPyConnection:
        known = asof.recorded_by(LOG, instant)
        con = open_database(":memory:")
        opened.append(con)
        if known:
            Projector(con, None).apply(known, known[-1].seq)
        return con.cursor()

    yield at
    for con in opened:
        con.close()


@pytest.mark.parametrize("instant", [*INSTANTS[::3], INSTANTS[-1]], ids=str)
def test_an_incident_as_of_equals_its_projection(projected: Any, instant: datetime) -> None:
    cur = projected(instant)
    for incident_id in INCIDENTS:
        then = asof.incident(LOG, instant, incident_id, DEFAULT_POLICY)
        live = queries.incident_with_breaches(cur, incident_id, instant, DEFAULT_POLICY)
        if live is None:
            assert then is None, incident_id
            continue
        assert then is not None, incident_id
        assert then.incident == live
        assert then.events == queries.timeline(cur, incident_id)
        assert then.action_items == action_items.of_incident(cur, incident_id, instant)


def test_amended_times_and_retractions_reach_the_timeline() -> None:
    then = asof.incident(LOG, INSTANTS[-1], "INC-GOLDEN0001", DEFAULT_POLICY)
    assert then is not None
    by_id = {e["event_id"]: e for e in then.events}
    [kept] = [s.event for s in LOG if s.event.event_id == "t-correct-1"]
    assert isinstance(kept, EventCorrected)
    assert by_id["golden-note"]["effective_at"] == kept.corrected_occurred_at
    assert by_id["t-correct-2"]["retracted"] and by_id["golden-note-2"]["retracted"]
    assert not by_id["t-correct-1"]["retracted"]


@pytest.mark.parametrize("instant", [INSTANTS[0], INSTANTS[len(INSTANTS) // 2], INSTANTS[-1]])
def test_the_board_as_of_equals_the_projected_board(projected: Any, instant: datetime) -> None:
    cur = projected(instant)
    for closed in (False, True):
        assert asof.board(LOG, instant, include_closed=closed) == queries.list_incidents(
            cur, instant, include_closed=closed
        )


def test_reconstructions_leave_nothing_behind() -> None:
    """The scratch databases are rolled back: an incident folded before is unknown after."""
    instant = INSTANTS[-1]
    first = [s for s in LOG if s.event.incident_id == "INC-GOLDEN0004"]
    assert asof.incident(first, instant, "INC-GOLDEN0004", DEFAULT_POLICY) is not None
    assert asof.incident([], instant, "INC-GOLDEN0004", DEFAULT_POLICY) is None
    assert asof.board([], instant, include_closed=True) == []


def test_the_breach_query_reads_only_the_event_types_it_names() -> None:
    """An as-of writes only `breaches.EVENT_TYPES` (and amendments) into its scratch tables."""
    named = set(re.findall(r"'([a-z_]+\.[a-z_]+)'", breaches._BREACHES))
    assert named == set(breaches.EVENT_TYPES)
