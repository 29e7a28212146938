"""DuckDB read-model tables, all derived from the log; the checkpoint is the projector's position.

`events` holds every incident event (timeline, audit) with the effect of later corrections
(`effective_at`, `retracted`); `incidents` holds each incident folded by the domain's `evolve`;
`alerts` and `comms` are narrow tables the metrics and breach queries scan; `quarantine` holds
the records of the log that do not decode (sequence, subject, reason, exact bytes).
"""

from typing import Final

import duckdb

# 2: lifecycle times are effective (corrected, retractions taken back); `declared_at`,
# `first_comms_at`; `status` is `closed` once closed. Older files are upgraded by the projector.
# 3: the `quarantine` table. Created where missing: nothing to fold again (a projector of an
# older version stopped at the first such record instead of passing it).
# 4: `impact_started_at` (issue 12): folded again, older states lack it.
# 5: `detected_at` is the effective detection (issue 12: the earliest of the first alert's start,
# the declaration's corrected detected_at and the declaration); the impact statement's columns,
# `alerts_truncated`, `alert_opened`, `taken_over`: folded again, older states lack them.
# 6: the `action_items` table (issue 13), one row per action item of the fold, and the
# automation columns (`auto_started`, `auto_succeeded`, `auto_first`): folded again to fill them.
# 7: `events` without its primary key (issue 15): no query looks an event up by `seq` alone
# (ranges on it use zone maps, the order rows arrive in), the checkpoint already keeps each
# event once, and the index cost ~15% of the inserts and stayed in memory. Older files copy
# the table once (`_unkey_events`); nothing to fold again for that.
SCHEMA_VERSION: Final = 7
# Files older than this hold folded states this version folds differently.
FOLDED_SINCE: Final = 6
# Files older than this have the primary key on `events.seq`.
UNKEYED_SINCE: Final = 7

DDL: Final = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoint (
    id INTEGER PRIMARY KEY,
    seq BIGINT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT NOT NULL,
    event_id VARCHAR NOT NULL,
    incident_id VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    occurred_at TIMESTAMPTZ NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL,
    actor VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    trace_id VARCHAR,
    span_id VARCHAR,
    correlation_id VARCHAR,
    causation_id VARCHAR,
    hash VARCHAR NOT NULL,
    body JSON NOT NULL,
    effective_at TIMESTAMPTZ NOT NULL,
    retracted BOOLEAN NOT NULL
);
CREATE TABLE IF NOT EXISTS incidents (
    incident_id VARCHAR PRIMARY KEY,
    title VARCHAR NOT NULL,
    severity VARCHAR NOT NULL,
    category VARCHAR NOT NULL,
    services VARCHAR[] NOT NULL,
    status VARCHAR NOT NULL,
    phase VARCHAR NOT NULL,
    opened_at TIMESTAMPTZ NOT NULL,
    detected_at TIMESTAMPTZ,
    acknowledged_at TIMESTAMPTZ,
    mitigated_at TIMESTAMPTZ,
    resolved_at TIMESTAMPTZ,
    closed_at TIMESTAMPTZ,
    commander VARCHAR,
    roles JSON NOT NULL,
    escalation_level INTEGER NOT NULL,
    open_mitigations INTEGER NOT NULL,
    alerts_firing INTEGER NOT NULL,
    comms_count INTEGER NOT NULL,
    last_comms_at TIMESTAMPTZ,
    next_update_at TIMESTAMPTZ,
    postmortem_published_at TIMESTAMPTZ,
    reopen_count INTEGER NOT NULL,
    action_items_open INTEGER NOT NULL,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    state BLOB NOT NULL,
    declared_at TIMESTAMPTZ,
    first_comms_at TIMESTAMPTZ,
    impact_started_at TIMESTAMPTZ,
    impact_services VARCHAR[],
    impact_regions VARCHAR[],
    impact_customers VARCHAR[],
    customers_affected INTEGER,
    users_affected_pct DOUBLE,
    data_loss BOOLEAN,
    security BOOLEAN,
    revenue_at_risk BIGINT,
    impact_text VARCHAR,
    alerts_truncated INTEGER,
    alert_opened BOOLEAN,
    taken_over BOOLEAN,
    auto_started BOOLEAN,
    auto_succeeded BOOLEAN,
    auto_first BOOLEAN
);
CREATE TABLE IF NOT EXISTS alerts (
    incident_id VARCHAR NOT NULL,
    fingerprint VARCHAR NOT NULL,
    alertname VARCHAR NOT NULL,
    severity VARCHAR,
    firing BOOLEAN NOT NULL,
    starts_at TIMESTAMPTZ,
    ends_at TIMESTAMPTZ,
    first_seq BIGINT NOT NULL,
    last_seq BIGINT NOT NULL,
    PRIMARY KEY (incident_id, fingerprint)
);
CREATE TABLE IF NOT EXISTS quarantine (
    seq BIGINT PRIMARY KEY,
    subject VARCHAR NOT NULL,
    reason VARCHAR NOT NULL,
    raw BLOB NOT NULL
);
-- The fold's action items (`projections.action_items`), in the order they were added
-- (`position`). `due_at`: the end of the due day in UTC, when a not-done item becomes overdue.
-- No primary key: the fold is total, and a log holding an item id twice must not stop the
-- projector (`rows.save` replaces an incident's rows whole).
CREATE TABLE IF NOT EXISTS action_items (
    incident_id VARCHAR NOT NULL,
    item_id VARCHAR NOT NULL,
    position INTEGER NOT NULL,
    title VARCHAR NOT NULL,
    owner VARCHAR,
    due DATE,
    due_at TIMESTAMPTZ,
    priority VARCHAR,
    status VARCHAR NOT NULL,
    ticket_url VARCHAR
);
"""

# Views over the tables: the read models DESIGN section 8 names, for SQL users (README) and for
# `queries`, which reads them. Replaced at every `create`, so a changed view needs no migration.
# Metrics and breaches live in their own modules because they take parameters (policy, now).
VIEWS: Final = """
CREATE OR REPLACE VIEW status_board AS
SELECT i.*, now() - i.opened_at AS age
FROM incidents i
WHERE i.resolved_at IS NULL AND i.closed_at IS NULL;

-- `principal`, `principal_role`: who was authenticated (NULL for events stored before the log
-- recorded it); `actor` is who the event says did it, which a person may claim.
CREATE OR REPLACE VIEW timeline AS
SELECT incident_id, seq, event_id, type, occurred_at, effective_at, recorded_at, actor,
       body -> 'principal' ->> 'name' AS principal,
       body -> 'principal' ->> 'role' AS principal_role,
       source, trace_id, span_id, correlation_id, causation_id, retracted, body
FROM events;

CREATE OR REPLACE VIEW audit AS
SELECT recorded_at, actor,
       body -> 'principal' ->> 'name' AS principal,
       body -> 'principal' ->> 'role' AS principal_role,
       source, type, incident_id, event_id, seq, occurred_at, trace_id
FROM events;
"""


# Columns `incidents` gained after version 1, by the version that added them, in table order
# (rows are appended by position, so an upgraded file must get them in this order).
ADDED_COLUMNS: Final[dict[int, tuple[tuple[str, str], ...]]] = {
    2: (
        ("declared_at", "TIMESTAMPTZ"),
        ("first_comms_at", "TIMESTAMPTZ"),
    ),
    4: (("impact_started_at", "TIMESTAMPTZ"),),
    5: (
        ("impact_services", "VARCHAR[]"),
        ("impact_regions", "VARCHAR[]"),
        ("impact_customers", "VARCHAR[]"),
        ("customers_affected", "INTEGER"),
        ("users_affected_pct", "DOUBLE"),
        ("data_loss", "BOOLEAN"),
        ("security", "BOOLEAN"),
        ("revenue_at_risk", "BIGINT"),
        ("impact_text", "VARCHAR"),
        ("alerts_truncated", "INTEGER"),
        ("alert_opened", "BOOLEAN"),
        ("taken_over", "BOOLEAN"),
    ),
    6: (
        ("auto_started", "BOOLEAN"),
        ("auto_succeeded", "BOOLEAN"),
        ("auto_first", "BOOLEAN"),
    ),
}
_ADDED: Final = "".join(
    f"ALTER TABLE incidents ADD COLUMN IF NOT EXISTS {name} {kind};\n"
    for columns in ADDED_COLUMNS.values()
    for name, kind in columns
)


def create(con: duckdb.DuckDBPyConnection) -> bool:
    """Create what is missing. True when the file was written before `FOLDED_SINCE`: its
    folded states must be folded again from its events (`Projector` does, then `upgraded`)."""
    con.execute(DDL)
    con.execute(_ADDED)
    con.execute(VIEWS)
    found = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    con.execute("INSERT INTO checkpoint VALUES (1, 0, now()) ON CONFLICT DO NOTHING")
    if found is None:
        upgraded(con)
        return False
    version = int(found[0])
    if version < UNKEYED_SINCE:
        _unkey_events(con)
    if version < FOLDED_SINCE:
        return True
    if version < SCHEMA_VERSION:
        upgraded(con)  # what it lacked, DDL created above
    return False


def _unkey_events(con: duckdb.DuckDBPyConnection) -> None:
    """Copy `events` into a table without the primary key (DuckDB cannot drop a constraint),
    once: the version is marked later, by whoever finishes the upgrade."""
    [(keyed,)] = con.execute(
        "SELECT count(*) FROM duckdb_constraints() "
        "WHERE table_name = 'events' AND constraint_type = 'PRIMARY KEY'"
    ).fetchall()
    if not keyed:
        return
    columns = DDL.split("CREATE TABLE IF NOT EXISTS events (", 1)[1].split(");", 1)[0]
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"CREATE TABLE events_unkeyed ({columns})")
        con.execute("INSERT INTO events_unkeyed SELECT * FROM events ORDER BY seq")
        con.execute("DROP TABLE events")
        # The views bind to the table by name: they read the copy from here on.
        con.execute("ALTER TABLE events_unkeyed RENAME TO events")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def upgraded(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
