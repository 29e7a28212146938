"""The `quarantine` table: records of the log that do not decode (DESIGN 8).

Each is kept with its sequence, subject, the reason and its exact bytes, in the transaction
whose checkpoint moves past it, by live projection and replay alike. Records age out with the
log (`expire`). A record quarantined by an older version may decode in this one (a type a newer
replica wrote during a rolling upgrade): `release` folds it in then, as a fresh replay by this
version would, so the read models stay a fold of the log.
"""

import duckdb

from events.records import Quarantined, Stored, record
from projections import rows


def keep(cur: duckdb.DuckDBPyConnection, records: list[Quarantined]) -> None:
    if records:
        rows.append(cur, "quarantine", [(q.seq, q.subject, q.reason, q.raw) for q in records])


def count(cur: duckdb.DuckDBPyConnection) -> int:
    [(found,)] = cur.execute("SELECT count(*) FROM quarantine").fetchall()
    return int(found)


def expire(cur: duckdb.DuckDBPyConnection, first_seq: int) -> int:
    """Forget the records below `first_seq` (aged out of the log); returns how many."""
    [(deleted,)] = cur.execute("DELETE FROM quarantine WHERE seq < ?", [first_seq]).fetchall()
    return int(deleted)


def decodable(cur: duckdb.DuckDBPyConnection) -> list[Stored]:
    """Quarantined records this version decodes, in log order."""
    cur.execute("SELECT seq, subject, raw FROM quarantine ORDER BY seq")
    found = [record(int(seq), str(subject), bytes(raw)) for seq, subject, raw in cur.fetchall()]
    return [r for r in found if isinstance(r, Stored)]


def release(cur: duckdb.DuckDBPyConnection, events: list[Stored]) -> set[str]:
    """Move `events` from the quarantine to the events table, in `cur`'s transaction; returns
    their incidents, whose rows the caller folds again from the events table."""
    if not events:
        return set()
    rows.append(cur, "events", [rows.event_row(s) for s in events])
    cur.execute("DELETE FROM quarantine WHERE seq IN (SELECT unnest(?))", [[s.seq for s in events]])
    return {s.event.incident_id for s in events}
