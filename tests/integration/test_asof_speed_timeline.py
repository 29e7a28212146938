"""The timeline read with its times as epoch microseconds (`queries.timeline`) answers the same
instants, in UTC, encoded as before; an as-of without amendments or action items, which skips
those queries, answers what the projection shows."""

from collections.abc import Iterator
from pathlib import Path

import duckdb
import msgspec
import pytest

from events.policy import DEFAULT_POLICY
from events.records import Stored
from events.schema import decode, type_name
from projections import action_items, asof, queries
from projections.database import open_database
from projections.projector import Projector

GOLDEN = Path(__file__).parents[1] / "golden" / "events" / "events.jsonl"
LOG = [
    Stored(seq, decode(raw), raw)
    for seq, raw in enumerate(GOLDEN.read_bytes().splitlines(), start=1)
]


@pytest.fixture
def cur() -> Iterator[duckdb.DuckDBPyConnection]:
    con = open_database(":memory:")
    Projector(con, None).apply(LOG, LOG[-1].seq)
    yield con.cursor()
    con.close()


def test_timeline_times_are_the_recorded_instants_in_utc(cur: duckdb.DuckDBPyConnection) -> None:
    for incident_id in sorted({s.event.incident_id for s in LOG}):
        rows = queries.timeline(cur, incident_id)
        mine = [s for s in LOG if s.event.incident_id == incident_id]
        assert [r["seq"] for r in rows] == [s.seq for s in mine]
        for row, stored in zip(rows, mine, strict=True):
            e = stored.event
            assert row["occurred_at"] == e.occurred_at
            assert row["recorded_at"] == (e.recorded_at or e.occurred_at)
            for column in ("occurred_at", "effective_at", "recorded_at"):
                assert row[column].utcoffset().total_seconds() == 0
                # The wire form: an ISO time ending in Z, as the zoned values encoded.
                wire = msgspec.json.encode(row[column]).decode()
                assert wire.endswith('Z"'), wire


def test_as_of_skipping_queries_equals_its_projection(cur: duckdb.DuckDBPyConnection) -> None:
    """Incidents without corrections or retractions, and without action items, are in the
    corpus: their as-of (which reads neither back) equals the projection."""
    instant = max(s.event.recorded_at or s.event.occurred_at for s in LOG)
    incidents = sorted({s.event.incident_id for s in LOG})

    def has(incident_id: str, kind: str) -> bool:
        return any(
            s.event.incident_id == incident_id and type_name(s.event).startswith(kind) for s in LOG
        )

    assert any(not has(i, "event.") for i in incidents), "no incident without amendments"
    assert any(not has(i, "action_item.") for i in incidents), "no incident without items"
    for incident_id in incidents:
        then = asof.incident(LOG, instant, incident_id, DEFAULT_POLICY)
        live = queries.incident_with_breaches(cur, incident_id, instant, DEFAULT_POLICY)
        if live is None:
            assert then is None
            continue
        assert then is not None
        assert then.incident == live
        assert then.events == queries.timeline(cur, incident_id)
        assert then.action_items == action_items.of_incident(cur, incident_id, instant)
