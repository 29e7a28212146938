"""Evidence from the log: bundles an auditor verifies offline, and a check of every hash chain.

Both work on the stream's raw records, read without decoding, so damaged bytes are reported
instead of raised. Used by `incidents export|verify` (straight from NATS) and by the admin
routes `GET /v1/incidents/{id}/export` (a tar.gz) and `GET /v1/verify` (a JSON report).
"""

import asyncio
import getpass
import hashlib
import importlib.metadata
import importlib.resources
import io
import socket
import tarfile
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import msgspec
import nats
import nats.errors
import nats.js.errors
import typer
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig, DeliverPolicy

from events import chain
from events.store import EventStore, StoreUnavailableError
from events.subjects import (
    INCIDENTS_PREFIX,
    InvalidIncidentIdError,
    incident_filter,
    incident_of,
)
from projections import retention
from services.client import fail
from services.intake import ErrorKind, IntakeError

FORMAT: Final = "incident-timeline-evidence/1"
EVENTS: Final = "events.jsonl"
SEQUENCES: Final = "sequences.txt"
VERIFIER: Final = "verify.py"
README: Final = "README.txt"
MANIFEST: Final = "manifest.json"
EXPIRED: Final = "starts after expiry"
T = TypeVar("T")


class EvidenceError(IntakeError):
    """Nothing to export (404), a bad request (422) or a damaged log (409)."""


# The stream: raw records and the stream's own state, read past EventStore, which decodes.


class Record(NamedTuple):
    seq: int
    subject: str
    raw: bytes


class StreamState(msgspec.Struct):
    messages: int = 0
    first_seq: int = 0
    first_ts: datetime | None = None
    last_seq: int = 0
    subjects: dict[str, int] | None = None


class _StreamInfo(msgspec.Struct):
    state: StreamState = msgspec.field(default_factory=StreamState)
    error: dict[str, Any] | None = None


class _Envelope(msgspec.Struct):
    incident_id: str = ""
    event_id: str = ""
    prev_hash: Any = None
    hash: Any = None
    recorded_at: datetime | None = None


_info: Final = msgspec.json.Decoder(_StreamInfo)
_envelope: Final = msgspec.json.Decoder(_Envelope)
_OUTAGES: Final = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.errors.ConnectionClosedError,
)


class Log:
    """The stream as raw records, in order, through an ordered consumer."""

    def __init__(self, nc: NATS, stream: str = "INCIDENTS", timeout: float = 5.0) -> None:
        self.nc = nc
        self.stream = stream
        self.timeout = timeout
        self._js = nc.jetstream(timeout=timeout)

    @classmethod
    def of(cls, store: EventStore) -> "Log":
        # EventStore decodes all it reads; evidence needs the bytes exactly as stored.
        return cls(store.nc, store.stream, store.timeout)

    async def state(self, subjects_filter: str | None = None) -> StreamState:
        """The stream's state as the server reports it (with per-subject counts if filtered)."""
        request = {"subjects_filter": subjects_filter} if subjects_filter else {}
        try:
            reply = await self.nc.request(
                f"$JS.API.STREAM.INFO.{self.stream}",
                msgspec.json.encode(request),
                timeout=self.timeout,
            )
        except _OUTAGES as exc:
            raise StoreUnavailableError(f"JetStream did not answer: {exc!r}") from exc
        info = _info.decode(reply.data)
        if info.error is not None:
            raise EvidenceError(
                ErrorKind.NOT_FOUND, f"stream {self.stream}: {info.error.get('description')}"
            )
        return info.state

    async def records(
        self, first_seq: int, last_seq: int, subject_filter: str = "", batch_size: int = 1000
    ) -> AsyncIterator[list[Record]]:
        """Records from `first_seq` through `last_seq` that the server delivers.

        nats-server leaves out a record whose checksum fails, so damage shows as a gap. When
        nothing arrives for `timeout` the rest is probed by direct get: a slow server resumes,
        a damaged tail ends the read.
        """
        start, stalled = max(first_seq, 1), 0
        while start <= last_seq:
            async for batch in self._deliver(start, last_seq, subject_filter, batch_size):
                start, stalled = batch[-1].seq + 1, 0
                yield batch
            if subject_filter:
                return  # a filtered read cannot tell a gap: export compares counts instead
            resume = await self._deliverable(start, last_seq)
            stalled = stalled + 1 if resume == start else 0
            if stalled > 1:
                raise StoreUnavailableError(f"the log stopped delivering at seq {start}")
            start = resume

    async def _deliver(
        self, start: int, last_seq: int, subject_filter: str, batch_size: int
    ) -> AsyncIterator[list[Record]]:
        """One ordered consumer from `start`, until `last_seq` or `timeout` without a record."""
        try:
            sub = await self._js.subscribe(
                subject_filter,
                stream=self.stream,
                config=ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start
                ),
                ordered_consumer=True,
                pending_msgs_limit=max(batch_size * 64, 65536),
            )
        except _OUTAGES as exc:
            raise StoreUnavailableError(f"JetStream did not answer: {exc!r}") from exc
        batch: list[Record] = []
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=self.timeout)
                except nats.errors.TimeoutError:
                    break
                except nats.errors.ConnectionClosedError as exc:
                    raise StoreUnavailableError("the NATS connection closed while reading") from exc
                meta = msg.metadata
                if meta.sequence.stream > last_seq:  # appended after the caller's snapshot
                    break
                batch.append(Record(meta.sequence.stream, msg.subject, msg.data))
                if meta.sequence.stream == last_seq or meta.num_pending == 0:
                    break
                if len(batch) >= batch_size or sub.pending_msgs == 0:
                    yield batch
                    batch = []
        finally:
            with suppress(nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
                await sub.unsubscribe()
        if batch:
            yield batch

    async def _deliverable(self, seq: int, last_seq: int) -> int:
        """The first sequence from `seq` on that the server hands out; past `last_seq`: none."""
        while seq <= last_seq:
            try:
                await self._js.get_msg(self.stream, seq, direct=True)
                return seq
            except nats.js.errors.NotFoundError:
                seq += 1
            except _OUTAGES as exc:
                raise StoreUnavailableError(f"JetStream did not answer: {exc!r}") from exc
        return seq


def _is_event(record: Record) -> bool:
    return record.subject.startswith(INCIDENTS_PREFIX + ".")


# Verification of the whole log.


class Gap(msgspec.Struct):
    first_seq: int
    last_seq: int
    reason: str


class Report(msgspec.Struct, kw_only=True):
    stream: str
    intact: bool
    checked_at: datetime
    first_seq: int  # the first sequence the stream retains (later than 1: its start expired)
    first_time: datetime | None
    last_seq: int
    events_checked: int
    incidents_checked: int
    starts_after_expiry: list[str]  # incidents whose retained chain starts mid-way
    unanchored: list[str]  # of those, the ones no retention.advanced record vouches for
    missing: list[Gap]
    breaks: list[chain.ChainBreak]


async def verify_log(log: Log, known_last_seq: int = 0) -> Report:
    """Recompute every incident's chain; report gaps and the first break per incident.

    `known_last_seq` is a sequence known to have been written (e.g. the projector's
    checkpoint): a log ending before it lost its tail. Holds the log's bytes in memory.
    """
    state = await log.state()
    seen: list[Record] = []
    async for batch in log.records(state.first_seq, state.last_seq):
        seen.extend(batch)
    missing = _gaps((r.seq for r in seen), state.first_seq, state.last_seq)
    if missing:  # records may have aged out while we read: those are not missing
        first_now = (await log.state()).first_seq
        missing = [
            msgspec.structs.replace(g, first_seq=max(g.first_seq, first_now))
            for g in missing
            if g.last_seq >= first_now
        ]
    if state.last_seq < known_last_seq:
        why = f"the stream ends at {state.last_seq}, but seq {known_last_seq} was written"
        missing.append(Gap(state.last_seq + 1, known_last_seq, why))
    records = [r for r in seen if _is_event(r)]
    heads: dict[str, str] = {}
    anchored: dict[str, str] = {}
    if state.first_seq > 1:
        # The stream's beginning expired: an incident's first retained event may link to one
        # that is gone. Only then may a chain start elsewhere than at GENESIS: at the head a
        # retention.advanced record names, else (unanchored) at its first retained prev_hash.
        anchored = retention.chain_heads(_retention_records(seen))
        for record in records:
            incident_id = incident_of(record.subject)
            if incident_id not in heads:
                heads[incident_id] = anchored.get(incident_id) or _prev_hash(record.raw)
    # SHA-256 over the whole log: off the event loop, which may be serving requests.
    pairs = [(r.seq, r.raw) for r in records]
    breaks = _named(await asyncio.to_thread(chain.verify, pairs, heads), records)
    return Report(
        stream=log.stream,
        intact=not breaks and not missing,
        checked_at=datetime.now(UTC),
        first_seq=state.first_seq,
        first_time=state.first_ts if state.messages else None,
        last_seq=state.last_seq,
        events_checked=len(records),
        incidents_checked=len({incident_of(r.subject) for r in records}),
        starts_after_expiry=sorted(i for i, head in heads.items() if head != chain.GENESIS),
        unanchored=sorted(i for i, h in heads.items() if h != chain.GENESIS and i not in anchored),
        missing=missing,
        breaks=sorted(breaks, key=lambda b: b.seq),
    )


def _gaps(seqs: Iterable[int], first_seq: int, last_seq: int) -> list[Gap]:
    gaps, expected = [], max(first_seq, 1)
    for seq in seqs:
        if seq > expected:
            gaps.append(Gap(expected, seq - 1, "held by the stream but not delivered (damaged)"))
        expected = seq + 1
    if expected <= last_seq:
        gaps.append(Gap(expected, last_seq, "held by the stream but not delivered (damaged)"))
    return gaps


def _retention_records(seen: Iterable[Record]) -> list[retention.RetentionAdvanced]:
    found = []
    for record in seen:
        if record.subject == retention.SUBJECT:
            with suppress(msgspec.DecodeError):
                found.append(retention.decode_record(record.raw))
    return found


def _prev_hash(raw: bytes) -> str:
    try:
        prev_hash = _envelope.decode(raw).prev_hash
    except (msgspec.DecodeError, UnicodeDecodeError):
        return chain.GENESIS
    return prev_hash if isinstance(prev_hash, str) else chain.GENESIS


def _named(breaks: list[chain.ChainBreak], records: list[Record]) -> list[chain.ChainBreak]:
    """Undecodable records come back under "?": name their incident from the subject."""
    by_incident = {b.incident_id: b for b in breaks if b.incident_id != "?"}
    for lost in (b for b in breaks if b.incident_id == "?"):
        subject = next(r.subject for r in records if r.seq == lost.seq)
        named = msgspec.structs.replace(lost, incident_id=incident_of(subject))
        known = by_incident.get(named.incident_id)
        if known is None or known.seq > named.seq:
            by_incident[named.incident_id] = named
    return list(by_incident.values())


# Export: a bundle directory.


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
                if not _is_event(record) or incident_of(record.subject) not in chosen:
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
    elif gaps := _gaps(seqs, state.first_seq, state.last_seq):
        raise _damaged(f"sequences {gaps[0].first_seq}..{gaps[0].last_seq} are not delivered")
    (out / VERIFIER).write_bytes(verifier_source())
    (out / README).write_text(README_TEXT)
    files = {name: _sha256((out / name).read_bytes()) for name in (EVENTS, SEQUENCES, VERIFIER)}
    manifest = Manifest(
        stream=log.stream,
        first_seq=min(e.first_seq for e in entries.values()),
        last_seq=max(e.last_seq for e in entries.values()),
        stream_first_seq=state.first_seq,
        event_count=sum(e.events for e in entries.values()),
        incidents=dict(sorted(entries.items())),
        selection=selection,
        files=files | {README: _sha256((out / README).read_bytes())},
        tool=f"incident-timeline {importlib.metadata.version('incident-timeline')}",
        exported_at=now or datetime.now(UTC),
        exported_by=exported_by,
    )
    (out / MANIFEST).write_bytes(msgspec.json.format(msgspec.json.encode(manifest)) + b"\n")
    return manifest


def verifier_source() -> bytes:
    return (importlib.resources.files("services") / "evidence_verify.py").read_bytes()


def _sha256(data: bytes) -> str:
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
        for record in filter(_is_event, batch):
            recorded_at = _readable(record).recorded_at
            if recorded_at is not None and since <= recorded_at <= until:
                chosen.add(incident_of(record.subject))
    return chosen


def _readable(record: Record) -> _Envelope:
    """An exported record must be one line holding the chain's fields, or the log is damaged."""
    try:
        links = _envelope.decode(record.raw)
    except (msgspec.DecodeError, UnicodeDecodeError):
        links = _Envelope()
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
        return Packed(name, data, _sha256((out / MANIFEST).read_bytes()))


def _tar_gz(directory: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(directory, arcname=directory.name)
    return buffer.getvalue()


# CLI verbs (registered in services/cli.py): straight against NATS, or offline on a bundle.


async def _connect(url: str) -> NATS:
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:  # instead of nats-py's logged tracebacks
        errors.append(exc)

    try:
        return await nats.connect(
            servers=url.split(","),
            name="incidents-evidence",
            connect_timeout=5,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # 0 would retry the first connection for ever
            reconnect_time_wait=0.1,
            error_cb=remember,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        reason = errors[-1] if errors else exc
        raise StoreUnavailableError(f"cannot reach NATS at {url}: {reason}") from exc


async def _with_log(url: str, stream: str, work: Callable[[Log], Awaitable[T]]) -> T:
    nc = await _connect(url)
    try:
        return await work(Log(nc, stream))
    finally:
        await nc.close()


def _run(url: str | None, stream: str, work: Callable[[Log], Awaitable[T]]) -> T:
    if not url:
        fail("set INCIDENTS_NATS_URL or pass --nats-url: export and verify read NATS directly")
    try:
        return asyncio.run(_with_log(url, stream, work))
    except EvidenceError as exc:
        fail(exc.detail, code=1 if exc.kind is ErrorKind.CONFLICT else 2)
    except StoreUnavailableError as exc:
        fail(str(exc), code=1)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (cli)"


def export_command(
    incident_id: str | None,
    since: datetime | None,
    until: datetime | None,
    out: Path,
    nats_url: str | None,
    stream: str,
    as_json: bool,
) -> None:
    if (incident_id is None) == (since is None and until is None):
        fail("give an incident ID, or --since and/or --until (whole incidents recorded then)")
    if since is not None and until is not None and since > until:
        fail("--since is after --until")
    selection = Selection(incident_id=incident_id, since=since, until=until)

    async def work(log: Log) -> Manifest:
        return await export(log, selection, out, _who())

    manifest: Manifest = _run(nats_url, stream, work)
    problems = _check_bundle(out)
    digest = _sha256((out / MANIFEST).read_bytes())
    if as_json:
        answer = {"out": str(out), "manifest_sha256": digest, "manifest": manifest}
        typer.echo(msgspec.json.encode(answer).decode())
    else:
        typer.echo(
            f"exported {manifest.event_count} events of {len(manifest.incidents)} incidents "
            f"(seq {manifest.first_seq}..{manifest.last_seq}) to {out}\n"
            f"manifest.json sha256 {digest} (keep it: it anchors the bundle)"
        )
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)


def _check_bundle(bundle: Path) -> list[str]:
    from services.evidence_verify import check  # this program's verifier, not the bundle's copy

    return check(bundle)


def verify_command(
    bundle: Path | None, nats_url: str | None, stream: str, expect_last_seq: int, as_json: bool
) -> None:
    if bundle is not None:
        if not (bundle / MANIFEST).is_file():
            fail(f"{bundle} holds no {MANIFEST}: not an evidence bundle")
        problems = _check_bundle(bundle)
        if as_json:
            answer = {"intact": not problems, "problems": problems}
            typer.echo(msgspec.json.encode(answer).decode())
        else:
            for problem in problems:
                typer.echo(problem)
            typer.echo(f"{bundle}: {'FAILED' if problems else 'intact'}")
        raise typer.Exit(1 if problems else 0)

    async def work(log: Log) -> Report:
        return await verify_log(log, expect_last_seq)

    report: Report = _run(nats_url, stream, work)
    if as_json:
        typer.echo(msgspec.json.encode(report).decode())
    else:
        for line in describe(report):
            typer.echo(line)
    raise typer.Exit(0 if report.intact else 1)


def describe(report: Report) -> list[str]:
    first = report.first_time.isoformat() if report.first_time else "-"
    lines = [
        f"stream {report.stream}: seq {report.first_seq}..{report.last_seq}, "
        f"first retained at {first}",
        f"checked {report.events_checked} events of {report.incidents_checked} incidents",
    ]
    lines += [
        f"{i}: {EXPIRED}, "
        + (
            "unanchored: accepted from its first retained event's prev_hash"
            if i in report.unanchored
            else "linked to the head its retention.advanced record names"
        )
        for i in report.starts_after_expiry
    ]
    lines += [f"missing seq {g.first_seq}..{g.last_seq}: {g.reason}" for g in report.missing]
    lines += [
        f"BREAK {b.incident_id} at seq {b.seq} (event {b.event_id}): {b.reason}"
        for b in report.breaks
    ]
    lines.append("intact" if report.intact else "NOT intact")
    return lines
