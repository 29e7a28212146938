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

A replica keeps the claims it read or wrote (a bounded cache) and trusts a cached claim while
the decision's view of its incident has never been resolved or closed: a claim moves to a new
incident only after some writer saw the old one resolved or closed, so a decision on a view
without that (confirmed by the append's expected sequence, or for a no-op against the log) is
the one a fresh read of the claim would have led to. Otherwise the claim is read again.

The alerts of one delivery that share a key and a status (what one Alertmanager notification
holds) are decided together and appended as one batch (`runs`), as if observed one by one.

The policy (`events.policy`) decides the rest, inside `decide` so that each alert and its
consequences are one atomic append: labels -> severity and category (`AlertRules`), a firing
alert above the incident's severity raises it, its links become evidence, and the last alert
of an alert-opened incident to resolve resolves it (`auto_resolve`, actor `auto-resolve`).
"""

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec

from events.commands import (
    Acknowledge,
    AnyCommand,
    Declare,
    RecordAlertFired,
    RecordAlertResolved,
)
from events.decisions import Rejected, RejectionKind
from events.policy import DEFAULT_POLICY, Policy
from events.schema import MAX_SHORT, Source
from events.schema import Principal as Recorded
from events.store import ConcurrencyError, EventStore
from events.subjects import CORRELATION_PREFIX, SERVICE_ID_PREFIX, derived_incident_id
from services.auth import Principal
from services.formats.observation import AlertObservation, canonical
from services.formats.pagerduty import PagerDutyAck
from services.write.handler import Accepted, CommandHandler, ContentionError, IncidentView
from services.write.principals import recorded

ATTEMPTS: Final = 8
CLAIM_PAUSE_S: Final = 0.005  # 5, 10, 20, 40, 50 ms...: at most ~0.3 s over all attempts
CLAIM_PAUSE_AT_MOST_S: Final = 0.05
CACHED_CLAIMS: Final = 4096


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


def runs(observations: Sequence[AlertObservation]) -> list[list[AlertObservation]]:
    """A delivery split into runs that can be decided together, in order: consecutive alerts of
    one key and one status, each alert (fingerprint) once in a run (a second one's occurrence
    would depend on the first's)."""
    found: list[list[AlertObservation]] = []
    for obs in observations:
        last = found[-1] if found else None
        if (
            last is None
            or (last[0].key, last[0].firing) != (obs.key, obs.firing)
            or any(other.fingerprint == obs.fingerprint for other in last)
        ):
            found.append([obs])
        else:
            last.append(obs)
    return found


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
        self,
        store: EventStore,
        handler: CommandHandler,
        policy: Policy = DEFAULT_POLICY,
        cache_size: int = CACHED_CLAIMS,
    ) -> None:
        self._store = store
        self._handler = handler
        self._policy = policy
        self._cache_size = cache_size
        self._claims: OrderedDict[str, tuple[int, Claim]] = OrderedDict()

    async def claimed(self, scoped: str) -> tuple[int, Claim | None]:
        """The key's claim as the log holds it now (and its sequence; 0: none)."""
        record = await self._store.last_on_subject(claim_subject(scoped))
        if record is None:
            self._claims.pop(scoped, None)
            return 0, None
        seq, data = record
        claim = _claim_decoder.decode(data)
        self._remember(scoped, seq, claim)
        return seq, claim

    async def observe(
        self, obs: AlertObservation, received_at: datetime, principal: Principal
    ) -> Accepted:
        """Record one alert state: join, open, or resolve within its key's incident."""
        return await self.observe_run([obs], received_at, principal)

    async def observe_all(
        self, observations: Sequence[AlertObservation], received_at: datetime, principal: Principal
    ) -> list[Accepted]:
        """A delivery's alerts in order, each run of them (`runs`) decided together."""
        return [await self.observe_run(run, received_at, principal) for run in runs(observations)]

    async def observe_run(
        self, run: Sequence[AlertObservation], received_at: datetime, principal: Principal
    ) -> Accepted:
        """Alerts of one key and one status, of distinct alerts (`runs`), as one decision.

        A refused resolve (an auto-resolve dated before the incident's latest turn) refuses
        the whole run: then each alert goes on its own, as it would have alone. Firing alerts
        are refused only for the incident's state (resolved, closed), all of them alike."""
        obs = run[0]
        by, scoped = recorded(principal), scope(obs.source, principal.name, obs.key)
        for attempt in range(ATTEMPTS):
            cached = self._claims.get(scoped)
            claim_seq, claim = cached if cached is not None else await self.claimed(scoped)
            if claim is None:
                if not obs.firing:
                    return Accepted([])  # never seen firing here: nothing to resolve
            else:
                result = await self._handler.handle_built(
                    claim.incident_id,
                    self._builder(run, claim.incident_id, received_at, by, cached is not None),
                )
                if result is None:  # a cached claim of an incident that has ended: read it
                    self._claims.pop(scoped, None)
                    continue
                if isinstance(result, Accepted):
                    return result
                if not obs.firing and len(run) > 1:
                    return await self._one_by_one(run, received_at, principal)
                if not obs.firing:
                    return Accepted([])  # the incident cannot take the resolve: nothing to do
            # Firing, and no claim or its incident cannot take it (resolved, closed): open one.
            incident_id = derived_incident_id(scoped, claim_seq)
            record = Claim(
                key=obs.key,
                incident_id=incident_id,
                claimed_at=received_at,
                source=obs.source.value,
                producer=principal.name,
            )
            try:
                seq = await self._store.put_if_last(
                    claim_subject(scoped),
                    msgspec.json.encode(record),
                    claim_seq,
                    msg_id=f"claim-{incident_id}",
                )
            except ConcurrencyError:
                self._claims.pop(scoped, None)
                # Another replica claimed first: read its claim and join. On a replicated
                # stream its claim may still be staged (10158) for a few milliseconds, and
                # reading at once finds nothing: wait a little longer each time.
                await asyncio.sleep(min(CLAIM_PAUSE_S * 2**attempt, CLAIM_PAUSE_AT_MOST_S))
                continue
            self._remember(scoped, seq, record)
        raise ContentionError(f"correlation key {obs.key!r} kept moving")

    async def _one_by_one(
        self, run: Sequence[AlertObservation], received_at: datetime, principal: Principal
    ) -> Accepted:
        events = []
        for obs in run:
            events.extend((await self.observe_run([obs], received_at, principal)).events)
        return Accepted(events)

    def _builder(
        self,
        run: Sequence[AlertObservation],
        incident_id: str,
        received_at: datetime,
        by: Recorded,
        cached: bool,
    ) -> Callable[[IncidentView], Sequence[AnyCommand] | None]:
        """The alerts' commands from the view they are decided on: an occurrence is told by
        the alert's last opposite event there (the alerts of a run are distinct, so none moves
        another's). An incident claimed but not declared yet (its claimer died or is still at
        it) is declared first, with its one declaration id."""
        policy = self._policy

        def build(view: IncidentView) -> Sequence[AnyCommand] | None:
            if cached and view.ended:
                return None  # the claim may have moved on since it was cached
            seqs = [view.alert_seqs(obs.fingerprint) for obs in run]
            if not run[0].firing:
                return [
                    _resolved_command(obs, incident_id, after, by, policy)
                    for obs, after in zip(run, seqs, strict=True)
                ]
            commands: list[AnyCommand] = []
            if not view.declared:
                commands.append(_declare(run[0], incident_id, received_at, by, policy))
            commands.extend(
                _fired_command(obs, incident_id, after, by, policy)
                for obs, after in zip(run, seqs, strict=True)
            )
            return commands

        return build

    def _remember(self, scoped: str, seq: int, claim: Claim) -> None:
        self._claims[scoped] = (seq, claim)
        self._claims.move_to_end(scoped)
        while len(self._claims) > self._cache_size:
            self._claims.popitem(last=False)

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
