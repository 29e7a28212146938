"""The fault suite's checks can fail: each catches the damage it exists for.

A real nats-server and real DuckDB files: a log written through the command handler, projected
into a file, then damaged one way at a time (a lost ack, an event stored twice under another
message id, a read-model row changed).
"""

from pathlib import Path

import duckdb
from invariants import check_log, read_model_differences
from nats.aio.client import Client as NATS
from tests_support import declare, note

from events.store import EventStore
from events.subjects import new_incident_id
from projections.rebuild import rebuild
from services.write.handler import Accepted, CommandHandler


async def _written(store: EventStore) -> tuple[str, set[str]]:
    handler = CommandHandler(store)
    incident_id = new_incident_id()
    acked: set[str] = set()
    for command in (declare(incident_id), note(incident_id, f"{incident_id}-n1")):
        result = await handler.handle(command)
        assert isinstance(result, Accepted)
        acked.update(e.event.event_id for e in result.events)
    return incident_id, acked


async def test_a_sound_log_and_its_fold_pass(
    nats_url: str, store: EventStore, tmp_path: Path
) -> None:
    _, acked = await _written(store)
    check = await check_log(nats_url, acked)
    check.assert_sound()
    assert check.events == len(acked) == 2
    live = tmp_path / "live.duckdb"
    await rebuild(store, live)
    assert await read_model_differences(nats_url, live, tmp_path) == []


async def test_a_lost_ack_and_a_second_copy_are_found(
    nats_url: str, nc: NATS, store: EventStore
) -> None:
    incident_id, acked = await _written(store)
    # The first event again under another message id: what a retry without dedup would store.
    first = await nc.jetstream().get_msg("INCIDENTS", 1)
    assert first.subject and first.subject.startswith(f"incidents.{incident_id}.")
    await nc.jetstream().publish(first.subject, first.data or b"", headers={"Nats-Msg-Id": "x"})
    check = await check_log(nats_url, acked | {"never-stored"})
    assert check.missing == ["never-stored"]
    assert check.duplicates == {f"decl-{incident_id}": 2}
    assert check.chain_breaks, "a copy appended after the chain's head does not link"


async def test_a_changed_read_model_row_is_a_difference(
    nats_url: str, store: EventStore, tmp_path: Path
) -> None:
    incident_id, _ = await _written(store)
    live = tmp_path / "live.duckdb"
    await rebuild(store, live)
    with duckdb.connect(str(live)) as con:
        con.execute("UPDATE incidents SET title = 'forged' WHERE incident_id = ?", [incident_id])
    [difference] = await read_model_differences(nats_url, live, tmp_path)
    assert difference.startswith("incidents: 1 live rows vs 1 fresh"), difference
    assert "forged" in difference
