"""DuckDB's `memory_limit` for the read models: its default and its floor, in bytes.

Apart from `projections.database` so that `services.config` reads them without importing DuckDB
(~0.4 s on every CLI command).
"""

from typing import Final

DEFAULT_MEMORY_LIMIT: Final = 128 * 2**20
MIN_MEMORY_LIMIT: Final = 32 * 2**20
