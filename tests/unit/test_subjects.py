"""events.subjects: generated incident ids, id validation and the subject scheme."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.schema import INCIDENT_ID_PATTERN, TYPE_NAMES, SchemaError, decode
from events.subjects import (
    INCIDENTS_PREFIX,
    STREAM_SUBJECTS,
    InvalidIncidentIdError,
    derived_incident_id,
    event_subject,
    incident_filter,
    incident_of,
    new_event_id,
    new_incident_id,
    validate_incident_id,
)

PROPERTY = settings(max_examples=150, deadline=None)

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GENERATED_ID = re.compile(r"INC-[0-9A-HJKMNP-TV-Z]{6,10}")
VALID_IDS = st.from_regex(INCIDENT_ID_PATTERN, fullmatch=True)
BAD_IDS = [
    "",
    " ",
    "INC 1",
    "INC.1",
    "INC-*",
    "INC->",
    "incidents.>",
    "INC/1",
    "INC-é",
    "x" * 65,
    "INC-1\n",
    "\nINC-1",
    "INC-1\t",
]


def test_crockford_alphabet_has_no_ambiguous_letters() -> None:
    assert len(CROCKFORD) == 32
    assert not set("ILOU") & set(CROCKFORD)


@PROPERTY
@given(length=st.integers(6, 10))
def test_generated_ids_are_inc_plus_crockford(length: int) -> None:
    incident_id = new_incident_id(length)
    assert GENERATED_ID.fullmatch(incident_id)
    assert len(incident_id) == 4 + length
    assert set(incident_id[4:]) <= set(CROCKFORD)
    assert validate_incident_id(incident_id) == incident_id


def test_default_generated_id_has_eight_characters() -> None:
    incident_id = new_incident_id()
    assert GENERATED_ID.fullmatch(incident_id)
    assert len(incident_id) == 12


def test_generated_ids_are_distinct_and_use_the_whole_alphabet() -> None:
    ids = {new_incident_id(10) for _ in range(2000)}
    assert len(ids) == 2000
    assert set("".join(i[4:] for i in ids)) == set(CROCKFORD)


@pytest.mark.parametrize("length", [-1, 0, 5, 11, 64])
def test_generated_id_length_out_of_range_raises(length: int) -> None:
    with pytest.raises(ValueError, match="6 to 10"):
        new_incident_id(length)


def test_event_ids_are_unique_header_safe_strings() -> None:
    ids = {new_event_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


@pytest.mark.parametrize("incident_id", BAD_IDS)
def test_bad_ids_raise(incident_id: str) -> None:
    with pytest.raises(InvalidIncidentIdError, match="must match"):
        validate_incident_id(incident_id)
    with pytest.raises(InvalidIncidentIdError):
        event_subject(incident_id, "incident.declared")
    with pytest.raises(InvalidIncidentIdError):
        incident_filter(incident_id)


def test_invalid_incident_id_error_is_a_value_error() -> None:
    assert issubclass(InvalidIncidentIdError, ValueError)


@PROPERTY
@given(incident_id=VALID_IDS, event_type=st.sampled_from(sorted(TYPE_NAMES)))
def test_subjects_are_prefix_id_type_and_invert(incident_id: str, event_type: str) -> None:
    subject = event_subject(incident_id, event_type)
    assert subject == f"incidents.{incident_id}.{event_type}"
    tokens = subject.split(".")
    assert tokens[0] == INCIDENTS_PREFIX
    assert tokens[1] == incident_id
    assert ".".join(tokens[2:]) == event_type
    assert incident_of(subject) == incident_id
    assert incident_filter(incident_id) == f"incidents.{incident_id}.>"
    # The filter and the stream both cover the subject (NATS wildcard `>`: one or more tokens).
    assert subject.startswith(incident_filter(incident_id)[:-1])
    assert f"{INCIDENTS_PREFIX}.>" in STREAM_SUBJECTS


def test_contract_example_subject() -> None:
    assert event_subject("INC-7K2M9Q", "alert.fired") == "incidents.INC-7K2M9Q.alert.fired"
    assert incident_of("incidents.INC-7K2M9Q.alert.fired") == "INC-7K2M9Q"


@pytest.mark.parametrize(
    "subject", ["correlation.INC-1.claim", "retention.advanced.x", "INC-1.alert.fired"]
)
def test_incident_of_refuses_other_prefixes(subject: str) -> None:
    with pytest.raises(ValueError, match="not an incident subject"):
        incident_of(subject)


@pytest.mark.parametrize("subject", ["incidents", "incidents.INC-1", ""])
def test_incident_of_refuses_short_subjects(subject: str) -> None:
    with pytest.raises(ValueError):
        incident_of(subject)


def test_stream_subjects_do_not_overlap() -> None:
    prefixes = [s.removesuffix(".>") for s in STREAM_SUBJECTS]
    assert len(set(prefixes)) == len(prefixes) == 4
    assert all(s.endswith(".>") for s in STREAM_SUBJECTS)


def _schema_accepts(incident_id: str) -> bool:
    doc = {
        "type": "incident.acknowledged",
        "event_id": "e-1",
        "incident_id": incident_id,
        "occurred_at": datetime(2024, 1, 1, tzinfo=UTC).isoformat(),
        "actor": "alice",
        "source": "cli",
    }
    try:
        decode(json.dumps(doc))
    except SchemaError:
        return False
    return True


def _subjects_accept(incident_id: str) -> bool:
    try:
        validate_incident_id(incident_id)
    except InvalidIncidentIdError:
        return False
    return True


@pytest.mark.parametrize(
    "incident_id",
    [
        "INC-7K2M9Q",
        "a",
        "x" * 64,
        *BAD_IDS,
        "INC-1\n",
    ],
)
def test_schema_and_subjects_agree_on_incident_ids(incident_id: str) -> None:
    assert _schema_accepts(incident_id) == _subjects_accept(incident_id)


@PROPERTY
@given(
    incident_id=st.one_of(VALID_IDS, st.text(max_size=70)).filter(lambda s: not s.endswith("\n"))
)
def test_schema_and_subjects_agree_on_arbitrary_text(incident_id: str) -> None:
    assert _schema_accepts(incident_id) == _subjects_accept(incident_id)


def test_derived_incident_id_is_pinned() -> None:
    """Correlation derives ids from (key, claim sequence): a change would split racing writers."""
    assert derived_incident_id('alertmanager:{}:{alertname="HighErrorRate"}', 0) == "INC-2YZMJQDG0C"
    assert derived_incident_id("pd-dedup-42", 17) == "INC-5JSQ1MMTP5"
    assert GENERATED_ID.fullmatch(derived_incident_id("", 0))
