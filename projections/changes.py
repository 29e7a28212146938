"""The `changes` table: change records of the log (deploys, config pushes), outside incidents.

Change records live on `changes.>` (`events.changes`), not on any incident's subjects, so the
projector follows them with a reader of their own (`follow`) and keeps its own position for
them (`meta` key `changes_seq`), committed in the same transaction as the rows it brings, so a
crash at any point resumes with nothing lost and nothing applied twice. A record that does not
decode goes to the `quarantine` table like any other (its subject tells it from incident
records), and is folded in by a later version that reads it (`release`). Rows age out with the
log (`expire`), so the table stays a fold of what the log holds.

Queries: `between` (`GET /v1/changes`) and `before` (the changes of the hour before an
incident was detected, beside its timeline).
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import suppress
from datetime import datetime, timedelta
from typing import Any, Final

import duckdb
import msgspec
import nats.errors
from nats.aio.msg import Msg
from nats.js.api import ConsumerConfig, DeliverPolicy

from events.changes import ChangeError, ChangeRecorded, decode
from events.fetch import RawRecord
from events.records import Quarantined
from events.store import EventStore, StoreUnavailableError
from events.subjects import ALL_CHANGES, CHANGES_PREFIX
from projections import rows

DDL: Final = """
CREATE TABLE IF NOT EXISTS changes (
    seq BIGINT PRIMARY KEY,
    change_id VARCHAR NOT NULL,
    sender VARCHAR NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    actor VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    principal VARCHAR NOT NULL,
    principal_role VARCHAR NOT NULL,
    summary VARCHAR NOT NULL,
    host VARCHAR NOT NULL,
    custom_details JSON,
    links JSON NOT NULL,
    body JSON NOT NULL
);
"""
POSITION: Final = "changes_seq"  # key in `meta`: the last change record folded in
# How long before an incident's detection a change counts as one that may have caused it.
BEFORE_DETECTION: Final = timedelta(hours=1)
MAX_LISTED: Final = 10_000

_encode: Final = msgspec.json.Encoder(order="sorted").encode


def create(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(DDL)


def position(cur: duckdb.DuckDBPyConnection) -> int:
    cur.execute("SELECT value FROM meta WHERE key = ?", [POSITION])
    found = cur.fetchone()
    return int(found[0]) if found else 0


def _set_position(cur: duckdb.DuckDBPyConnection, seq: int) -> None:
    cur.execute(
        "INSERT INTO meta VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [POSITION, str(seq)],
    )


def _row(seq: int, record: ChangeRecorded, raw: bytes) -> tuple[Any, ...]:
    return (
        seq,
        record.change_id,
        record.sender,
        record.occurred_at,
        record.recorded_at,
        record.actor,
        record.source.value,
        record.principal.name,
        record.principal.role,
        record.summary,
        record.host,
        None if record.custom_details is None else _encode(record.custom_details).decode(),
        _encode(record.links).decode(),
        raw.decode(),
    )


def split(records: Sequence[RawRecord]) -> tuple[list[tuple[Any, ...]], list[Quarantined]]:
    """Rows of the records that decode; the others, quarantined."""
    found: list[tuple[Any, ...]] = []
    strays: list[Quarantined] = []
    for seq, subject, raw in records:
        try:
            found.append(_row(seq, decode(raw), raw))
        except (ChangeError, UnicodeDecodeError) as exc:
            strays.append(Quarantined(seq, subject, str(exc) or type(exc).__name__, raw))
    return found, strays


def apply(cur: duckdb.DuckDBPyConnection, found: list[tuple[Any, ...]], to_seq: int) -> None:
    """Add rows and move the position to `to_seq`, in `cur`'s transaction."""
    if found:
        rows.append(cur, "changes", found)
    _set_position(cur, to_seq)


def expire(cur: duckdb.DuckDBPyConnection, first_seq: int) -> int:
    """Forget the changes below `first_seq` (aged out of the log); returns how many."""
    [(deleted,)] = cur.execute("DELETE FROM changes WHERE seq < ?", [first_seq]).fetchall()
    return int(deleted)


def release(cur: duckdb.DuckDBPyConnection) -> int:
    """Fold in the quarantined change records this version reads (an older one could not);
    returns how many left the quarantine."""
    cur.execute(
        "SELECT seq, subject, raw FROM quarantine WHERE starts_with(subject, ?) ORDER BY seq",
        [f"{CHANGES_PREFIX}."],
    )
    found, _ = split([(int(seq), str(subject), bytes(raw)) for seq, subject, raw in cur.fetchall()])
    if found:
        rows.append(cur, "changes", found)
        seqs = [row[0] for row in found]
        cur.execute("DELETE FROM quarantine WHERE seq IN (SELECT unnest(?))", [seqs])
    return len(found)


async def follow(
    store: EventStore, from_seq: int, batch_size: int = 1000
) -> AsyncIterator[list[RawRecord]]:
    """Change records from `from_seq` on, as they arrive, for ever (an ordered consumer on
    `changes.>`: the stream skips every other record for us)."""
    if not store.nc.is_connected:
        raise StoreUnavailableError("not connected to NATS (reconnecting)")
    js = store.nc.jetstream(timeout=store.timeout)
    config = ConsumerConfig(
        deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=max(from_seq, 1)
    )
    sub = await js.subscribe(ALL_CHANGES, stream=store.stream, config=config, ordered_consumer=True)
    try:
        while True:
            try:
                first: Msg = await sub.next_msg(timeout=1.0)
            except nats.errors.TimeoutError:
                continue  # no changes lately; a cancelled follower leaves from here
            msgs = [first]
            while len(msgs) < batch_size and sub.pending_msgs > 0:
                msgs.append(await sub.next_msg(timeout=store.timeout))
            yield [(m.metadata.sequence.stream, m.subject, m.data) for m in msgs]
    finally:
        with suppress(nats.errors.ConnectionClosedError, nats.errors.BadSubscriptionError):
            await sub.unsubscribe()


_COLUMNS: Final = """
    seq, change_id, occurred_at, recorded_at, source, host, summary, principal, principal_role,
    custom_details, links
"""


def _listed(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description or []]
    found = []
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        row["links"] = msgspec.json.decode(row["links"])
        if row["custom_details"] is not None:
            row["custom_details"] = msgspec.json.decode(row["custom_details"])
        found.append(row)
    return found


def between(
    cur: duckdb.DuckDBPyConnection,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 1000,
) -> list[dict[str, Any]]:
    """Changes that happened in [since, until] (either open), oldest first."""
    cur.execute(
        f"SELECT {_COLUMNS} FROM changes "
        "WHERE ($1::TIMESTAMPTZ IS NULL OR occurred_at >= $1) "
        "AND ($2::TIMESTAMPTZ IS NULL OR occurred_at <= $2) "
        "ORDER BY occurred_at, seq LIMIT $3",
        [since, until, min(limit, MAX_LISTED)],
    )
    return _listed(cur)


def before(
    cur: duckdb.DuckDBPyConnection,
    detected_at: datetime | None,
    as_of: datetime | None = None,
    window: timedelta = BEFORE_DETECTION,
) -> list[dict[str, Any]]:
    """Changes that happened in the `window` up to `detected_at`, oldest first; with `as_of`,
    only those the log had recorded by then."""
    if detected_at is None:
        return []
    cur.execute(
        "SELECT occurred_at, summary, source, host, links, change_id FROM changes "
        "WHERE occurred_at BETWEEN $1 AND $2 "
        "AND ($3::TIMESTAMPTZ IS NULL OR recorded_at <= $3) "
        "ORDER BY occurred_at, seq LIMIT $4",
        [detected_at - window, detected_at, as_of, MAX_LISTED],
    )
    names = [d[0] for d in cur.description or []]
    found = [dict(zip(names, values, strict=True)) for values in cur.fetchall()]
    for row in found:
        row["links"] = msgspec.json.decode(row["links"])
    return found
