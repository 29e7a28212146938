"""Why a request failed, in one vocabulary every edge maps to its own answer.

The service layer raises `ServiceError(kind, detail, field)`; the HTTP API turns the kind into a
status code, the NATS intake into an error body, the CLI into an exit code. Nothing here knows
a transport.
"""

import enum
from typing import Final

from events.decisions import Rejected, RejectionKind


class ErrorKind(enum.StrEnum):
    MALFORMED = "malformed"  # not even JSON of the right shape
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"  # the principal's role may not do this
    CONFLICT = "conflict"  # refused by the lifecycle, or a damaged log
    TOO_LARGE = "too_large"
    INVALID = "invalid"  # well-formed, but a field is wrong
    UNAVAILABLE = "unavailable"  # the log did not answer: try again later
    INTERNAL = "internal"  # a bug: logged where it happened


# How strerror spells ENOSPC and EDQUOT, as nats-server and DuckDB quote them in their errors.
_NO_SPACE: Final = ("no space left on device", "disk quota exceeded")


class ServiceError(Exception):
    """A request the service refuses or cannot serve; `field` names the culprit when known."""

    def __init__(self, kind: ErrorKind, detail: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {detail}" if field else detail)
        self.kind = kind
        self.detail = detail
        self.field = field

    def body(self) -> dict[str, str | None]:
        return {"error": self.kind.value, "field": self.field, "detail": self.detail}


_REJECTION_KINDS: Final = {
    RejectionKind.NOT_FOUND: ErrorKind.NOT_FOUND,
    RejectionKind.CONFLICT: ErrorKind.CONFLICT,
    RejectionKind.INVALID: ErrorKind.INVALID,
}


def internal(exc: Exception) -> ServiceError:
    """What a caller is told of a bug (its traceback goes to the log, not to the caller)."""
    return ServiceError(
        ErrorKind.INTERNAL, f"internal error ({type(exc).__name__}); it has been logged"
    )


def out_of_space(text: str) -> bool:
    """Whether an error's text says that a file system is full."""
    lowered = text.lower()
    return any(words in lowered for words in _NO_SPACE)


def storage_full(cause: str) -> str:
    return f"storage full: {cause}; writes resume by themselves once space is freed"


def unavailable(exc: Exception, storage_fault: str | None = None) -> ServiceError:
    """What a request is told when the log did not answer (503 with Retry-After over HTTP):
    the cause, when it is known that the log's storage is full."""
    detail = str(exc) if storage_fault is None else storage_full(storage_fault)
    return ServiceError(ErrorKind.UNAVAILABLE, detail)


def refused(rejection: Rejected, field: str | None = None) -> ServiceError:
    return ServiceError(_REJECTION_KINDS[rejection.kind], rejection.reason, field)


def located(message: str) -> tuple[str | None, str]:
    """(field path, reason) out of a msgspec validation message.

    "Expected `str`, got `int` - at `$.alerts[0].status`" -> ("alerts[0].status", "Expected ...");
    "Object missing required field `title` - at `$.body`" -> ("body.title", "Object missing ...").
    The path names the missing or unknown field itself, so a person knows what to add or drop.
    """
    reason, sep, where = message.rpartition(" - at `$")
    if not sep:
        reason, where = message, ""
    path = where.rstrip("`").lstrip(".")
    if reason.startswith(("Object missing required field `", "Object contains unknown field `")):
        name = reason.split("`")[1]
        path = f"{path}.{name}" if path else name
    return path or None, reason
