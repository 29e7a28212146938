"""ensure_stream: creates the DESIGN 9 config, is idempotent, repairs or reports drift."""

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StorageType, StreamConfig

from events.stream import StreamConfigError, StreamSettings, ensure_stream
from events.subjects import STREAM_SUBJECTS


async def test_creates_the_designed_config_and_is_idempotent(nc: NATS) -> None:
    settings = StreamSettings(retention_s=3600, duplicate_window_s=60)
    assert await ensure_stream(nc, settings) == {}
    config = (await nc.jetstream().stream_info("INCIDENTS")).config
    assert sorted(config.subjects or []) == sorted(STREAM_SUBJECTS)
    assert config.storage == StorageType.FILE
    assert config.max_age == 3600
    assert config.duplicate_window == 60
    assert config.deny_delete and config.deny_purge and config.allow_direct
    assert not config.allow_rollup_hdrs
    assert await ensure_stream(nc, settings) == {}


async def test_drifted_settings_are_updated_and_reported(nc: NATS) -> None:
    await ensure_stream(nc, StreamSettings(retention_s=3600))
    changed = await ensure_stream(nc, StreamSettings(retention_s=7200))
    assert changed == {"max_age": (3600, 7200)}
    config = (await nc.jetstream().stream_info("INCIDENTS")).config
    assert config.max_age == 7200


async def test_a_stream_that_cannot_hold_the_log_is_refused(nc: NATS) -> None:
    await nc.jetstream().add_stream(
        StreamConfig(name="INCIDENTS", subjects=["incidents.>"], storage=StorageType.MEMORY)
    )
    with pytest.raises(StreamConfigError, match="memory"):
        await ensure_stream(nc, StreamSettings())
