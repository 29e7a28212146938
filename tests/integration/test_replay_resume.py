"""An interrupted rebuild resumes from the shadow's checkpoint and ends equal to a fresh fold."""

from pathlib import Path

from tests_support import declare, fresh_fold, note, snapshot

from events.store import EventStore
from projections import rebuild as rebuilds
from projections.database import open_database
from services.write.handler import CommandHandler


async def test_rebuild_resumes_where_it_stopped(store: EventStore, tmp_path: Path) -> None:
    handler = CommandHandler(store)
    for n in range(6):
        incident_id = f"INC-RESUME{n}"
        await handler.handle(declare(incident_id))
        for k in range(5):
            await handler.handle(note(incident_id, f"{incident_id}-{k}"))
    last = await store.last_seq()
    shadow = tmp_path / "readmodels" / "incidents-next.duckdb"
    seen: list[int] = []

    # "Interrupted" half way: the shadow keeps what it committed and its checkpoint.
    stopped_at = await rebuilds.rebuild(store, shadow, last // 2, lambda p: seen.append(p.done_seq))
    assert stopped_at == last // 2
    resumed_from: list[int] = []
    done = await rebuilds.rebuild(store, shadow, None, lambda p: resumed_from.append(p.start_seq))
    assert done == last
    assert resumed_from and set(resumed_from) == {last // 2}  # did not start over

    con = open_database(shadow)
    try:
        assert snapshot(con) == await fresh_fold(store, tmp_path / "fresh.duckdb")
    finally:
        con.close()
