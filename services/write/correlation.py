"""Alert -> incident correlation kept in the log, safe with any number of intake replicas.

Each correlation key (Alertmanager groupKey, PagerDuty dedup_key), scoped by its source and
producer (the principal that delivered it: one monitor's key never reaches another's incident),
has a last-value subject `correlation.<sha256(scope)>` whose latest message names the key's
incident. A firing alert joins
that incident while it is unresolved. Otherwise the writer claims the subject for a new incident
with the expected last sequence it read; of racing replicas exactly one claim lands, and the
others read it and join. The incident id is derived from (scope, sequence read), so replicas
that race on the same claim derive the same id and their declarations deduplicate. Every event
derived here records the delivery's principal.

A firing alert whose incident is resolved or closed opens a new incident rather than reopening:
that is what PagerDuty does for a dedup_key, what producers expect, and it keeps the first
incident's MTTR true; the repeat shows up in the repeat-incidents view.

The policy (`events.policy`) decides the rest, inside `decide` so that each alert and its
consequences are one atomic append: labels -> severity and category (`AlertRules`), a firing
alert above the incident's severity raises it, its links become evidence, and the last alert
of an alert-opened incident to resolve resolves it (`auto_resolve`, actor `auto-resolve`).
"""

import hashlib
from datetime import datetime
from typing import Any, Final

import msgspec

from events.commands import Acknowledge, Declare, RecordAlertFired, RecordAlertResolved
from events.decisions import Rejected, RejectionKind
from events.policy import DEFAULT_POLICY, Policy
from events.schema import MAX_SHORT, Source
from events.schema import Principal as Recorded
from events.store import ConcurrencyError, EventStore
from events.subjects import CORRELATION_PREFIX, SERVICE_ID_PREFIX, derived_incident_id
from services.auth import Principal
from services.formats.observation import AlertObservation, canonical
from services.formats.pagerduty import PagerDutyAck
from services.write.handler import Accepted, CommandHandler, ContentionError
from services.write.principals import recorded

ATTEMPTS: Final = 8


class Claim(msgspec.Struct, frozen=True, kw_only=True):
    """The record on `correlation.<hash>`: this key's alerts go to this incident."""

    key: str
    incident_id: str
    claimed_at: datetime
    source: str = ""  # with `producer`, the key's scope (empty in claims from before scopes)
    producer: str = ""


_claim_decoder: Final = msgspec.json.Decoder(Claim)


def scope(source: Source, producer: str, key: str) -> str:
    """A correlation key within its source and producer, unambiguous whatever they contain:
    `["pagerduty","pd-prod","db-42"]`."""
    return canonical([source.value, producer, key])


def claim_subject(scoped: str) -> str:
    return f"{CORRELATION_PREFIX}.{hashlib.sha256(scoped.encode()).hexdigest()}"


def occurrence_id(delivery_id: str, incident_id: str, after_seq: int) -> str:
    """The event id of one occurrence of a foreign delivery in one incident.

    A monitor's delivery id (a digest of what it sent) repeats across occurrences: every
    resolve of a PagerDuty dedup_key looks the same. The incident and `after_seq`, the sequence
    of the alert's last opposite event (the resolve a new firing follows, the firing a resolve
    ends), tell occurrences apart, while a redelivery of one occurrence gets the same id again.
    """
    return f"{SERVICE_ID_PREFIX}{delivery_id}@{incident_id}.{after_seq}"


def _fired_command(
    obs: AlertObservation, incident_id: str, seqs: tuple[int, int], by: Recorded, policy: Policy
) -> RecordAlertFired:
    _, resolved = seqs
    return RecordAlertFired(
        **_alert(obs, incident_id, resolved, by),
        raise_to=policy.alerts.severity(obs.labels)[0],
    )


def _resolved_command(
    obs: AlertObservation, incident_id: str, seqs: tuple[int, int], by: Recorded, policy: Policy
) -> RecordAlertResolved:
    fired, _ = seqs
    return RecordAlertResolved(
        **_alert(obs, incident_id, fired, by), auto_resolve=policy.auto_resolve
    )


def _alert(obs: AlertObservation, incident_id: str, after_seq: int, by: Recorded) -> dict[str, Any]:
    """The fields of an alert command: `after_seq` tells this occurrence from the others."""
    return dict(
        incident_id=incident_id,
        event_id=occurrence_id(obs.event_id, incident_id, after_seq),
        occurred_at=obs.occurred_at,
        actor=obs.source.value,
        source=obs.source,
        principal=by,
        correlation_id=obs.key[:MAX_SHORT],
        fingerprint=obs.fingerprint,
        alertname=obs.alertname,
        severity=obs.severity_label,
        labels=obs.labels,
        annotations=obs.annotations,
        starts_at=obs.starts_at,
        ends_at=obs.ends_at,
        generator_url=obs.generator_url,
        group_key=obs.group_key,
        dedup_key=obs.dedup_key,
        truncated_alerts=obs.truncated_alerts,
        links=obs.links,
    )


def _declare(
    obs: AlertObservation, incident_id: str, received_at: datetime, by: Recorded, policy: Policy
) -> Declare:
    return Declare(
        incident_id=incident_id,
        # One id per incident: replicas declaring the same claim deduplicate.
        event_id=f"{SERVICE_ID_PREFIX}declare-{incident_id}",
        # Declared when the alert reached us; it was detected when it started (MTTD).
        occurred_at=received_at,
        actor=obs.source.value,
        source=obs.source,
        principal=by,
        correlation_id=obs.key[:MAX_SHORT],
        title=obs.title,
        severity=policy.alerts.severity(obs.labels)[0],
        category=policy.alerts.category(obs.labels),
        services=obs.services,
        summary=obs.summary,
        detected_at=obs.starts_at or obs.occurred_at,
    )


class Correlator:
    def __init__(
        self, store: EventStore, handler: CommandHandler, policy: Policy = DEFAULT_POLICY
    ) -> None:
        self._store = store
        self._handler = handler
        self._policy = policy

    async def claimed(self, scoped: str) -> tuple[int, Claim | None]:
        record = await self._store.last_on_subject(claim_subject(scoped))
        if record is None:
            return 0, None
        seq, data = record
        return seq, _claim_decoder.decode(data)

    async def observe(
        self, obs: AlertObservation, received_at: datetime, principal: Principal
    ) -> Accepted:
        """Record one alert state: join, open, or resolve within its key's incident."""
        by, scoped = recorded(principal), scope(obs.source, principal.name, obs.key)
        for _ in range(ATTEMPTS):
            claim_seq, claim = await self.claimed(scoped)
            if not obs.firing:
                return await self._resolved(obs, claim, by)
            if claim is not None:
                joined = await self._join(obs, claim.incident_id, received_at, by)
                if joined is not None:
                    return joined
            incident_id = derived_incident_id(scoped, claim_seq)
            record = Claim(
                key=obs.key,
                incident_id=incident_id,
                claimed_at=received_at,
                source=obs.source.value,
                producer=principal.name,
            )
            try:
                await self._store.put_if_last(
                    claim_subject(scoped),
                    msgspec.json.encode(record),
                    claim_seq,
                    msg_id=f"claim-{incident_id}",
                )
            except ConcurrencyError:
                continue  # another replica claimed first: read its claim and join
            joined = await self._join(obs, incident_id, received_at, by)
            if joined is not None:
                return joined
        raise ContentionError(f"correlation key {obs.key!r} kept moving")

    async def _join(
        self, obs: AlertObservation, incident_id: str, received_at: datetime, by: Recorded
    ) -> Accepted | None:
        """Append the alert to the incident; None when the incident cannot take it."""
        seqs = await self._handler.alert_seqs(incident_id, obs.fingerprint)
        result = await self._handler.handle(
            _fired_command(obs, incident_id, seqs, by, self._policy)
        )
        if isinstance(result, Accepted):
            return result
        if result.kind is RejectionKind.NOT_FOUND:
            # Claimed but not declared yet (the claimer died or is still at it): declare it
            # ourselves with the incident's one declaration id.
            opened = await self._handler.handle_all(
                incident_id,
                [
                    _declare(obs, incident_id, received_at, by, self._policy),
                    _fired_command(obs, incident_id, (0, 0), by, self._policy),
                ],
            )
            # Refused only if someone declared it meanwhile: then joining works (or the
            # incident is already resolved and the caller opens a new one).
            if isinstance(opened, Accepted):
                return opened
            return await self._join(obs, incident_id, received_at, by)
        return None  # resolved or closed: the caller opens a new incident

    async def _resolved(self, obs: AlertObservation, claim: Claim | None, by: Recorded) -> Accepted:
        if claim is None:
            return Accepted([])  # never seen firing here: nothing to resolve
        seqs = await self._handler.alert_seqs(claim.incident_id, obs.fingerprint)
        alert = _resolved_command(obs, claim.incident_id, seqs, by, self._policy)
        result = await self._handler.handle(alert)
        return result if isinstance(result, Accepted) else Accepted([])

    async def acknowledge(self, ack: PagerDutyAck, principal: Principal) -> Accepted | Rejected:
        """PagerDuty's acknowledge of a dedup_key: of this sender's own PagerDuty key only."""
        _, claim = await self.claimed(scope(Source.PAGERDUTY, principal.name, ack.key))
        if claim is None:
            return Rejected(f"no incident for dedup_key {ack.key!r}", RejectionKind.NOT_FOUND)
        incident_id = claim.incident_id
        fired, _ = await self._handler.alert_seqs(incident_id, ack.dedup_key)
        return await self._handler.handle(
            Acknowledge(
                incident_id=incident_id,
                event_id=occurrence_id(ack.event_id, incident_id, fired),
                occurred_at=ack.occurred_at,
                actor=Source.PAGERDUTY.value,
                source=Source.PAGERDUTY,
                principal=recorded(principal),
                correlation_id=ack.key[:MAX_SHORT],
            )
        )
