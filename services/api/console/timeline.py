"""The incident page's timeline: each event's own facts, and the corrections and retractions
aimed at it shown next to it (pure: rows of `queries.timeline` in, rows for the page out).

An event's details are its body less the envelope every event has (ids, times, actor, hash
chain), each field labelled and typed for the page: times go through the page's UTC filter,
links through its http(s)-only filter, messages keep their lines.
"""

from collections.abc import Iterable
from typing import Any, Final, Literal, NamedTuple

ENVELOPE: Final = frozenset(
    {
        "type",
        "event_id",
        "incident_id",
        "occurred_at",
        "recorded_at",
        "actor",
        "source",
        "trace_id",
        "span_id",
        "correlation_id",
        "causation_id",
        "prev_hash",
        "hash",
        "principal",
        "schema_version",
    }
)
_LINKS: Final = frozenset({"uri", "ticket_url", "generator_url", "href"})
_MESSAGES: Final = frozenset(
    {"message", "text", "markdown", "summary", "details", "reason", "corrected_text"}
)
AMENDMENTS: Final = ("event.corrected", "event.retracted")

Kind = Literal["text", "time", "link", "message", "list", "map", "links"]


class Detail(NamedTuple):
    label: str
    value: Any
    kind: Kind


def _label(key: str) -> str:
    return key.replace("_", " ")


def _kind(key: str, value: Any) -> Kind:
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "links" if value and all(isinstance(v, dict) for v in value) else "list"
    if key in _LINKS:
        return "link"
    if key.endswith("_at") and isinstance(value, str):
        return "time"
    if key in _MESSAGES:
        return "message"
    return "text"


def _shown(value: Any) -> Any:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def _said(value: Any) -> bool:
    """Whether a field says anything (empty text, lists and maps and nulls do not)."""
    return value is not None and value != "" and value != [] and value != {}


def details(body: dict[str, Any]) -> list[Detail]:
    """The event's own fields, in the body's order, those that say something."""
    shown = []
    for key, value in body.items():
        if key in ENVELOPE or not _said(value):
            continue
        if isinstance(value, dict):
            value = {k: _shown(v) for k, v in value.items() if _said(v)}
        shown.append(Detail(_label(key), _shown(value), _kind(key, value)))
    return shown


def entries(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The timeline rows, each with `details` and `amendments`: the corrections and
    retractions that name it (`target_event_id`), in log order."""
    rows = list(events)
    aimed: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        body = dict(row["body"])
        target = body.pop("target_event_id", None)
        if row["type"] in AMENDMENTS and target:
            amendment = {key: row[key] for key in ("type", "seq", "actor", "retracted")}
            aimed.setdefault(target, []).append(amendment | {"details": details(body)})
    return [
        row | {"details": details(row["body"]), "amendments": aimed.get(row["event_id"], [])}
        for row in rows
    ]


def open_mitigations(events: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mitigations started and not completed (retracted events count for nothing)."""
    started: dict[str, dict[str, Any]] = {}
    for row in events:
        if row["retracted"]:
            continue
        mitigation_id = row["body"].get("mitigation_id")
        if row["type"] == "mitigation.started":
            started[mitigation_id] = row["body"]
        elif row["type"] == "mitigation.completed":
            started.pop(mitigation_id, None)
    return list(started.values())
