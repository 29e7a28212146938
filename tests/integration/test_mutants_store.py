"""events.store and events.ids against a real nats-server: the promises mutation testing
(`uv run mutmut run`, issue 16) found no test pinning.

What a refusal names (the scope and sequence a writer must reload from, the id and incident
that hold a taken id, the size of an event too large) reaches the HTTP answer and the log
line; a retried `put_if_last` is deduplicated by its message id and answered with its
original sequence instead of being stored twice; JetStream is waited for as long as the
store's timeout allows, and no longer.
"""

import asyncio
import os
import signal

import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from tests_support import T0

from events.batches import publish_atomic
from events.chain import seal
from events.ids import EventIdTakenError
from events.schema import (
    MAX_EVENT_BYTES,
    MAX_MARKDOWN,
    AnyEvent,
    IncidentNoteAdded,
    PostmortemPublished,
    Source,
    encode,
)
from events.store import ConcurrencyError, EventStore, EventTooLargeError, StoreUnavailableError
from events.subjects import event_subject, new_incident_id
from services.natsserver import EmbeddedNatsServer


def _note(incident_id: str, event_id: str, text: str = "x") -> IncidentNoteAdded:
    return IncidentNoteAdded(
        event_id=event_id,
        incident_id=incident_id,
        occurred_at=T0,
        actor="a",
        source=Source.CLI,
        text=text,
    )


async def test_a_retried_put_if_last_answers_the_original_sequence(store: EventStore) -> None:
    """A record sent again after its subject moved on (the answer was lost, a later record
    followed) is the same message: deduplicated by `Nats-Msg-Id` and answered with the
    original's sequence, not stored twice (what `intake` tells a redelivered change by)."""
    subject = f"changes.{new_incident_id().lower()}"
    first = await store.put_if_last(subject, b"one", 0, "change-a")
    second = await store.put_if_last(subject, b"two", first, "change-b")
    assert await store.put_if_last(subject, b"one", second, "change-a") == first
    assert await store.last_on_subject(subject) == (second, b"two")
    assert await store.last_seq() == second


async def test_a_refused_put_if_last_names_its_subject_and_sequence(store: EventStore) -> None:
    subject = f"correlation.{new_incident_id().lower()}"
    first = await store.put_if_last(subject, b"one", 0, "claim-a")
    with pytest.raises(ConcurrencyError) as info:
        await store.put_if_last(subject, b"two", 0, "claim-b")
    assert (info.value.scope, info.value.expected_seq) == (subject, 0)
    assert str(info.value).startswith(f"{subject} moved past sequence 0: ")
    assert await store.last_on_subject(subject) == (first, b"one")


async def test_an_empty_last_value_reads_back_empty(store: EventStore) -> None:
    subject = f"correlation.{new_incident_id().lower()}"
    seq = await store.put_if_last(subject, b"", 0, "claim-empty")
    assert await store.last_on_subject(subject) == (seq, b"")
    assert await store.last_on_subject(f"{subject}x") is None


async def test_a_taken_event_id_names_the_id_and_its_incident(store: EventStore) -> None:
    owner, other = new_incident_id(), new_incident_id()
    await store.append(seal([_note(owner, "shared-id")], "", T0), 0)
    # Alone (claimed by a plain publish) and with a fresh id (claims go as one atomic batch).
    alone, batched = (
        [_note(other, "shared-id")],
        [_note(other, "fresh-id"), _note(other, "shared-id")],
    )
    for events in (alone, batched):
        with pytest.raises(EventIdTakenError) as info:
            await store.append(seal(events, "", T0), 0)
        assert (info.value.event_id, info.value.holder) == ("shared-id", owner)
        assert str(info.value) == f"event_id shared-id is already used by incident {owner}"
    assert (await store.load(other)).events == []


async def test_an_event_too_large_names_its_id_and_size(store: EventStore) -> None:
    incident_id = new_incident_id()
    big = seal([_note(incident_id, "big", "x" * MAX_EVENT_BYTES)], "", T0)
    with pytest.raises(EventTooLargeError) as info:
        await store.append(big, 0)
    assert info.value.event_id == "big"
    assert info.value.size > MAX_EVENT_BYTES
    assert str(info.value) == (
        f"event big is {info.value.size} bytes; the log stores at most {MAX_EVENT_BYTES}"
    )
    assert await store.incident_last_seq(incident_id) == 0


async def test_a_batch_waits_for_its_answer_as_long_as_the_store_allows(
    nc: NATS, store: EventStore, nats_server: EmbeddedNatsServer
) -> None:
    """A slow JetStream (a busy machine, a cluster electing a leader) is waited for up to the
    store's timeout, not nats-py's half-second default: an answer that comes is taken."""
    patient = EventStore(nc, timeout=60.0)
    incident_id = new_incident_id()
    events = seal([_note(incident_id, "slow-1"), _note(incident_id, "slow-2")], "", T0)
    pid = nats_server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        appending = asyncio.create_task(patient.append(events, 0))
        await asyncio.sleep(2.0)
        assert not appending.done()
    finally:
        os.kill(pid, signal.SIGCONT)
    appended = await asyncio.wait_for(appending, 60)
    assert [a.event.event_id for a in appended] == ["slow-1", "slow-2"]
    assert appended[1].seq == appended[0].seq + 1


@pytest.mark.parametrize("ids", [["lost-1"], ["lost-1", "lost-2"], ["~lost-1", "~lost-2"]])
async def test_an_append_never_answered_is_unavailable_after_the_timeout(
    nc: NATS, store: EventStore, nats_server: EmbeddedNatsServer, ids: list[str]
) -> None:
    """No answer at all is a `StoreUnavailableError` (503 + Retry-After) once the store's
    timeout passes, never a request that waits for ever: one event (its id claimed by a plain
    publish), several (claims as an atomic batch), several with the service's own ids (not
    claimed: the events' batch is the first request)."""
    hasty = EventStore(nc, timeout=1.0)
    incident_id = new_incident_id()
    events = seal([_note(incident_id, event_id) for event_id in ids], "", T0)
    pid = nats_server.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:
        async with asyncio.timeout(60):
            with pytest.raises(StoreUnavailableError, match="did not answer"):
                await hasty.append(events, 0)
    finally:
        os.kill(pid, signal.SIGCONT)


async def test_a_refused_batch_carries_the_servers_whole_answer(store: EventStore) -> None:
    """What JetStream said (status, error code, text) reaches the writer and its log line."""
    subject = event_subject(new_incident_id(), "note_added")
    expect = {"Nats-Expected-Last-Subject-Sequence": "5"}
    with pytest.raises(nats.js.errors.APIError) as info:
        await publish_atomic(store.nc, [(subject, b"{}", expect), (subject, b"{}", {})], 5.0)
    assert (info.value.code, info.value.err_code) == (400, 10071)
    assert str(info.value.description).startswith("wrong last sequence")


async def test_an_id_stored_before_claims_existed_is_taken(nc: NATS, store: EventStore) -> None:
    """An event stored without a claim (a log written before claims existed) still owns its
    id inside the duplicate window: the deduplicated answer names the incident holding it."""
    owner, other = new_incident_id(), new_incident_id()
    [old] = seal([_note(owner, "unclaimed")], "", T0)
    await nc.jetstream().publish(
        event_subject(owner, "note_added"), encode(old), headers={"Nats-Msg-Id": "unclaimed"}
    )
    with pytest.raises(EventIdTakenError) as info:
        await store.append(seal([_note(other, "unclaimed")], "", T0), 0)
    assert (info.value.event_id, info.value.holder) == ("unclaimed", owner)


async def test_a_batch_is_stored_under_each_events_subject_and_is_no_duplicate(
    nc: NATS, store: EventStore
) -> None:
    incident_id = new_incident_id()
    events = seal([_note(incident_id, "b-1"), _note(incident_id, "b-2")], "", T0)
    appended = await store.append(events, 0)
    assert [(a.event.event_id, a.duplicate) for a in appended] == [("b-1", False), ("b-2", False)]
    js = nc.jetstream()
    for a in appended:
        stored = await js.get_msg(store.stream, a.seq)
        assert stored.subject == f"incidents.{incident_id}.incident.note_added"
        assert stored.data == encode(a.event)


async def test_a_stale_decision_among_several_names_them_all(store: EventStore) -> None:
    """`append_all` of several incidents' decisions: one stale expectation refuses them all,
    naming every incident and the first decision's expected sequence."""
    first, second = new_incident_id(), new_incident_id()
    [head] = await store.append(seal([_note(first, "h-1")], "", T0), 0)
    stale = [
        (seal([_note(first, "s-1"), _note(first, "s-2")], head.event.hash, T0), 0),
        (seal([_note(second, "s-3")], "", T0), 0),
    ]
    with pytest.raises(ConcurrencyError) as info:
        await store.append_all(stale)
    assert (info.value.scope, info.value.expected_seq) == (f"{first},{second}", 0)
    assert await store.last_seq() == head.seq


@pytest.mark.parametrize(
    "split",
    [
        "mixed",
        "twice",
    ],
)
async def test_a_decision_is_one_incidents_events_once(store: EventStore, split: str) -> None:
    """A decision holds one incident's events, and each incident has one decision in a call:
    two decisions on the same loaded state must not both land."""
    first, second = new_incident_id(), new_incident_id()
    a, b = _note(first, "d-1"), _note(first if split == "twice" else second, "d-2")
    decisions = [([a, b], 0)] if split == "mixed" else [([a], 0), ([b], 0)]
    with pytest.raises(ValueError, match=r"^each decision holds the events of one incident, once$"):
        await store.append_all(decisions)
    assert await store.last_seq() == 0


async def test_an_event_of_exactly_the_limit_is_stored(store: EventStore) -> None:
    incident_id = new_incident_id()

    def published(summary: str) -> AnyEvent:
        [sealed] = seal(
            [
                PostmortemPublished(
                    event_id="edge",
                    incident_id=incident_id,
                    occurred_at=T0,
                    actor="a",
                    source=Source.CLI,
                    markdown="m" * MAX_MARKDOWN,
                    summary=summary,
                )
            ],
            "",
            T0,
        )
        return sealed

    edge = published("s" * (MAX_EVENT_BYTES - len(encode(published("")))))
    assert len(encode(edge)) == MAX_EVENT_BYTES
    [appended] = await store.append([edge], 0)
    assert [s.seq for s in (await store.load(incident_id)).events] == [appended.seq]
