"""The golden corpus: records exactly as the log stored them must decode, fold and verify the
same in every later version (tests/golden/events/README.md)."""

import hashlib
import json
from pathlib import Path
from typing import Any

import msgspec
from tests_support import as_recorded

from events.chain import verify
from events.incident import fold
from events.schema import TYPE_NAMES, AnyEvent, decode, type_name

GOLDEN = Path(__file__).parents[1] / "golden" / "events"
RECORDS = (GOLDEN / "events.jsonl").read_bytes().splitlines()
FOLDED: dict[str, dict[str, Any]] = json.loads((GOLDEN / "folded.json").read_text())


def _json(value: object) -> Any:
    """`value` as JSON reads back: tuples as lists, sets as sorted lists, times as text."""
    return json.loads(msgspec.json.encode(value, order="sorted"))


def _events() -> list[AnyEvent]:
    return [decode(raw) for raw in RECORDS]


def test_every_event_type_has_a_stored_record() -> None:
    stored = {json.loads(raw)["type"] for raw in RECORDS}
    assert stored >= TYPE_NAMES, f"add a stored record of {sorted(TYPE_NAMES - stored)}"


def test_every_stored_field_decodes_to_what_was_stored() -> None:
    """Fields added later (with defaults) may appear; none stored may change or disappear."""
    for raw in RECORDS:
        stored = json.loads(raw)
        decoded = _json(decode(raw))
        assert type_name(decode(raw)) == stored["type"]
        assert {key: decoded.get(key) for key in stored} == stored


def test_the_chains_verify_over_the_stored_bytes() -> None:
    assert verify(enumerate(RECORDS, start=1)) == []


def test_the_chains_verify_with_the_standard_library_alone() -> None:
    """An auditor's recipe, line by line: the hash covers the record with `"hash":""`."""
    heads: dict[str, str] = {}
    for line in RECORDS:
        doc = json.loads(line)
        claimed, doc["hash"] = doc["hash"], ""
        body = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(body.encode()).hexdigest() == claimed
        assert doc["prev_hash"] == heads.get(doc["incident_id"], "")
        heads[doc["incident_id"]] = claimed


def test_the_fold_is_what_it_was() -> None:
    events = _events()
    for incident_id, expected in FOLDED.items():
        state = fold(e for e in events if e.incident_id == incident_id)
        found = {name: as_recorded(name, getattr(state, name), expected[name]) for name in expected}
        assert _json(found) == expected, incident_id
