"""Retention: what the projector does when records age out of the stream (`max_age`).

The projector deletes the expired events' rows and re-folds the incidents that had some, so the
read models stay a fold of what the log holds; an incident whose declaration expired while later
events remain is kept as a partial state (`partial_incidents`), not as a row of `incidents`.
Each advance is recorded in the log itself, on `retention.advanced`, so an auditor can tell
expiry from deletion: the record names the expired range and, per incident, the chain head its
first retained event must link to (`heads`, the `heads` argument of `events.chain.verify`).
Records expire too, so later records carry forward the heads that retained events still need.
"""

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta
from typing import Final

import duckdb
import msgspec
from msgspec import Struct

from events.records import Stored
from events.schema import decode
from events.store import ConcurrencyError, EventStore
from events.subjects import RETENTION_PREFIX

SUBJECT: Final = f"{RETENTION_PREFIX}.advanced"

DDL: Final = """
CREATE TABLE IF NOT EXISTS retention_heads (
    incident_id VARCHAR PRIMARY KEY,
    seq BIGINT NOT NULL,
    hash VARCHAR NOT NULL,
    published_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS partial_incidents (
    incident_id VARCHAR PRIMARY KEY,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS retention_outbox (
    first_seq_after BIGINT PRIMARY KEY,
    body VARCHAR NOT NULL
);
"""
FIRST_RETAINED: Final = "first_retained"  # key in `meta`: first sequence the models derive from


class Head(Struct, frozen=True):
    """An incident's last expired event: its sequence and hash."""

    seq: int
    hash: str


class Expired(Struct, frozen=True):
    """What one advance took from one incident."""

    events: int
    head: Head


class RetentionAdvanced(Struct, frozen=True, kw_only=True):
    """The audit record of one retention advance (a service record, not an incident event)."""

    stream: str
    first_seq_before: int  # first sequence the projector had retained before
    first_seq_after: int  # first sequence the stream holds now
    expired_records: int  # first_seq_after - first_seq_before: every record, service ones too
    expired_events: int  # incident events among them
    advanced_at: datetime
    expired: dict[str, Expired]  # per incident with events in the expired range
    # Per incident, the hash its first retained event links to (`prev_hash`): every incident in
    # `expired`, and heads of earlier advances still needed by retained events, carried again.
    heads: dict[str, Head]


_encode: Final = msgspec.json.Encoder(order="sorted").encode
_record: Final = msgspec.json.Decoder(RetentionAdvanced)


def encode(record: RetentionAdvanced) -> bytes:
    return _encode(record)


def decode_record(data: bytes | str) -> RetentionAdvanced:
    return _record.decode(data)


def msg_id(record: RetentionAdvanced) -> str:
    # Several projectors see the same advance; the log keeps one record of it.
    return f"retention-{record.first_seq_after}"


def create(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def first_retained(cur: duckdb.DuckDBPyConnection) -> int:
    """The recorded first retained sequence; for older files, the oldest event they hold."""
    cur.execute("SELECT value FROM meta WHERE key = ?", [FIRST_RETAINED])
    row = cur.fetchone()
    if row is not None:
        return int(row[0])
    cur.execute("SELECT min(seq) FROM events")
    oldest = cur.fetchone()
    return int(oldest[0]) if oldest and oldest[0] is not None else 1


def set_first_retained(cur: duckdb.DuckDBPyConnection, first_seq: int) -> None:
    cur.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [FIRST_RETAINED, str(first_seq)],
    )


def forget_partial(cur: duckdb.DuckDBPyConnection, incident_ids: list[str]) -> None:
    if incident_ids:
        cur.execute(
            "DELETE FROM partial_incidents WHERE incident_id IN (SELECT unnest(?))", [incident_ids]
        )


def expire(cur: duckdb.DuckDBPyConnection, first_seq: int) -> dict[str, Expired]:
    """Delete the event rows below `first_seq`; per incident, how many and its last one."""
    cur.execute(
        "SELECT incident_id, count(*), max(seq), arg_max(hash, seq) FROM events "
        "WHERE seq < ? GROUP BY incident_id",
        [first_seq],
    )
    expired = {
        incident_id: Expired(int(count), Head(int(seq), str(digest)))
        for incident_id, count, seq, digest in cur.fetchall()
    }
    if expired:
        cur.execute("DELETE FROM events WHERE seq < ?", [first_seq])
    return expired


def retained(cur: duckdb.DuckDBPyConnection, incident_ids: Collection[str]) -> list[Stored]:
    """The remaining events of these incidents, in log order, decoded from their stored bytes."""
    if not incident_ids:
        return []
    cur.execute(
        "SELECT seq, body FROM events WHERE incident_id IN (SELECT unnest(?)) ORDER BY seq",
        [list(incident_ids)],
    )
    return [Stored(int(seq), decode(body), body.encode()) for seq, body in cur.fetchall()]


def remember(cur: duckdb.DuckDBPyConnection, expired: dict[str, Expired], now: datetime) -> None:
    """Keep this advance's heads: later records carry them while their incidents need them."""
    if expired:
        rows = [(i, e.head.seq, e.head.hash, now) for i, e in expired.items()]
        appender = cur.appender("retention_heads", action="upsert")
        appender.append_rows(rows)
        appender.flush()


_HOLDING: Final = (
    "SELECT incident_id FROM incidents UNION ALL SELECT incident_id FROM partial_incidents"
)


def carry(cur: duckdb.DuckDBPyConnection, now: datetime, every_s: float | None) -> dict[str, Head]:
    """Heads still needed (their incident has retained events) and not published in the last
    `every_s` seconds (all of them when None), marked published now.

    Records expire like everything else: carrying each head at least every half retention
    keeps one in the log for as long as its incident's retained events need it.
    """
    due = now - timedelta(seconds=every_s) if every_s is not None else now
    cur.execute(
        "SELECT incident_id, seq, hash FROM retention_heads "
        f"WHERE published_at <= ? AND incident_id IN ({_HOLDING})",
        [due],
    )
    heads = {i: Head(int(seq), str(digest)) for i, seq, digest in cur.fetchall()}
    if heads:
        cur.execute(
            "UPDATE retention_heads SET published_at = ? WHERE incident_id IN (SELECT unnest(?))",
            [now, list(heads)],
        )
    return heads


def settle(cur: duckdb.DuckDBPyConnection) -> None:
    """Forget the heads of incidents without retained events. Only once the projector had
    caught up with the log: a later event of theirs could still be on its way to it."""
    cur.execute(f"DELETE FROM retention_heads WHERE incident_id NOT IN ({_HOLDING})")


def stage(cur: duckdb.DuckDBPyConnection, record: RetentionAdvanced) -> None:
    """Queue the record for the log in the prune's transaction (published after the commit)."""
    cur.execute(
        "INSERT INTO retention_outbox VALUES (?, ?) ON CONFLICT DO NOTHING",
        [record.first_seq_after, encode(record).decode()],
    )


def staged(cur: duckdb.DuckDBPyConnection) -> list[RetentionAdvanced]:
    cur.execute("SELECT body FROM retention_outbox ORDER BY first_seq_after")
    return [decode_record(body) for (body,) in cur.fetchall()]


def unstage(cur: duckdb.DuckDBPyConnection, first_seq_after: int) -> None:
    """Take a record off the queue once the log has it."""
    cur.execute("DELETE FROM retention_outbox WHERE first_seq_after = ?", [first_seq_after])


async def publish(store: EventStore, record: RetentionAdvanced) -> bool:
    """Append the record unless the log already has one at or past this advance.

    Records are appended with the expected last sequence of their subject, so records from
    several projectors land in increasing `first_seq_after`; a loser reads and decides again.
    """
    while True:
        last = await store.last_on_subject(SUBJECT)
        if last is not None and _after(last[1]) >= record.first_seq_after:
            return False
        try:
            await store.put_if_last(SUBJECT, encode(record), last[0] if last else 0, msg_id(record))
        except ConcurrencyError:
            continue
        return True


def _after(data: bytes) -> int:
    try:
        return decode_record(data).first_seq_after
    except msgspec.DecodeError:  # not ours: it covers nothing
        return 0


async def records(store: EventStore) -> list[tuple[int, RetentionAdvanced]]:
    """The retention records the stream still holds, with their sequences."""
    found = []
    for seq, data in await store.records(SUBJECT):
        try:
            found.append((seq, decode_record(data)))
        except msgspec.DecodeError:
            continue
    return found


def chain_heads(found: Iterable[RetentionAdvanced]) -> dict[str, str]:
    """Per incident, the hash its first retained event must link to (for `chain.verify`).

    The latest head wins (by sequence): records overlap when several projectors write them.
    """
    latest: dict[str, Head] = {}
    for record in found:
        for incident_id, head in record.heads.items():
            if incident_id not in latest or head.seq > latest[incident_id].seq:
                latest[incident_id] = head
    return {incident_id: head.hash for incident_id, head in latest.items()}
