"""Hypothesis strategies for events: every field drawn within its msgspec Meta limits.

Built from the types' own information (`msgspec.inspect`), so every event type and field is
covered and a new field is generated without touching the tests.
"""

import string
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

from events.schema import EVENT_TYPES, Event

# msgspec writes floats in [1e-9, 1e-4) as "0.00001" / "1e-7" where Python writes "1e-05" /
# "1e-07"; the hash chain covers stored bytes, not a re-encoding, so only the sorted, compact
# shape of the JSON is compared with the stdlib here.
STDLIB_FLOAT_GAP = (1e-9, 1e-4)

# Mixed alphabet: ASCII (with control characters) and any non-surrogate code point.
_CHARS = st.one_of(
    st.characters(min_codepoint=0, max_codepoint=0x7F),
    st.characters(exclude_categories=["Cs"]),
)

_HEX = "0123456789abcdef"
# Direct strategies for the schema's id patterns (st.from_regex is several times slower).
_PATTERNS: dict[str, st.SearchStrategy[str]] = {
    r"^[!-~]{1,128}\Z": st.text(
        st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=24
    ),
    r"^[A-Za-z0-9_-]{1,64}\Z": st.text(
        string.ascii_letters + string.digits + "_-", min_size=1, max_size=16
    ),
    r"^([0-9a-f]{64})?\Z": st.just("") | st.text(_HEX, min_size=64, max_size=64),
    r"^[0-9a-fA-F]{32}\Z": st.text(_HEX + "ABCDEF", min_size=32, max_size=32),
    r"^[0-9a-fA-F]{16}\Z": st.text(_HEX + "ABCDEF", min_size=16, max_size=16),
}


def _text(info: mi.StrType) -> st.SearchStrategy[str]:
    if info.pattern is not None:
        if info.pattern in _PATTERNS:
            return _PATTERNS[info.pattern]
        return st.from_regex(info.pattern, fullmatch=True)
    low = info.min_length or 0
    high = min(info.max_length if info.max_length is not None else 40, low + 40)
    return st.text(_CHARS, min_size=low, max_size=high)


def _times(offsets: bool) -> st.SearchStrategy[datetime]:
    zones: st.SearchStrategy[timezone] = st.just(UTC)
    if offsets:
        zones = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
            lambda minutes: timezone(timedelta(minutes=minutes))
        )
    return st.datetimes(
        min_value=datetime(1970, 1, 1), max_value=datetime(2100, 1, 1), timezones=zones
    )


def _value(info: mi.Type, offsets: bool, stdlib_floats: bool) -> st.SearchStrategy[Any]:
    match info:
        case mi.StrType():
            return _text(info)
        case mi.DateTimeType():
            return _times(offsets)
        case mi.DateType():
            return st.dates(date(1970, 1, 1), date(2100, 1, 1))
        case mi.EnumType():
            return st.sampled_from(list(info.cls))
        case mi.BoolType():
            return st.booleans()
        case mi.IntType():
            return st.integers(info.ge, info.le)
        case mi.FloatType():
            floats = st.floats(info.ge, info.le, allow_nan=False)
            if stdlib_floats:
                low, high = STDLIB_FLOAT_GAP
                floats = floats.filter(lambda f: not low <= f < high)
            return floats
        case mi.NoneType():
            return st.none()
        case mi.UnionType():
            return st.one_of(*(_value(t, offsets, stdlib_floats) for t in info.types))
        case mi.DictType():
            return st.dictionaries(
                _value(info.key_type, offsets, stdlib_floats),
                _value(info.value_type, offsets, stdlib_floats),
                max_size=3,
            )
        case mi.VarTupleType():
            return st.lists(_value(info.item_type, offsets, stdlib_floats), max_size=3).map(tuple)
        case mi.StructType():  # a nested Struct (the envelope's `principal`)
            fields = {f.name: _value(f.type, offsets, stdlib_floats) for f in info.fields}
            return st.fixed_dictionaries(fields).map(lambda kwargs: info.cls(**kwargs))
    raise NotImplementedError(f"no strategy for {info!r}")


def event_of(
    cls: type[Event], *, offsets: bool = False, stdlib_floats: bool = True
) -> st.SearchStrategy[Any]:
    """Valid instances of one event type, every field drawn within its Meta limits."""
    struct = mi.type_info(cls)
    assert isinstance(struct, mi.StructType)
    fields = {f.name: _value(f.type, offsets, stdlib_floats) for f in struct.fields}
    return st.fixed_dictionaries(fields).map(lambda kwargs: cls(**kwargs))


def events_for(incident_id: str, min_size: int = 1) -> st.SearchStrategy[list[Any]]:
    """A few events of any types, all of one incident."""
    one = st.sampled_from(EVENT_TYPES).flatmap(
        lambda cls: event_of(cls).map(lambda e: msgspec.structs.replace(e, incident_id=incident_id))
    )
    return st.lists(one, min_size=min_size, max_size=5)


# Hostile input (issue 16.6): each strategy below draws bytes or values the intake must refuse
# with a 4xx (or an error reply on NATS), naming the field where one is to blame.

# Characters that would break a NATS subject token (wildcards, the separator, whitespace).
SUBJECT_BREAKERS = "*>. \n\t\r"
# Past the 64 KiB an event may take, under the 1 MiB a body may.
HUGE = (64 * 1024 + 1, 300_000)
_MAX_OFFSET_MINUTES = 23 * 60 + 59


def hostile_ids() -> st.SearchStrategy[str]:
    """Ids with at least one character a subject token may not hold."""
    plain = st.text(string.ascii_letters + string.digits + "-_", max_size=8)
    breaker = st.text(SUBJECT_BREAKERS, min_size=1, max_size=3)
    return st.tuples(plain, breaker, plain).map("".join)


def overflowing_instants() -> st.SearchStrategy[str]:
    """RFC 3339 times whose offset moves them past year 9999, or before year 1, in UTC."""
    offsets = st.integers(1, _MAX_OFFSET_MINUTES).map(lambda m: f"{m // 60:02}:{m % 60:02}")
    late = offsets.map(lambda hhmm: f"9999-12-31T23:59:59-{hhmm}")
    return late | offsets.map(lambda hhmm: f"0001-01-01T00:00:00+{hhmm}")


def huge_strings() -> st.SearchStrategy[str]:
    return st.integers(*HUGE).map(lambda size: "x" * size)


def deep_nesting() -> st.SearchStrategy[bytes]:
    """JSON arrays or objects nested hundreds to thousands deep."""
    depth = st.integers(200, 5_000)
    arrays = depth.map(lambda n: b"[" * n + b"]" * n)
    objects = depth.map(lambda n: b'{"a":' * n + b"1" + b"}" * n)
    return arrays | objects


def garbage_bytes() -> st.SearchStrategy[bytes]:
    return st.binary(min_size=1, max_size=512)


INVALID_UTF8 = b"ab\xff\xfe\xc0cd"
_MARK = "\x00HOSTILE\x00"


def _placed(document: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """A copy of `document` with `value` at `path` (keys and indexes)."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(document, list):
        assert isinstance(head, int)
        return [
            _placed(item, rest, value) if i == head else item for i, item in enumerate(document)
        ]
    return {**document, head: _placed(document.get(head), rest, value)}


def with_invalid_utf8(document: Any, path: tuple[str | int, ...]) -> bytes:
    """`document` as JSON with the string at `path` made of bytes that are not UTF-8."""
    encoded = msgspec.json.encode(_placed(document, path, _MARK))
    return encoded.replace(msgspec.json.encode(_MARK)[1:-1], INVALID_UTF8)


class Hostile(msgspec.Struct, frozen=True):
    """One hostile body: its bytes, what was done, and the field to blame (None: the whole)."""

    body: bytes
    kind: str
    field: tuple[str | int, ...] | None

    def __repr__(self) -> str:  # short: hypothesis prints the failing example
        return f"Hostile({self.kind}, {self.field}, {len(self.body)} bytes: {self.body[:120]!r})"


class Target(msgspec.Struct, frozen=True):
    """Where a valid `document` keeps an id, a time and a text (None: it has none)."""

    document: Any
    id: tuple[str | int, ...] | None
    time: tuple[str | int, ...]
    text: tuple[str | int, ...]


def hostile_bodies(target: Target) -> st.SearchStrategy[Hostile]:
    """Garbage, deep nesting, or `target.document` with one field made hostile."""

    def placed(kind: str, path: tuple[str | int, ...], values: st.SearchStrategy[Any]) -> Any:
        encode = msgspec.json.encode
        return values.map(lambda v: Hostile(encode(_placed(target.document, path, v)), kind, path))

    kinds = [
        garbage_bytes().map(lambda b: Hostile(b, "garbage", None)),
        deep_nesting().map(lambda b: Hostile(b, "deep", None)),
        st.just(Hostile(with_invalid_utf8(target.document, target.text), "utf8", target.text)),
        placed("huge", target.text, huge_strings()),
        placed("time", target.time, overflowing_instants()),
    ]
    if target.id is not None:
        kinds.append(placed("id", target.id, hostile_ids()))
    return st.one_of(*kinds)
