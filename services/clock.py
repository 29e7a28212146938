"""The one clock type: every part that needs "now" takes a `Clock`; tests pass a fake one."""

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TypeAlias

Clock: TypeAlias = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def to_utc(moment: datetime) -> datetime:
    """`moment` in UTC. A naive time is refused (ValueError): the zone it meant would be a guess.

    The one rule for times that come from outside (query bounds, CLI options); event bodies get
    the same from msgspec (`tz=True`).
    """
    if moment.utcoffset() is None:
        raise ValueError(
            f"{moment.isoformat()} has no UTC offset: add Z or +HH:MM, e.g. 2026-01-02T10:00:00Z"
        )
    return moment.astimezone(UTC)


def utc_text(moment: datetime | str) -> str:
    """A time for people, always in UTC: "2026-01-02 10:00:00Z" (naive means UTC already)."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value.strftime("%Y-%m-%d %H:%M:%SZ")
