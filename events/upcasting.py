"""Upcasters: a stored event in an older shape of its type, brought to the current shape.

The log is never rewritten (its hash chain covers the stored bytes), so an event type changes
by versions: each type has a `SCHEMA_VERSION` (`events.schema`), each record the
`schema_version` it was written in (absent, in records older than versions: 1). A change that
is not purely additive bumps the version and adds one upcaster here, from the previous version:
a pure function from the record, as a JSON object, to the same record one version later.
`events.schema.decode` runs them in turn, before validating, for a record older than its
type; current and newer records decode as they are (a newer record's unknown fields are
ignored by the fold and stay in the raw bytes). Pure: no imports from the rest of the project.
"""

from collections.abc import Callable, Mapping
from typing import Any, Final

Document = dict[str, Any]
Upcaster = Callable[[Document], Document]

# (event type, the version it reads) -> the record one version later. Empty while every event
# type is at version 1. An example, had `incident.escalated` renamed `to` to `target` in v2:
#     ("incident.escalated", 1): lambda doc: {k: v for k, v in doc.items() if k != "to"}
#                                            | {"target": doc.get("to")},
UPCASTERS: Final[dict[tuple[str, int], Upcaster]] = {}


class UpcastError(LookupError):
    """A record older than its type with no way up to the current version."""


def upcast(
    doc: Document,
    kind: str,
    current: int,
    upcasters: Mapping[tuple[str, int], Upcaster] = UPCASTERS,
) -> Document:
    """`doc`, a record of type `kind` at its own `schema_version`, at version `current`."""
    version = doc.get("schema_version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise UpcastError(f"schema_version {version!r} is not a version")
    while version < current:
        step = upcasters.get((kind, version))
        if step is None:
            raise UpcastError(f"no upcaster for {kind} from version {version} to {version + 1}")
        doc = step(doc)
        version += 1
    return doc | {"schema_version": version}
