"""MTTR over a read model of many incidents, by severity, month and service (p50/p95 of repeated
runs of the query the API answers from), against raw DuckDB percentiles over a typed table of
the same incidents: the floor for any such query."""

import time
from collections.abc import Callable
from datetime import datetime
from functools import partial
from pathlib import Path

import duckdb

from bench.common import p50_p95_ms
from bench.history import history
from bench.results import Row, row
from events.records import Stored
from events.schema import IncidentDeclared, IncidentResolved, encode
from projections import metrics
from projections.database import open_database
from projections.projector import Projector

EVENTS_PER_INCIDENT = 6  # history(notes=1)
GROUPINGS = {
    "severity": "severity",
    "month": "date_trunc('month', declared_at)",
    "service": "service",
}
RAW_TABLE = """CREATE TABLE raw_incidents (
    incident_id VARCHAR, severity VARCHAR, service VARCHAR,
    declared_at TIMESTAMPTZ, resolved_at TIMESTAMPTZ)"""


def build(path: Path, incidents: int, done: Callable[[int], None]) -> duckdb.DuckDBPyConnection:
    """The read model of `incidents` (through `Projector.apply`, 20k events per transaction)
    and, in memory, the raw typed table of the same incidents."""
    projector = Projector(open_database(path), None)  # apply() needs no log
    declared: dict[str, tuple[str, str, datetime]] = {}
    facts: list[tuple[str, str, str, datetime, datetime]] = []
    batch: list[Stored] = []
    for seq, event in enumerate(history(incidents * EVENTS_PER_INCIDENT, notes=1, seed=11), 1):
        batch.append(Stored(seq, event, encode(event)))
        if isinstance(event, IncidentDeclared):
            declared[event.incident_id] = (
                event.severity.value,
                event.services[0],
                event.occurred_at,
            )
        elif isinstance(event, IncidentResolved):
            severity, service, at = declared.pop(event.incident_id)
            facts.append((event.incident_id, severity, service, at, event.occurred_at))
        if len(batch) == 20_000:
            projector.apply(batch, seq)
            batch = []
            done(seq)
    if batch:
        projector.apply(batch, batch[-1].seq)
    raw = duckdb.connect()
    raw.execute(RAW_TABLE)
    appender = raw.appender("raw_incidents")
    appender.append_rows(facts)
    appender.flush()
    return raw


def mttr_rows(
    path: Path, raw: duckdb.DuckDBPyConnection, incidents: int, samples: int
) -> list[Row]:
    con = open_database(path)
    cur = con.cursor()
    rows = []
    try:
        for key, expression in GROUPINGS.items():
            query = _timed(samples, partial(metrics.mttx, cur, key))
            floor = _timed(samples, partial(_raw_query, raw, expression))
            (p50, p95), (raw_p50, raw_p95) = p50_p95_ms(query), p50_p95_ms(floor)
            rows.append(
                row(
                    f"mttr_{key}",
                    f"MTTR by {key}, {incidents:,} incidents / "
                    f"{incidents * EVENTS_PER_INCIDENT:,} events ({samples} runs)",
                    p95,
                    "ms",
                    f"p50 {p50:,.1f} ms, p95 {p95:,.1f} ms",
                    [("raw DuckDB percentiles over a typed table, p95", raw_p95, "ms")],
                    details={"p50_ms": p50, "p95_ms": p95, "raw_p50_ms": raw_p50},
                )
            )
    finally:
        cur.close()
        con.close()
    return rows


def _raw_query(raw: duckdb.DuckDBPyConnection, group: str) -> object:
    seconds = "epoch(resolved_at) - epoch(declared_at)"
    return raw.execute(f"""SELECT {group} AS grp, count(*), avg({seconds}),
        quantile_cont({seconds}, 0.5), quantile_cont({seconds}, 0.9), max({seconds})
        FROM raw_incidents GROUP BY grp ORDER BY grp""").fetchall()


def _timed(samples: int, call: Callable[[], object]) -> list[float]:
    timings = []
    for _ in range(samples):
        start = time.perf_counter()
        call()
        timings.append(time.perf_counter() - start)
    return timings
