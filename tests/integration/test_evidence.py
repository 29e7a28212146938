"""Evidence against a real nats-server: bundles verify offline, and no flipped byte goes unnoticed.

Two places are tampered with: an exported bundle (its verify.py must name the event) and the
server's own message block file (`incidents verify` must see it after a restart).

What nats-server 2.15 does with a flipped payload byte in a block file: with its index
(`index.db`) intact it starts normally, still counts the record in the stream's state, but never
delivers it (consumers skip it, direct get answers 404), silently: the log shows a gap, and the
incident's next event no longer links. With the index lost (a crash), it rebuilds the state from
the blocks and cuts the block at the damaged record: that record and every later one are gone,
`last_seq` moves back, still without a word in its log; the chains that remain are intact, so
only a sequence known to have been written (the projector's checkpoint, a manifest) shows it.
"""

import asyncio
import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path

import msgspec
import nats
import pytest
from nats.aio.client import Client as NATS
from tests_support import T0, Origin, declare, note

from events.chain import seal, verify
from events.commands import Acknowledge, AnyCommand, ChangeSeverity, Resolve, SendComms
from events.records import Stored
from events.schema import (
    Audience,
    CommsKind,
    IncidentNoteAdded,
    Severity,
    Source,
)
from events.store import EventStore
from events.stream import StreamSettings, ensure_stream, event_ids_config, stream_config
from projections import retention
from services import evidence
from services.errors import ErrorKind
from services.natsserver import EmbeddedNatsServer
from services.write.handler import Accepted, CommandHandler

BUNDLE_FLIPS = 200
STORE_FLIPS = 16  # server stopped cleanly: its index (index.db) kept
CRASH_FLIPS = 6  # index.db lost as after a crash: the server rebuilds from the block files
REASONS = (
    "not a JSON event",
    "hash does not match the stored bytes",
    "prev_hash does not link to the previous event",
    "incident not in the manifest",
)


async def _incident(handler: CommandHandler, incident_id: str, words: str) -> None:
    """A declared incident with a commander, notes (non-ASCII, quotes, escapes), comms..."""
    common: Origin = {
        "incident_id": incident_id,
        "actor": "carol@example.com",
        "source": Source.API,
    }
    commands: list[AnyCommand] = [
        declare(incident_id, commander="bob@example.com"),
        Acknowledge(event_id=f"{incident_id}-ack", occurred_at=T0, **common),
        *(
            note(incident_id, f"{incident_id}-n{n}", text=f"{word} naïve “quoted” \\ {n}")
            for n, word in enumerate(words.split())
        ),
        ChangeSeverity(event_id=f"{incident_id}-sev", occurred_at=T0, to=Severity.P0, **common),
        SendComms(
            event_id=f"{incident_id}-comms",
            occurred_at=T0,
            audience=Audience.STATUS_PAGE,
            kind=CommsKind.INITIAL,
            message='We are "investigating" ☃',
            **common,
        ),
        Resolve(event_id=f"{incident_id}-res", occurred_at=T0, summary="rolled back", **common),
    ]
    for command in commands:
        assert isinstance(await handler.handle(command), Accepted)


async def _everything(store: EventStore) -> list[Stored]:
    return [s async for batch in store.read() for s in batch]


def _run_verifier(bundle: Path) -> subprocess.CompletedProcess[str]:
    # The bundle's own copy, on a bare interpreter: it may use the standard library only.
    return subprocess.run(
        [sys.executable, "-I", str(bundle / "verify.py"), str(bundle)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=bundle,
    )


async def test_bundle_holds_the_stored_bytes_and_verifies_offline(
    store: EventStore, tmp_path: Path
) -> None:
    handler = CommandHandler(store)
    await _incident(handler, "INC-EVID01", "alpha beta gamma")
    await _incident(handler, "INC-EVID02", "delta")
    await handler.handle(note("INC-EVID01", "INC-EVID01-late", text="after the other one"))
    stored = (await store.load("INC-EVID01")).events

    out = tmp_path / "bundle"
    manifest = await evidence.export(
        evidence.Log(store.nc), evidence.Selection(incident_id="INC-EVID01"), out, "auditor@x"
    )
    lines = (out / "events.jsonl").read_bytes().split(b"\n")
    assert lines == [s.raw for s in stored] + [b""]  # byte for byte, in stream order
    assert (out / "sequences.txt").read_text().split() == [str(s.seq) for s in stored]
    assert (out / "verify.py").read_bytes() == evidence.verifier_source()

    written = json.loads((out / "manifest.json").read_bytes())
    assert written["stream"] == "INCIDENTS"
    assert (written["first_seq"], written["last_seq"]) == (stored[0].seq, stored[-1].seq)
    assert written["incidents"] == {
        "INC-EVID01": {
            "events": len(stored),
            "first_seq": stored[0].seq,
            "last_seq": stored[-1].seq,
            "prev_hash": "",
            "head": stored[-1].event.hash,
        }
    }
    assert written["files"] == {
        name: hashlib.sha256((out / name).read_bytes()).hexdigest()
        for name in ("events.jsonl", "sequences.txt", "verify.py", "README.txt")
    }
    assert written["tool"] == f"incident-timeline {version('incident-timeline')}"
    assert written["exported_by"] == "auditor@x"
    assert datetime.fromisoformat(written["exported_at"]) == manifest.exported_at

    done = _run_verifier(out)
    assert (done.returncode, done.stdout.splitlines()[-1]) == (0, f"{out}: intact"), done
    # README step 1 with standard tools, as written there.
    sums = subprocess.run(
        ["bash", "-c", evidence.SUMS_COMMAND], cwd=out, capture_output=True, text=True
    )
    assert sums.returncode == 0 and sums.stdout.count(": OK") == 4, sums


async def test_export_by_recording_time_takes_whole_incidents(
    store: EventStore, tmp_path: Path
) -> None:
    handler = CommandHandler(store)
    await _incident(handler, "INC-OLD001", "one")
    between = datetime.now(UTC)
    await _incident(handler, "INC-NEW001", "two")
    await handler.handle(note("INC-OLD001", "INC-OLD001-late", text="late"))
    log = evidence.Log(store.nc)

    since = await evidence.export(log, evidence.Selection(since=between), tmp_path / "s", "me")
    old = (await store.load("INC-OLD001")).events
    assert set(since.incidents) == {"INC-OLD001", "INC-NEW001"}
    assert since.incidents["INC-OLD001"].events == len(old)  # whole, not only the late note
    assert since.incidents["INC-OLD001"].first_seq == old[0].seq == 1
    until = await evidence.export(log, evidence.Selection(until=between), tmp_path / "u", "me")
    assert set(until.incidents) == {"INC-OLD001"}
    assert _run_verifier(tmp_path / "s").returncode == 0
    assert _run_verifier(tmp_path / "u").returncode == 0

    future = evidence.Selection(since=between + timedelta(days=1))
    try:
        await evidence.export(log, future, tmp_path / "none", "me")
        raise AssertionError("an empty selection must not make a bundle")
    except evidence.EvidenceError as exc:
        assert exc.kind is ErrorKind.NOT_FOUND
    assert not (tmp_path / "none").exists()


def _flip_bundle_lines(bundle: Path, flips: int, seed: int) -> Counter[str]:
    """Flip one byte of one event line per trial; returns how each flip was reported."""
    rng = random.Random(seed)
    pristine = (bundle / "events.jsonl").read_bytes()
    lines = pristine.split(b"\n")[:-1]
    seqs = (bundle / "sequences.txt").read_text().split()
    event_ids = [json.loads(line)["event_id"] for line in lines]
    outcomes: Counter[str] = Counter()
    for trial in range(flips):
        index = rng.randrange(len(lines))
        tampered = bytearray(lines[index])
        position = rng.randrange(len(tampered))
        # Every other trial a single bit: mostly still valid JSON, so the hash must catch it.
        tampered[position] ^= 1 << rng.randrange(8) if trial % 2 else rng.randrange(1, 256)
        changed = [*lines[:index], bytes(tampered), *lines[index + 1 :]]
        (bundle / "events.jsonl").write_bytes(b"\n".join(changed) + b"\n")
        done = _run_verifier(bundle)
        at = re.compile(rf"\bseq {seqs[index]}[,:]")
        named = [line for line in done.stdout.split("\n") if at.search(line)]
        assert done.returncode == 1, (index, position, done.stdout)
        assert "events.jsonl: sha256" in done.stdout
        assert named, (index, position, done.stdout)  # the flipped event is named
        outcomes[next((r for r in REASONS if r in named[0]), named[0])] += 1
        outcomes["named with its event_id too"] += f"event {event_ids[index]}" in named[0]
    (bundle / "events.jsonl").write_bytes(pristine)
    return outcomes


async def test_every_flipped_byte_in_a_bundle_is_detected(
    store: EventStore, tmp_path: Path
) -> None:
    await _incident(CommandHandler(store), "INC-FLIP01", "red green blue cyan")
    out = tmp_path / "bundle"
    await evidence.export(
        evidence.Log(store.nc), evidence.Selection(incident_id="INC-FLIP01"), out, "me"
    )
    outcomes = await asyncio.to_thread(_flip_bundle_lines, out, BUNDLE_FLIPS, seed=20261125)
    named_by_id = outcomes.pop("named with its event_id too")
    assert sum(outcomes.values()) == BUNDLE_FLIPS
    assert _run_verifier(out).returncode == 0  # untouched again: passes
    print(
        f"\nbundle: {BUNDLE_FLIPS} flips, {BUNDLE_FLIPS} detected and named by seq "
        f"({named_by_id} also by event_id): {dict(outcomes)}"
    )


async def test_verify_log_names_records_the_server_delivers_but_do_not_hold(
    store: EventStore, nc: NATS, tmp_path: Path
) -> None:
    """Bytes written past the service (anyone with publish rights on the stream's subjects)."""
    handler = CommandHandler(store)
    await _incident(handler, "INC-GARBLE", "a")
    await _incident(handler, "INC-FORGED", "b")
    js = nc.jetstream()
    garbage = await js.publish("incidents.INC-GARBLE.incident.note_added", b'{"oops": \xff')
    await _incident(handler, "INC-INTACT", "c")
    [forged] = seal([_note("INC-FORGED", "forged")], (await store.load("INC-FORGED")).head_hash, T0)
    raw = msgspec.json.encode(forged).replace(b"forged text", b"Forged text")
    rewritten = await js.publish("incidents.INC-FORGED.incident.note_added", raw)

    report = await evidence.verify_log(evidence.Log(nc))
    assert not report.intact and report.missing == []
    assert [(b.incident_id, b.seq, b.event_id, b.reason) for b in report.breaks] == [
        ("INC-GARBLE", garbage.seq, "", "not a JSON event"),
        ("INC-FORGED", rewritten.seq, "forged", "hash does not match the stored bytes"),
    ]
    for incident_id in ("INC-GARBLE", "INC-FORGED"):
        try:
            await evidence.export(
                evidence.Log(nc), evidence.Selection(incident_id=incident_id), tmp_path / "x", "me"
            )
            refused = None
        except evidence.EvidenceError as exc:
            refused = exc
        if incident_id == "INC-GARBLE":  # it cannot be written as one line of an event
            assert (
                refused is not None
                and refused.kind is ErrorKind.CONFLICT
                and "seq" in refused.detail
            )
        else:  # copied as stored: the bundle's verifier shows the forgery
            assert refused is None
            done = _run_verifier(tmp_path / "x")
            assert done.returncode == 1 and f"seq {rewritten.seq}, event forged" in done.stdout
            shutil.rmtree(tmp_path / "x")


def _note(incident_id: str, event_id: str) -> IncidentNoteAdded:
    return IncidentNoteAdded(
        event_id=event_id,
        incident_id=incident_id,
        occurred_at=T0,
        actor="mallory",
        source=Source.CLI,
        text="forged text",
    )


LOST_HEAD = "ab" * 32  # the hash of an event that aged out


@pytest.mark.parametrize(
    ("first_seq", "retention_head", "outcome"),
    [
        (1, None, "break"),  # the stream never expired: a chain must start at GENESIS
        (101, None, "unanchored"),  # expired, nothing says what was lost: accepted, and said so
        (101, LOST_HEAD, "anchored"),  # expired, and a retention.advanced record names the head
        (101, "cd" * 32, "break"),  # ... a head the first retained event does not link to
    ],
)
async def test_verify_log_accepts_a_chain_cut_by_expiry_only_when_the_start_expired(
    nc: NATS, first_seq: int, retention_head: str | None, outcome: str
) -> None:
    orphans = [
        IncidentNoteAdded(
            event_id=f"orphan-{n}",
            incident_id="INC-ORPHAN",
            occurred_at=T0,
            actor="a",
            source=Source.CLI,
            text=f"note {n}",
        )
        for n in range(3)
    ]
    config = stream_config(StreamSettings())
    config.first_seq = first_seq  # what a stream whose first 100 records aged out shows
    await nc.jetstream().add_stream(config)
    await nc.jetstream().add_stream(event_ids_config(StreamSettings()))
    store = EventStore(nc)
    if retention_head is not None:
        record = retention.RetentionAdvanced(
            stream="INCIDENTS",
            first_seq_before=1,
            first_seq_after=first_seq,
            expired_records=first_seq - 1,
            expired_events=first_seq - 1,
            advanced_at=T0,
            expired={},
            heads={"INC-ORPHAN": retention.Head(seq=first_seq - 1, hash=retention_head)},
        )
        await nc.jetstream().publish(retention.SUBJECT, retention.encode(record))
    await store.append(seal(orphans, prev_hash=LOST_HEAD, recorded_at=T0), expected_seq=0)
    await _incident(CommandHandler(store), "INC-FRESH1", "x")  # from GENESIS: fine either way
    report = await evidence.verify_log(evidence.Log(nc))
    strict = await evidence.verify_log(evidence.Log(nc), strict=True)

    # Strict: only a chain that starts at GENESIS or at a recorded head passes.
    assert strict.intact == (outcome == "anchored")
    assert ("UNANCHORED" in "\n".join(evidence.describe(strict))) == (outcome == "unanchored")
    assert report.events_checked == 3 + 7 and report.incidents_checked == 2
    assert report.first_seq == first_seq and report.first_time is not None
    described = "\n".join(evidence.describe(report))
    if outcome == "break":
        assert not report.intact and report.missing == []
        assert [(b.incident_id, b.event_id) for b in report.breaks] == [("INC-ORPHAN", "orphan-0")]
        assert "BREAK INC-ORPHAN at seq" in described and "NOT intact" in described
    else:
        assert report.intact, report
        assert report.starts_after_expiry == ["INC-ORPHAN"]
        assert report.unanchored == (["INC-ORPHAN"] if outcome == "unanchored" else [])
        assert "INC-ORPHAN: starts after expiry" in described


def _flip_in_block(jetstream: Path, raw: bytes, rng: random.Random) -> int:
    """Flip one byte inside `raw` where the message block file holds it; returns the offset."""
    blocks = sorted(jetstream.glob("$G/streams/INCIDENTS/msgs/*.blk"))
    for block in blocks:
        data = bytearray(block.read_bytes())
        at = data.find(raw)
        if at >= 0:
            assert data.count(raw) == 1
            offset = at + rng.randrange(len(raw))
            data[offset] ^= rng.randrange(1, 256)
            block.write_bytes(bytes(data))
            return offset
    raise AssertionError(f"payload not found in {blocks}")


async def test_a_flipped_byte_in_the_servers_block_file_never_goes_unnoticed(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    nc = await nats.connect(nats_server.url)
    try:
        await ensure_stream(nc, StreamSettings())
        store = EventStore(nc)
        handler = CommandHandler(store)
        for n, words in enumerate(("zebra yak", "quokka", "ibis okapi tapir")):
            await _incident(handler, f"INC-BLK00{n}", words)
        stored = await _everything(store)
        last_seq = stored[-1].seq
        assert verify((s.seq, s.raw) for s in stored) == []
    finally:
        await nc.close()
    nats_server.stop()
    jetstream = nats_server.store_dir / "jetstream"
    pristine = tmp_path / "pristine"
    shutil.copytree(jetstream, pristine)

    rng = random.Random(7)
    outcomes: Counter[str] = Counter()
    unanchored_misses = 0
    for trial in range(STORE_FLIPS + CRASH_FLIPS):
        crash = trial >= STORE_FLIPS
        shutil.rmtree(jetstream)
        shutil.copytree(pristine, jetstream)
        target = rng.choice(stored)
        target_incident = evidence.Selection(incident_id=target.event.incident_id)
        _flip_in_block(jetstream, target.raw, rng)
        if crash:
            (jetstream / "$G/streams/INCIDENTS/msgs/index.db").unlink()
        nats_server.start()
        nc = await nats.connect(nats_server.url)
        try:
            log = evidence.Log(nc, timeout=1.0)
            report = await evidence.verify_log(log, known_last_seq=last_seq)
            alone = await evidence.verify_log(log) if crash else report
            if not crash:  # nor does an export of the incident certify the damaged log
                try:
                    await evidence.export(log, target_incident, tmp_path / f"x{trial}", "me")
                    refused = None
                except evidence.EvidenceError as exc:
                    refused = exc
                assert refused is not None and refused.kind is ErrorKind.CONFLICT, (
                    trial,
                    target.seq,
                )
                assert not (tmp_path / f"x{trial}").exists()
            if trial == 0:
                cli = await asyncio.to_thread(_cli_verify, nats_server.url)
        finally:
            await nc.close()
        nats_server.stop()

        assert not report.intact, (trial, target.seq, report)
        outcome = _how(report, target)
        if crash:
            # nats-server rebuilt the block and cut it at the damaged record, without a word.
            assert report.last_seq == target.seq - 1, (trial, target.seq, report)
            outcome = f"stream cut at the damaged record, {last_seq - report.last_seq} lost"
        outcomes[outcome] += 1
        if not crash:
            # The log alone tells: the server withholds the record, and the chain breaks after.
            assert "gap" in outcome, (trial, target.seq, report)
        unanchored_misses += alone.intact

    assert cli.returncode == 1 and "NOT intact" in cli.stdout, cli
    print(
        f"\nstore: {STORE_FLIPS + CRASH_FLIPS} flips, all detected: {dict(outcomes)}; "
        f"after a lost index.db, {unanchored_misses}/{CRASH_FLIPS} unnoticed without the "
        "known last sequence"
    )


def _how(report: evidence.Report, target: Stored) -> str:
    gap = any(g.first_seq <= target.seq <= g.last_seq for g in report.missing)
    broken = [b for b in report.breaks if b.incident_id == target.event.incident_id]
    parts = (["gap"] if gap else []) + [f"break ({b.reason})" for b in broken]
    if not parts and report.missing:
        parts = ["truncated"]
    return " + ".join(parts) or "other"


def _cli_verify(url: str) -> subprocess.CompletedProcess[str]:
    incidents = str(Path(sys.executable).parent / "incidents")
    return subprocess.run(
        [incidents, "verify", "--nats-url", url], capture_output=True, text=True, timeout=60
    )
