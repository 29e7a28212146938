"""The golden corpus in a real log: its bytes stored as they were, then read back, appended to,
projected and verified by this version (tests/golden/events/README.md)."""

import json
from pathlib import Path

import msgspec
from nats.aio.client import Client as NATS
from tests_support import as_recorded, fresh_fold, note

from events.chain import verify
from events.incident import fold
from events.store import EventStore
from events.subjects import ALL_INCIDENTS, event_subject
from projections import queries
from projections.database import open_database
from services.write.handler import Accepted, CommandHandler

GOLDEN = Path(__file__).parents[1] / "golden" / "events"
RECORDS = (GOLDEN / "events.jsonl").read_bytes().splitlines()
FOLDED = json.loads((GOLDEN / "folded.json").read_text())


async def _stored_as_they_were(nc: NATS) -> None:
    js = nc.jetstream()
    for raw in RECORDS:
        doc = json.loads(raw)
        await js.publish(event_subject(doc["incident_id"], doc["type"]), raw)


async def test_old_records_load_fold_and_take_new_events(
    nc: NATS, store: EventStore, tmp_path: Path
) -> None:
    await _stored_as_they_were(nc)
    assert [raw for _, raw in await store.records(ALL_INCIDENTS)] == RECORDS
    for incident_id, expected in FOLDED.items():
        state = fold(s.event for s in (await store.load(incident_id)).events)
        found = {name: as_recorded(name, getattr(state, name), expected[name]) for name in expected}
        assert json.loads(msgspec.json.encode(found, order="sorted")) == expected
    # The chain of an old incident goes on with this version's events.
    handler = CommandHandler(store)
    result = await handler.handle(note("INC-GOLDEN0002", "golden-next"))
    assert isinstance(result, Accepted)
    heads = [json.loads(r) for r in RECORDS if json.loads(r)["incident_id"] == "INC-GOLDEN0002"]
    assert result.events[0].event.prev_hash == heads[-1]["hash"]
    assert verify(await store.records(ALL_INCIDENTS)) == []
    # The read models take old records as they take new ones.
    tables = await fresh_fold(store, tmp_path / "golden.duckdb")
    assert len(tables["events"]) == len(RECORDS) + 1
    con = open_database(tmp_path / "golden.duckdb")
    rows = queries.timeline(con.cursor(), "INC-GOLDEN0002")
    con.close()
    assert [row["principal"] for row in rows] == [None] * len(rows)  # none recorded then
    assert rows[-1]["body"]["schema_version"] == 1
