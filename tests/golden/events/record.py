"""How `events.jsonl` was recorded: never run it to rewrite the corpus.

The corpus is evidence of what the log stored at a given version (see README.md here). This
script wrote it once, through the real `EventStore` into a real nats-server, and refuses to
overwrite it: a record of a new event type is appended by hand, taken from a real log.

    uv run python tests/golden/events/record.py
"""

import asyncio
import sys
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import nats

from events.chain import seal
from events.commands import (
    Acknowledge,
    AddActionItem,
    AddNote,
    AnyCommand,
    AssignRole,
    AttachEvidence,
    ChangePhase,
    ChangeSeverity,
    ChangeStatus,
    Close,
    CompleteActionItem,
    CompleteMitigation,
    CorrectEvent,
    Declare,
    Escalate,
    PublishPostmortem,
    Record,
    RecordAlertFired,
    RecordAlertResolved,
    ReleaseRole,
    Reopen,
    Resolve,
    RetractEvent,
    SendComms,
    StartMitigation,
    target_incident,
)
from events.decisions import Rejected, decide
from events.incident import INITIAL, Incident, fold
from events.schema import (
    Audience,
    Category,
    CommsKind,
    EvidenceKind,
    IncidentDeclared,
    MitigationAction,
    NoteKind,
    Outcome,
    Phase,
    Role,
    Severity,
    Source,
    Status,
    decode,
)
from events.store import EventStore
from events.stream import StreamSettings, ensure_stream
from services.natsserver import EmbeddedNatsServer

HERE = Path(__file__).parent
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ONE = "INC-GOLDEN0001"
TWO = "INC-GOLDEN0002"
# The attributes of the folded state the golden test compares (the fold's observable result).
FOLDED = (
    "incident_id",
    "declared",
    "title",
    "severity",
    "category",
    "services",
    "status",
    "phase",
    "opened_at",
    "detected_at",
    "acknowledged_at",
    "mitigated_at",
    "resolved_at",
    "closed_at",
    "roles",
    "escalation_level",
    "mitigations",
    "alerts_firing",
    "comms_count",
    "first_comms_at",
    "last_comms_at",
    "next_update_at",
    "action_items",
    "postmortem_published_at",
    "reopen_count",
    "retracted",
    "version",
    "board_status",
    "declared_at",
)


def _at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _env(incident_id: str, event_id: str, minutes: int, **extra: Any) -> dict[str, Any]:
    return {
        "incident_id": incident_id,
        "event_id": event_id,
        "occurred_at": _at(minutes),
        "actor": "alice@example.com",
        "source": Source.CLI,
        **extra,
    }


def _alert(kind: type[RecordAlertFired] | type[RecordAlertResolved], minutes: int) -> AnyCommand:
    firing = kind is RecordAlertFired
    return kind(
        **_env(ONE, f"~am-{'fired' if firing else 'resolved'}@{ONE}.0", minutes)
        | {"actor": "alertmanager", "source": Source.ALERTMANAGER},
        correlation_id='{}:{alertname="CheckoutErrors"}',
        fingerprint="a1b2c3d4e5f60708",
        alertname="CheckoutErrors",
        severity="critical",
        labels={"alertname": "CheckoutErrors", "service": "checkout", "severity": "critical"},
        annotations={"summary": "5xx above 5%", "runbook_url": "https://runbooks/checkout"},
        starts_at=_at(-3),
        ends_at=None if firing else _at(minutes),
        generator_url="http://prometheus:9090/graph?g0.expr=rate",
        group_key='{}:{alertname="CheckoutErrors"}',
    )


def commands() -> list[AnyCommand]:
    """Every event type at least once, with their optional fields used."""
    return [
        Declare(
            **_env(ONE, "golden-declare", 0),
            title="Checkout 5xx above 5%",
            severity=Severity.P1,
            category=Category.APPLICATION,
            services=("checkout", "payments"),
            summary="Errors on checkout \u2013 \u201csince v42\u201d, na\u00efve retry storm",
            detected_at=_at(-2),
            commander="alice@example.com",
        ),
        _alert(RecordAlertFired, 1),
        Acknowledge(
            **_env(ONE, "golden-ack", 2, actor="bob@example.com", source=Source.API),
            trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
            span_id="00f067aa0ba902b7",
        ),
        ChangeSeverity(**_env(ONE, "golden-sev", 3), to=Severity.P0, reason="all regions"),
        ChangeStatus(**_env(ONE, "golden-status", 4), status=Status.IDENTIFIED),
        ChangePhase(**_env(ONE, "golden-phase", 5), phase=Phase.MITIGATION),
        AssignRole(**_env(ONE, "golden-assign", 6), role=Role.COMMS, person="carol@example.com"),
        ReleaseRole(**_env(ONE, "golden-release", 7), role=Role.COMMS, person="carol@example.com"),
        Escalate(**_env(ONE, "golden-escalate", 8), to="payments-oncall", reason="no progress"),
        StartMitigation(
            **_env(ONE, "golden-mitigate", 9, actor="auto-remediation", source=Source.SYSTEM),
            mitigation_id="m1",
            action=MitigationAction.ROLLBACK,
            target="checkout@v41",
            automated=True,
            confidence=0.8,
        ),
        CompleteMitigation(
            **_env(ONE, "golden-mitigated", 12),
            mitigation_id="m1",
            outcome=Outcome.SUCCEEDED,
            details="error rate back to 0.1%",
        ),
        SendComms(
            **_env(ONE, "golden-comms", 10, source=Source.WEB),
            audience=Audience.STATUS_PAGE,
            kind=CommsKind.INITIAL,
            message="We are investigating elevated errors at checkout.\nNext update soon.",
            status=Status.INVESTIGATING,
            next_update_at=_at(40),
        ),
        AddNote(**_env(ONE, "golden-note", 13), text="bad config in v42", kind=NoteKind.ROOT_CAUSE),
        AttachEvidence(
            **_env(ONE, "golden-evidence", 14),
            kind=EvidenceKind.DASHBOARD,
            uri="https://grafana/d/checkout",
            sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
            description="error rate panel",
        ),
        _alert(RecordAlertResolved, 15),
        Resolve(**_env(ONE, "golden-resolve", 16), summary="rolled back to v41"),
        Reopen(**_env(ONE, "golden-reopen", 18), reason="errors came back"),
        Resolve(**_env(ONE, "golden-resolve-2", 25), summary="cache flushed"),
        PublishPostmortem(
            **_env(ONE, "golden-postmortem", 60 * 24),
            uri="https://wiki/postmortems/INC-GOLDEN0001",
            summary="config drift",
        ),
        AddActionItem(
            **_env(ONE, "golden-item", 60 * 24 + 1),
            item_id="AI-1",
            title="Validate config before deploy",
            owner="bob@example.com",
            due=date(2026, 11, 15),
        ),
        CompleteActionItem(**_env(ONE, "golden-item-done", 60 * 24 + 2), item_id="AI-1"),
        CorrectEvent(
            **_env(ONE, "golden-correct", 60 * 24 + 3),
            target_event_id="golden-ack",
            corrected_occurred_at=_at(1),
            reason="acknowledged on the bridge before the page",
        ),
        AddNote(**_env(ONE, "golden-note-2", 60 * 24 + 4), text="wrong incident"),
        RetractEvent(
            **_env(ONE, "golden-retract", 60 * 24 + 5),
            target_event_id="golden-note-2",
            reason="posted to the wrong incident",
        ),
        Close(**_env(ONE, "golden-close", 60 * 24 + 6), reason="postmortem done"),
        # A producer's event (POST /v1/events) with the envelope's optional links.
        Record(
            IncidentDeclared(
                **_env(
                    TWO, "golden-producer-declare", 30, actor="synthetics", source=Source.SYNTHETIC
                ),
                correlation_id="probe-42",
                causation_id="run-7",
                title="Login probe failing",
                severity=Severity.P3,
                category=Category.EXTERNAL,
            )
        ),
        ChangeSeverity(**_env(TWO, "golden-sev-2", 31), to=Severity.P2),
        CorrectEvent(
            **_env(TWO, "golden-correct-2", 32),
            target_event_id="golden-producer-declare",
            corrected_text="Login probe failing in eu-west",
            corrected_actor="synthetics-eu",
            reason="wrong region",
        ),
        RetractEvent(
            **_env(TWO, "golden-retract-2", 33),
            target_event_id="golden-sev-2",
            reason="severity was right",
        ),
    ]


async def record(url: str) -> list[bytes]:
    nc = await nats.connect(url)
    try:
        await ensure_stream(nc, StreamSettings())
        store = EventStore(nc)
        states: dict[str, Incident] = {}
        heads: dict[str, tuple[str, int]] = {}
        for n, command in enumerate(commands()):
            incident_id = target_incident(command)
            state = states.get(incident_id, INITIAL)
            decision = decide(command, state)
            if isinstance(decision, Rejected):
                raise SystemExit(f"{command}: {decision.reason}")
            head, last = heads.get(incident_id, ("", 0))
            sealed = seal(decision, head, _at(n) + timedelta(seconds=n, microseconds=123456))
            appended = await store.append(sealed, last)
            heads[incident_id] = (appended[-1].event.hash, appended[-1].seq)
            states[incident_id] = fold(decision, state)
        return [stored.raw async for batch in store.read() for stored in batch]
    finally:
        await nc.close()


def main() -> None:
    out = HERE / "events.jsonl"
    if out.exists():
        sys.exit(f"{out} exists: the corpus is never rewritten")
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedNatsServer(Path(tmp) / "nats")
        server.start()
        try:
            raws = asyncio.run(record(server.url))
        finally:
            server.stop()
    out.write_bytes(b"".join(raw + b"\n" for raw in raws))
    events = [decode(raw) for raw in raws]
    states = {i: fold(e for e in events if e.incident_id == i) for i in (ONE, TWO)}
    folded = {i: {name: getattr(state, name) for name in FOLDED} for i, state in states.items()}
    (HERE / "folded.json").write_bytes(
        msgspec.json.format(msgspec.json.encode(msgspec.to_builtins(folded, order="sorted")))
        + b"\n"
    )


if __name__ == "__main__":
    main()
