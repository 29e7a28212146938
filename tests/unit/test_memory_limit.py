"""INCIDENTS_DUCKDB_MEMORY_LIMIT: sizes accepted, errors naming the variable, the default shared
with `projections.database` (both read `projections.memory`), and the limit DuckDB is opened
with, never below the floor."""

import pytest

from projections import database
from projections.memory import DEFAULT_MEMORY_LIMIT
from services.config import Config, ConfigError

VARIABLE = "INCIDENTS_DUCKDB_MEMORY_LIMIT"


def test_the_default_is_the_databases() -> None:
    assert Config.from_env({}).duckdb_memory_limit == DEFAULT_MEMORY_LIMIT
    assert database.open_database.__defaults__ == (DEFAULT_MEMORY_LIMIT,)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("256MB", 256_000_000),
        ("256MiB", 256 * 2**20),
        ("1GiB", 2**30),
        ("1.5gb", 1_500_000_000),
        ("512 mib", 512 * 2**20),
        ("100000000", 100_000_000),
        ("2TB", 2 * 10**12),
    ],
)
def test_sizes_are_read(text: str, size: int) -> None:
    assert Config.from_env({VARIABLE: text}).duckdb_memory_limit == size


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("lots", "expected a size"),
        ("-1GB", "expected a size"),
        ("1XB", "expected a size"),
        ("16MiB", "at least 32MiB"),
    ],
)
def test_bad_sizes_name_the_variable(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"{VARIABLE}=.*{problem}"):
        Config.from_env({VARIABLE: text})


@pytest.mark.parametrize(
    ("size", "shown"), [(64 * 2**20, "64.0 MiB"), (2**30, "1.0 GiB"), (1, "32.0 MiB")]
)
def test_duckdb_is_opened_with_the_limit(size: int, shown: str) -> None:
    con = database.open_database(":memory:", size)
    try:
        [(limit,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()
    finally:
        con.close()
    assert limit == shown
