"""Verification of the whole log: every incident's hash chain recomputed from the stored bytes."""

import asyncio
from collections.abc import Iterable
from contextlib import suppress
from datetime import UTC, datetime
from typing import Final

import msgspec

from events import chain
from events.subjects import incident_of
from projections import retention
from services.evidence.log import Gap, Log, Record, envelope, find_gaps, is_event

EXPIRED: Final = "starts after expiry"


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
    strict: bool  # unanchored chains count against `intact`
    missing: list[Gap]
    breaks: list[chain.ChainBreak]


async def verify_log(log: Log, known_last_seq: int = 0, strict: bool = False) -> Report:
    """Recompute every incident's chain; report gaps and the first break per incident.

    `known_last_seq` is a sequence known to have been written (e.g. the projector's
    checkpoint): a log ending before it lost its tail. `strict`: a chain that starts after
    expiry with no retention record naming its head is not intact either (deleted and expired
    records then look the same). Holds the log's bytes in memory.
    """
    state = await log.state()
    seen: list[Record] = []
    async for batch in log.records(state.first_seq, state.last_seq):
        seen.extend(batch)
    missing = find_gaps((r.seq for r in seen), state.first_seq, state.last_seq)
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
    records = [r for r in seen if is_event(r)]
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
    unanchored = sorted(i for i, h in heads.items() if h != chain.GENESIS and i not in anchored)
    # SHA-256 over the whole log: off the event loop, which may be serving requests.
    pairs = [(r.seq, r.raw) for r in records]
    breaks = _named(await asyncio.to_thread(chain.verify, pairs, heads), records)
    return Report(
        stream=log.stream,
        intact=not breaks and not missing and not (strict and unanchored),
        checked_at=datetime.now(UTC),
        first_seq=state.first_seq,
        first_time=state.first_ts if state.messages else None,
        last_seq=state.last_seq,
        events_checked=len(records),
        incidents_checked=len({incident_of(r.subject) for r in records}),
        starts_after_expiry=sorted(i for i, head in heads.items() if head != chain.GENESIS),
        unanchored=unanchored,
        strict=strict,
        missing=missing,
        breaks=sorted(breaks, key=lambda b: b.seq),
    )


def _retention_records(seen: Iterable[Record]) -> list[retention.RetentionAdvanced]:
    found = []
    for record in seen:
        if record.subject == retention.SUBJECT:
            with suppress(msgspec.DecodeError):
                found.append(retention.decode_record(record.raw))
    return found


def _prev_hash(raw: bytes) -> str:
    try:
        prev_hash = envelope.decode(raw).prev_hash
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
            (
                "UNANCHORED: no retention.advanced record names its head (--strict)"
                if report.strict
                else "unanchored: accepted from its first retained event's prev_hash"
            )
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
