"""Opening the read-model database: one DuckDB file, sealed against files, network and config.

The projector writes through its own cursor; readers and the SQL sandbox use cursors of the same
instance. External access, extension loading and configuration changes are off for all of
them, so no query, sandboxed or not, can read a file or reach the network.

Times: the instance's `TimeZone` is UTC, whatever the host's (`TZ`, /etc/localtime). DuckDB
otherwise answers TIMESTAMPTZ values in the host zone (an event at 02:00Z comes back as
11:00+09:00 under `TZ=Asia/Tokyo`), and casts to text or dates, `date_trunc` and the naive
values of SQL users follow that zone too.
"""

from pathlib import Path
from typing import Final

import duckdb

from projections.memory import DEFAULT_MEMORY_LIMIT, MIN_MEMORY_LIMIT

SEALED: Final = {
    "enable_external_access": "false",
    "autoload_known_extensions": "false",
    "autoinstall_known_extensions": "false",
    "allow_community_extensions": "false",
    "max_temp_directory_size": "1GB",
}
# `memory_limit`, a bound on the whole instance (projector and readers, its buffer pool), beneath
# the SQL sandbox's own per-query watchdog; what spills goes to `<file>.tmp` beside the database,
# and no further. `INCIDENTS_DUCKDB_MEMORY_LIMIT` sets it; default and floor: `projections.memory`.
TIME_ZONE: Final = "UTC"


def open_database(
    path: Path | str, memory_limit: int = DEFAULT_MEMORY_LIMIT
) -> duckdb.DuckDBPyConnection:
    """`memory_limit` in bytes. A file this process holds open already must be opened with the
    same limit: DuckDB refuses a second configuration of one instance."""
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    config: dict[str, str | bool | int | float | list[str]] = dict(SEALED)
    config["memory_limit"] = f"{max(memory_limit, MIN_MEMORY_LIMIT)}B"
    # In memory (as-of reconstructions) nothing spills: DuckDB would use ./.tmp of the cwd.
    if str(path) == ":memory:":
        config["temp_directory"] = ""
    con = duckdb.connect(str(path), config=config)
    # `TimeZone` belongs to the ICU extension (built into the wheel), which DuckDB loads after
    # it has read `config`: so it is set here, globally (cursors are connections of their own),
    # and only then is the configuration locked. A file this process already holds open is the
    # same instance, sealed by its first opening.
    [(locked,)] = con.execute("SELECT current_setting('lock_configuration')").fetchall()
    if not locked:
        con.execute(f"SET GLOBAL TimeZone = '{TIME_ZONE}'")
        con.execute("SET GLOBAL lock_configuration = true")
    [(zone,)] = con.execute("SELECT current_setting('TimeZone')").fetchall()
    if zone != TIME_ZONE:
        con.close()
        raise RuntimeError(f"{path} is open in this process with TimeZone {zone}, not UTC")
    return con
