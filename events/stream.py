"""The JetStream streams the log lives in: their settings, and creating them or repairing drift.

The log's stream holds the events (and correlation, retention and change records); a second
stream, `<name>_IDS`, holds one claim per event id, with the same retention, so that an id stays
bound to one incident for as long as the log keeps evidence of it. Runs once at start-up,
before any `EventStore` appends to or reads from the log. Subjects are among the settings owned
here: a stream created by an older version gains the prefixes added since (`changes.>`) at the
next start, its records untouched.
"""

import logging
from typing import Any, Final

import nats.js.errors
from msgspec import Struct
from nats.aio.client import Client as NATS
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from events.subjects import EVENT_IDS_PREFIX, STREAM_SUBJECTS

log = logging.getLogger(__name__)


class StreamConfigError(Exception):
    """The stream cannot be created, or exists with settings that cannot be brought in line."""


class StreamSettings(Struct, frozen=True):
    name: str = "INCIDENTS"
    retention_s: float = 90 * 86400.0
    replicas: int = 1
    duplicate_window_s: float = 120.0


def event_ids_stream(name: str) -> str:
    """The stream of event-id claims that goes with the log's stream `name`."""
    return f"{name}_IDS"


def stream_config(settings: StreamSettings) -> StreamConfig:
    return _config(settings, settings.name, list(STREAM_SUBJECTS))


def event_ids_config(settings: StreamSettings) -> StreamConfig:
    return _config(settings, event_ids_stream(settings.name), [f"{EVENT_IDS_PREFIX}.>"])


def _config(settings: StreamSettings, name: str, subjects: list[str]) -> StreamConfig:
    return StreamConfig(
        name=name,
        subjects=subjects,
        storage=StorageType.FILE,
        retention=RetentionPolicy.LIMITS,
        discard=DiscardPolicy.OLD,
        max_age=settings.retention_s,
        num_replicas=settings.replicas,
        duplicate_window=settings.duplicate_window_s,
        deny_delete=True,
        deny_purge=True,
        allow_rollup_hdrs=False,
        allow_direct=True,
        allow_atomic=True,
    )


# The settings this service owns; anything else on the stream (metadata, limits set by an
# operator) is left alone.
_OWNED: Final = (
    "subjects",
    "max_age",
    "num_replicas",
    "duplicate_window",
    "deny_delete",
    "deny_purge",
    "allow_rollup_hdrs",
    "allow_direct",
    "allow_atomic",
)


def _drift(current: StreamConfig, wanted: StreamConfig) -> dict[str, tuple[Any, Any]]:
    drift: dict[str, tuple[Any, Any]] = {}
    for name in _OWNED:
        have, want = getattr(current, name), getattr(wanted, name)
        if name == "subjects":
            have, want = sorted(have or []), sorted(want)
        if have != want:
            drift[name] = (have, want)
    return drift


async def ensure_stream(nc: NATS, settings: StreamSettings) -> dict[str, tuple[Any, Any]]:
    """Create both streams or bring their owned settings in line; returns what was changed in
    the log's stream (the id stream follows it, and its changes are logged)."""
    drift = await _ensure(nc, stream_config(settings))
    await _ensure(nc, event_ids_config(settings))
    return drift


async def _ensure(nc: NATS, wanted: StreamConfig) -> dict[str, tuple[Any, Any]]:
    jsm = nc.jetstream()
    name = str(wanted.name)
    try:
        info = await jsm.stream_info(name)
    except nats.js.errors.NotFoundError:
        try:
            await jsm.add_stream(wanted)
        except nats.js.errors.APIError as exc:
            raise StreamConfigError(f"cannot create stream {name}: {exc}") from exc
        log.info("created stream %s", name)
        return {}
    if StorageType(info.config.storage or "file") is not StorageType.FILE:
        raise StreamConfigError(
            f"stream {name} uses {info.config.storage} storage; the log needs file storage"
        )
    drift = _drift(info.config, wanted)
    if drift:
        log.warning("stream %s drifted from its config, updating: %s", name, drift)
        merged = info.config
        for setting, (_, want) in drift.items():
            setattr(merged, setting, want)
        try:
            await jsm.update_stream(merged)
        except nats.js.errors.APIError as exc:
            raise StreamConfigError(f"stream {name} cannot be updated: {exc}") from exc
    return drift
