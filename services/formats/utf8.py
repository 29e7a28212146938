"""Bytes that are not UTF-8 inside a JSON body, located by the field that holds them. Pure.

JSON text is UTF-8 (RFC 8259). msgspec refuses other bytes with a bare `UnicodeDecodeError`
that names no field, which every edge used to let through as a 500. `problem(body)` says which
string (or key) holds them, so each edge answers a 4xx naming the field: a `ServiceError`
(`require`) for our routes and NATS, or PagerDuty's own error list.
"""

import codecs
from typing import Any, Final

import msgspec

from services.errors import ErrorKind, ServiceError

# What the undecodable bytes become while looking for them: noncharacters no sender means.
_MARK: Final = "\ufdd0\ufdd1"
_HANDLER: Final = "incidents-invalid-utf8"


def _mark(exc: UnicodeError) -> tuple[str, int]:
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return _MARK, exc.end


codecs.register_error(_HANDLER, _mark)


class Utf8Problem(msgspec.Struct, frozen=True):
    """Where: the field path (`alerts[0].labels.alertname`), None for the body as a whole."""

    field: str | None
    detail: str


def problem(body: bytes) -> Utf8Problem | None:
    """None when `body` is UTF-8; else which field holds the first bytes that are not."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = f"byte 0x{body[exc.start]:02x} at offset {exc.start} of the body"
        try:
            parsed = msgspec.json.decode(body.decode("utf-8", _HANDLER))
            field = _find(parsed, "")
        except (msgspec.DecodeError, RecursionError):
            field = None  # outside any string, or not JSON at all
        return Utf8Problem(field or None, f"is not valid UTF-8 ({where})")
    return None


def require(body: bytes, kind: ErrorKind = ErrorKind.MALFORMED) -> None:
    """Refuse `body` unless it is UTF-8, naming the field that is not."""
    found = problem(body)
    if found is not None:
        detail = found.detail if found.field else f"the body {found.detail}"
        raise ServiceError(kind, detail, found.field)


def _find(value: Any, path: str) -> str | None:
    """The path of the first string or key holding the mark ('' for the top level)."""
    if isinstance(value, str):
        return path if _MARK in value else None
    if isinstance(value, list):
        for index, item in enumerate(value):
            found = _find(item, f"{path}[{index}]")
            if found is not None:
                return found
    elif isinstance(value, dict):
        for key, item in value.items():
            if _MARK in key:
                return path  # a key we cannot spell: name the object that holds it
            found = _find(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    return None
