"""Opening the read-model database: one DuckDB file, sealed against files, network and config.

The projector writes through its own cursor; readers and the SQL sandbox use cursors of the same
instance. External access, extension loading and configuration changes are off for all of
them, so no query, sandboxed or not, can read a file or reach the network.
"""

from pathlib import Path
from typing import Final

import duckdb

SEALED: Final = {
    "enable_external_access": "false",
    "autoload_known_extensions": "false",
    "autoinstall_known_extensions": "false",
    "allow_community_extensions": "false",
    "lock_configuration": "true",
}


def open_database(path: Path | str) -> duckdb.DuckDBPyConnection:
    if str(path) != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    return duckdb.connect(str(path), config=dict(SEALED))
