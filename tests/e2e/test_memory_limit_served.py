"""INCIDENTS_DUCKDB_MEMORY_LIMIT bounds every read-model file the service opens: the live one,
and the generation a replay builds and swaps in."""

from pathlib import Path

import duckdb

from services.bootstrap import running
from services.config import Config
from services.natsserver import EmbeddedNatsServer


def _limit(con: duckdb.DuckDBPyConnection) -> str:
    [(limit,)] = con.execute("SELECT current_setting('memory_limit')").fetchall()
    return str(limit)


async def test_the_live_file_and_a_replayed_one_get_the_configured_limit(
    nats_server: EmbeddedNatsServer, tmp_path: Path
) -> None:
    config = Config(
        nats_url=nats_server.url,
        data_dir=tmp_path / "var",
        http_port=0,
        duckdb_memory_limit=64 * 2**20,
    )
    async with running(config) as service:
        assert _limit(service.models.reader.con) == "64.0 MiB"
        status = await service.models.replay(verify=True)
        assert status.state == "done", status.error
        assert status.differences == []
        assert _limit(service.models.reader.con) == "64.0 MiB"
