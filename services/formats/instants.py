"""Times from outside must exist in UTC. Pure.

A time with an offset is an instant: the log stores it in UTC. Near the ends of the calendar an
offset can move it out of range (`9999-12-31T23:59:59-23:59` is in year 10000 in UTC,
`0001-01-01T00:00:00+23:59` in year 0): msgspec accepts such a value, and converting it later
raised an `OverflowError` (a 500, or no NATS reply at all). `require_utc` refuses it at the
edge, naming the field.
"""

from datetime import UTC, datetime
from functools import cache
from typing import Final

import msgspec

from services.errors import ErrorKind, ServiceError

OUT_OF_RANGE: Final = "is out of range in UTC: its offset moves it before year 1 or after 9999"


def require_utc(value: object, where: str = "") -> None:
    """Refuse `value` (a Struct, list, dict or datetime) if any time in it has no UTC form."""
    path = _out_of_range(value, where)
    if path is not None:
        raise ServiceError(ErrorKind.INVALID, OUT_OF_RANGE, path or None)


def _out_of_range(value: object, path: str) -> str | None:
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            return None
        try:
            value.astimezone(UTC)
        except OverflowError:
            return path
        return None
    if isinstance(value, msgspec.Struct):
        items = [(wire, getattr(value, name)) for wire, name in _fields(type(value))]
        return _first(items, path)
    if isinstance(value, dict):
        return _first([(str(k), v) for k, v in value.items()], path)
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _out_of_range(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


@cache
def _fields(struct: type[msgspec.Struct]) -> tuple[tuple[str, str], ...]:
    """(name on the wire, attribute) of each field: `msgspec.structs.fields` resolves the
    type hints at every call (~80% of decoding an event measured), a type's never change."""
    return tuple((f.encode_name, f.name) for f in msgspec.structs.fields(struct))


def _first(items: list[tuple[str, object]], path: str) -> str | None:
    for name, item in items:
        found = _out_of_range(item, f"{path}.{name}" if path else name)
        if found is not None:
            return found
    return None
