"""Builders and helpers shared by tests (kept out of conftest so tests can import them)."""

import asyncio
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypedDict

import duckdb
import msgspec

from events.commands import AddNote, Declare
from events.records import Stored
from events.schema import Severity, Source
from events.store import EventStore
from projections.database import open_database
from projections.projector import Projector
from services.auth import Role, new_token

# The `incidents` console script of this environment.
INCIDENTS = str(Path(sys.executable).parent / "incidents")
# One token per role, for services started with a tokens file (the `guarded` fixture).
TOKENS = {role: new_token() for role in Role}

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def declare(incident_id: str, event_id: str = "", commander: str | None = None) -> Declare:
    return Declare(
        incident_id=incident_id,
        event_id=event_id or f"decl-{incident_id}",
        occurred_at=T0,
        actor="alice@example.com",
        source=Source.CLI,
        title="Checkout 5xx",
        severity=Severity.P1,
        commander=commander,
    )


def note(incident_id: str, event_id: str, text: str = "looking") -> AddNote:
    return AddNote(
        incident_id=incident_id,
        event_id=event_id,
        occurred_at=T0 + timedelta(minutes=1),
        actor="bob@example.com",
        source=Source.API,
        text=text,
    )


# What a producer (a synthetic checker) posts to `POST /v1/events` or NATS `intake.events`.
PRODUCED_AT = "2026-11-20T10:00:00Z"


def producer_event(
    kind: str, incident_id: str, event_id: str, occurred_at: str = PRODUCED_AT, **fields: Any
) -> dict[str, Any]:
    return {
        "type": kind,
        "event_id": event_id,
        "incident_id": incident_id,
        "occurred_at": occurred_at,
        "actor": "synthetic-checker",
        "source": "synthetic",
        **fields,
    }


def producer_note(
    incident_id: str,
    event_id: str,
    text: str = "probe still failing",
    occurred_at: str = PRODUCED_AT,
) -> dict[str, Any]:
    return producer_event("incident.note_added", incident_id, event_id, occurred_at, text=text)


def producer_declared(
    incident_id: str,
    event_id: str,
    title: str = "Login probe failing",
    occurred_at: str = PRODUCED_AT,
) -> dict[str, Any]:
    return producer_event(
        "incident.declared", incident_id, event_id, occurred_at, title=title, severity="P2"
    )


FIXTURES = Path(__file__).parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def snapshot(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    tables = {
        "events": "SELECT * FROM events ORDER BY seq",
        "incidents": "SELECT * FROM incidents ORDER BY incident_id",
        "alerts": "SELECT * FROM alerts ORDER BY incident_id, fingerprint",
        "checkpoint": "SELECT seq FROM checkpoint",
    }
    return {name: con.execute(sql).fetchall() for name, sql in tables.items()}


async def fresh_fold(store: EventStore, path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The read models built from scratch, in one pass over the whole log."""
    con = open_database(path)
    projector = Projector(con, store)
    events: list[Stored] = [s async for batch in store.read() for s in batch]
    projector.apply(events, await store.last_seq())
    result = snapshot(con)
    con.close()
    return result


class Origin(TypedDict):
    """Which incident, who, through which channel: the envelope fields shared by a batch."""

    incident_id: str
    actor: str
    source: Source


class Envelope(Origin):
    """All the envelope fields a command (or event) requires; `**` it into the constructor."""

    event_id: str
    occurred_at: datetime


def envelope(incident_id: str, event_id: str, minutes: int) -> Envelope:
    """Command envelope fields, `minutes` after T0."""
    return {
        "incident_id": incident_id,
        "event_id": event_id,
        "occurred_at": T0 + timedelta(minutes=minutes),
        "actor": "carol@example.com",
        "source": Source.CLI,
    }


def as_role(role: Role) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


async def run_cli(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    # A service under test may run on this event loop: the blocking subprocess goes to a thread.
    return await asyncio.to_thread(
        subprocess.run,
        [INCIDENTS, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def one_line_error(done: subprocess.CompletedProcess[str], code: int) -> str:
    """A refusal: exit `code` and one `error: ...` line on stderr, never a traceback."""
    assert done.returncode == code, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in done.stderr
    return lines[0]


def as_recorded(name: str, value: object, expected: Any) -> object:
    """An attribute in the shape `folded.json` recorded it: items that gained fields since (action
    items a status, with `done` now a property of it; mitigations `automated` and `event_id`)
    are compared on the keys recorded."""
    if isinstance(value, tuple) and value and isinstance(value[0], msgspec.Struct):
        return [
            {key: getattr(item, key) for key in recorded}
            for item, recorded in zip(value, expected, strict=True)
        ]
    return value


def apt_install(packages: tuple[str, ...], timeout_s: float = 1200) -> str | None:
    """Install Debian packages a test needs (as root, where apt-get exists), so a fresh CI
    machine runs the test rather than skipping it; None when installed, else why not."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return f"not root: install them with `apt-get install {' '.join(packages)}`"
    if shutil.which("apt-get") is None:
        return f"no apt-get here to install {', '.join(packages)}"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *packages]
    done = None
    for step in (install, ["apt-get", "update", "-q"], install):  # the lists may be stale
        done = subprocess.run(step, capture_output=True, text=True, env=env, timeout=timeout_s)
        if done.returncode == 0 and step is install:
            return None
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:] if done else []
    return f"`{' '.join(install)}` failed: {' / '.join(tail)}"
