"""The projector: projections equal a fresh fold of the log, after restarts and crashes."""

import asyncio
import os
import signal
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest
from tests_support import INCIDENTS, T0, declare, envelope, fresh_fold, note, snapshot

from events import crash_points
from events.commands import (
    Acknowledge,
    CompleteMitigation,
    CorrectEvent,
    Resolve,
    RetractEvent,
    SendComms,
    StartMitigation,
)
from events.incident import Incident, fold
from events.records import Stored
from events.schema import (
    AlertFired,
    AlertResolved,
    AnyEvent,
    Audience,
    CommsKind,
    MitigationAction,
    Outcome,
    encode,
)
from events.store import EventStore
from events.subjects import new_incident_id
from projections.database import open_database
from projections.projector import Projector
from services.natsserver import EmbeddedNatsServer
from services.write.handler import Accepted, CommandHandler


async def workload(handler: CommandHandler, incidents: int = 12) -> None:
    """A mixed history: acks, mitigations, comms, notes, corrections, retractions, resolutions."""
    for n in range(incidents):
        i = new_incident_id()
        steps: list[Any] = [declare(i, commander="dan@example.com" if n % 2 else None)]
        steps.append(Acknowledge(**envelope(i, f"{i}-ack", 3 + n)))
        steps.append(
            StartMitigation(
                **envelope(i, f"{i}-m", 10), mitigation_id="m1", action=MitigationAction.ROLLBACK
            )
        )
        steps.append(
            CompleteMitigation(
                **envelope(i, f"{i}-mc", 20 + n), mitigation_id="m1", outcome=Outcome.SUCCEEDED
            )
        )
        steps.append(
            SendComms(
                **envelope(i, f"{i}-c", 12),
                audience=Audience.STATUS_PAGE,
                kind=CommsKind.INITIAL,
                message="Investigating",
            )
        )
        steps.append(note(i, f"{i}-n"))
        if n % 3 == 0:
            steps.append(
                CorrectEvent(
                    **envelope(i, f"{i}-fix", 30),
                    target_event_id=f"{i}-ack",
                    corrected_occurred_at=T0 + timedelta(minutes=1),
                    reason="ack was given on the bridge call before it was typed",
                )
            )
        if n % 4 == 1:
            steps.append(
                RetractEvent(
                    **envelope(i, f"{i}-rx", 31), target_event_id=f"{i}-n", reason="wrong incident"
                )
            )
        if n % 2 == 0:
            steps.append(Resolve(**envelope(i, f"{i}-r", 60 + n)))
        for step in steps:
            assert isinstance(await handler.handle(step), Accepted), step


async def follow_until_caught_up(projector: Projector, store: EventStore) -> None:
    task = asyncio.create_task(projector.run())
    try:
        await projector.wait(await store.last_seq())
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_projection_equals_fresh_fold_and_the_domain_fold(
    store: EventStore, tmp_path: Path
) -> None:
    await workload(CommandHandler(store))
    con = open_database(tmp_path / "live.duckdb")
    projector = Projector(con, store)
    await follow_until_caught_up(projector, store)
    assert snapshot(con) == await fresh_fold(store, tmp_path / "fresh.duckdb")

    for incident_id, state in con.execute("SELECT incident_id, state FROM incidents").fetchall():
        loaded = await store.load(incident_id)
        assert msgspec.json.decode(state, type=Incident) == fold(s.event for s in loaded.events)
    corrected = con.execute(
        "SELECT count(*) FROM events WHERE effective_at <> occurred_at"
    ).fetchone()
    assert corrected == (4,)
    assert con.execute("SELECT count(*) FROM events WHERE retracted").fetchone() == (3,)


async def test_restart_resumes_from_the_checkpoint(store: EventStore, tmp_path: Path) -> None:
    handler = CommandHandler(store)
    await workload(handler, incidents=4)
    path = tmp_path / "live.duckdb"
    con = open_database(path)
    await follow_until_caught_up(Projector(con, store), store)
    con.close()
    await workload(handler, incidents=4)
    con = open_database(path)
    again = Projector(con, store)
    assert again.checkpoint > 0
    await follow_until_caught_up(again, store)
    assert snapshot(con) == await fresh_fold(store, tmp_path / "fresh.duckdb")


async def test_an_applied_batch_applied_again_changes_nothing(
    store: EventStore, tmp_path: Path
) -> None:
    await workload(CommandHandler(store), incidents=3)
    events = [s async for batch in store.read() for s in batch]
    con = open_database(tmp_path / "db.duckdb")
    projector = Projector(con, store)
    last = await store.last_seq()
    projector.apply(events, last)
    before = snapshot(con)
    assert projector.apply(events, last) == last
    assert projector.apply(events[:5], events[4].seq) == last
    assert snapshot(con) == before


@pytest.mark.parametrize("point", ["before_write", "after_write", "after_commit"])
async def test_crash_points_resume_to_the_same_projection(
    store: EventStore, nats_server: EmbeddedNatsServer, tmp_path: Path, point: str
) -> None:
    await workload(CommandHandler(store), incidents=6)
    data = tmp_path / "var"
    env = {**os.environ, "INCIDENTS_NATS_URL": nats_server.url, "INCIDENTS_DATA_DIR": str(data)}

    def project(**extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [INCIDENTS, "project", "--until-caught-up"],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=60,
        )

    crashed = await asyncio.to_thread(project, **{crash_points.ENV: point})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert f"crash point {point}" in crashed.stderr
    resumed = await asyncio.to_thread(project)
    assert resumed.returncode == 0, resumed.stderr
    con = duckdb.connect(str(data / "incidents.duckdb"), read_only=True)
    try:
        assert snapshot(con) == await fresh_fold(store, tmp_path / "fresh.duckdb")
    finally:
        con.close()


def test_an_alert_that_fires_again_has_no_end_in_the_alerts_table(tmp_path: Path) -> None:
    """Fire, resolve, fire: the alert's row says firing, from the new start, with no end (the
    end of the first occurrence would make a live alert look over)."""
    starts = [T0, T0 + timedelta(minutes=30)]
    ends = T0 + timedelta(minutes=10)
    events: list[AnyEvent] = [
        AlertFired(**envelope("INC-REFIRE", "f1", 0), fingerprint="fp", starts_at=starts[0]),
        AlertResolved(
            **envelope("INC-REFIRE", "r1", 10), fingerprint="fp", starts_at=starts[0], ends_at=ends
        ),
        AlertFired(**envelope("INC-REFIRE", "f2", 30), fingerprint="fp", starts_at=starts[1]),
    ]
    con = open_database(tmp_path / "models.duckdb")
    projector = Projector(con, None)
    # One batch and one batch per event: the row is folded within a batch and across batches.
    projector.apply([Stored(1, events[0], encode(events[0]))], 1)
    projector.apply([Stored(s, e, encode(e)) for s, e in enumerate(events[1:], start=2)], 3)
    rows = con.execute(
        "SELECT firing, starts_at, ends_at, first_seq, last_seq FROM alerts "
        "WHERE incident_id = 'INC-REFIRE'"
    ).fetchall()
    con.close()
    assert rows == [(True, starts[1], None, 1, 3)]
