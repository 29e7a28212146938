"""Evidence bundles: the raw events of a selection exactly as stored, with a manifest, a
stand-alone verifier and the by-hand procedure, for an auditor to check offline."""

import asyncio
import hashlib
import importlib.metadata
import importlib.resources
import io
import tarfile
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, NamedTuple

import msgspec

from events.subjects import InvalidIncidentIdError, incident_filter, incident_of
from services.errors import ErrorKind
from services.evidence.log import (
    Envelope,
    EvidenceError,
    Log,
    Record,
    StreamState,
    envelope,
    find_gaps,
    is_event,
)

FORMAT: Final = "incident-timeline-evidence/1"
EVENTS: Final = "events.jsonl"
SEQUENCES: Final = "sequences.txt"
VERIFIER: Final = "verify.py"
README: Final = "README.txt"
MANIFEST: Final = "manifest.json"


class Selection(msgspec.Struct, frozen=True, omit_defaults=True):
    incident_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class IncidentEntry(msgspec.Struct):
    events: int
    first_seq: int
    last_seq: int
    prev_hash: str  # what the first included event links to ("" when it is the first ever)
    head: str  # the hash of the last included event


class Manifest(msgspec.Struct, kw_only=True):
    format: str = FORMAT
    stream: str
    first_seq: int
    last_seq: int
    stream_first_seq: int  # the first sequence the stream still retained at export
    event_count: int
    incidents: dict[str, IncidentEntry]
    selection: Selection
    files: dict[str, str]  # name -> SHA-256 of every file but this manifest
    tool: str
    exported_at: datetime
    exported_by: str


# Step 1 of README.txt: the manifest's hashes as `sha256sum -c` reads them.
SUMS_COMMAND: Final = (
    'python3 -c \'import json; [print(h + "  " + f) for f, h in '
    'json.load(open("manifest.json"))["files"].items()]\' | sha256sum -c'
)
README_TEXT: Final = f"""\
Evidence bundle of incident-timeline: events exactly as the log stored them, with a manifest.

Files
  events.jsonl    one stored event per line, in stream order, byte for byte
  sequences.txt   the stream sequence of each line of events.jsonl
  manifest.json   stream, sequences, per incident: event count, first/last seq, the prev_hash
                  its first event links to and its chain head; SHA-256 of every other file
  verify.py       a verifier needing only Python 3's standard library
Record the SHA-256 of manifest.json when you receive the bundle: it anchors everything else.

Verify (from this directory)
  1. {SUMS_COMMAND}
     (or: jq -r '.files | to_entries[] | "\\(.value)  \\(.key)"' manifest.json | sha256sum -c)
  2. python3 verify.py .          exit 0 and "intact", else the first break of each incident

By hand, for each line of events.jsonl (an event with "hash":"<h>"):
  - replace the one occurrence of "hash":"<h>" by "hash":"" and take SHA-256 of the line's bytes
    (without its newline): it must equal <h>;
        sed -n 5p events.jsonl | sed 's/"hash":"<h>"/"hash":""/' | tr -d '\\n' | sha256sum
  - its "prev_hash" must equal the hash of the previous line of the same incident_id, or, for
    the incident's first line, the prev_hash the manifest records for that incident;
  - each incident's last hash must equal its "head" in the manifest, its line count "events".
"""


async def export(
    log: Log, selection: Selection, out: Path, exported_by: str, now: datetime | None = None
) -> Manifest:
    """Write the bundle of `selection` (one incident, or whole incidents recorded in a span)."""
    subject_filter = "" if selection.incident_id is None else _filter(selection.incident_id)
    _writable(out)
    # One snapshot: the end of the read and, filtered, the count the read must reach.
    state = await log.state(subject_filter or None)
    if subject_filter and not state.subjects:
        raise EvidenceError(ErrorKind.NOT_FOUND, f"no events to export for {_describe(selection)}")
    made = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EvidenceError(ErrorKind.INVALID, f"cannot create {out}: {exc}") from exc
    try:
        return await _export(log, selection, subject_filter, state, out, exported_by, now)
    except BaseException:
        # Leave no half bundle behind to be mistaken for one.
        for name in (EVENTS, SEQUENCES, VERIFIER, README, MANIFEST):
            (out / name).unlink(missing_ok=True)
        if made:
            out.rmdir()
        raise


async def _export(
    log: Log,
    selection: Selection,
    subject_filter: str,
    state: StreamState,
    out: Path,
    exported_by: str,
    now: datetime | None,
) -> Manifest:
    if selection.incident_id is not None:
        chosen = {selection.incident_id}
    else:
        chosen = await _recorded_within(log, selection, state)
    entries: dict[str, IncidentEntry] = {}
    seqs: list[int] = []
    with (out / EVENTS).open("wb") as events, (out / SEQUENCES).open("w") as sequences:
        async for batch in log.records(state.first_seq, state.last_seq, subject_filter):
            for record in batch:
                seqs.append(record.seq)
                if not is_event(record) or incident_of(record.subject) not in chosen:
                    continue
                links = _readable(record)
                entry = entries.setdefault(
                    links.incident_id, IncidentEntry(0, record.seq, 0, links.prev_hash, "")
                )
                entry.events, entry.last_seq, entry.head = entry.events + 1, record.seq, links.hash
                events.write(record.raw + b"\n")
                sequences.write(f"{record.seq}\n")
    if not entries:
        raise EvidenceError(ErrorKind.NOT_FOUND, f"no events to export for {_describe(selection)}")
    if subject_filter:
        # A filtered read cannot see gaps: compare with the stream's own count.
        stored = sum((state.subjects or {}).values())
        if stored != len(seqs):
            raise _damaged(
                f"the stream holds {stored} events of {subject_filter}, {len(seqs)} read"
            )
    elif gaps := find_gaps(seqs, state.first_seq, state.last_seq):
        raise _damaged(f"sequences {gaps[0].first_seq}..{gaps[0].last_seq} are not delivered")
    (out / VERIFIER).write_bytes(verifier_source())
    (out / README).write_text(README_TEXT)
    files = {name: sha256((out / name).read_bytes()) for name in (EVENTS, SEQUENCES, VERIFIER)}
    manifest = Manifest(
        stream=log.stream,
        first_seq=min(e.first_seq for e in entries.values()),
        last_seq=max(e.last_seq for e in entries.values()),
        stream_first_seq=state.first_seq,
        event_count=sum(e.events for e in entries.values()),
        incidents=dict(sorted(entries.items())),
        selection=selection,
        files=files | {README: sha256((out / README).read_bytes())},
        tool=f"incident-timeline {importlib.metadata.version('incident-timeline')}",
        exported_at=now or datetime.now(UTC),
        exported_by=exported_by,
    )
    (out / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")
    return manifest


def verifier_source() -> bytes:
    return (importlib.resources.files("services.evidence") / "verifier.py").read_bytes()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _writable(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise EvidenceError(ErrorKind.INVALID, f"{out} exists and is not an empty directory")


def _filter(incident_id: str) -> str:
    try:
        return incident_filter(incident_id)
    except InvalidIncidentIdError as exc:
        raise EvidenceError(ErrorKind.INVALID, str(exc), "incident_id") from exc


def _describe(selection: Selection) -> str:
    if selection.incident_id is not None:
        return f"incident {selection.incident_id}"
    return f"incidents recorded between {selection.since or '-'} and {selection.until or '-'}"


async def _recorded_within(log: Log, selection: Selection, state: StreamState) -> set[str]:
    """Incidents with an event recorded in [since, until]: exported whole."""
    since = selection.since or datetime.min.replace(tzinfo=UTC)
    until = selection.until or datetime.max.replace(tzinfo=UTC)
    chosen: set[str] = set()
    async for batch in log.records(state.first_seq, state.last_seq):
        for record in filter(is_event, batch):
            recorded_at = _readable(record).recorded_at
            if recorded_at is not None and since <= recorded_at <= until:
                chosen.add(incident_of(record.subject))
    return chosen


def _readable(record: Record) -> Envelope:
    """An exported record must be one line holding the chain's fields, or the log is damaged."""
    try:
        links = envelope.decode(record.raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        links = Envelope()
    if (
        b"\n" in record.raw
        or links.incident_id != incident_of(record.subject)
        or not isinstance(links.hash, str)
        or not isinstance(links.prev_hash, str)
    ):
        raise _damaged(f"seq {record.seq} is not a readable event")
    return links


def _damaged(what: str) -> EvidenceError:
    return EvidenceError(ErrorKind.CONFLICT, f"{what}: the log is damaged (run incidents verify)")


class Packed(NamedTuple):
    name: str
    data: bytes  # tar.gz of one directory, `name`
    manifest_sha256: str


async def packed_bundle(log: Log, incident_id: str, exported_by: str) -> Packed:
    """One incident's bundle as a tar.gz, for the export route."""
    _filter(incident_id)  # a bad id is a 422 before anything is read
    name = f"evidence-{incident_id}"
    with tempfile.TemporaryDirectory(prefix="incidents-export-") as tmp:
        out = Path(tmp) / name
        await export(log, Selection(incident_id=incident_id), out, exported_by)
        data = await asyncio.to_thread(_tar_gz, out)
        return Packed(name, data, sha256((out / MANIFEST).read_bytes()))


def _tar_gz(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(directory, arcname=directory.name)
    return buffer.getvalue()
