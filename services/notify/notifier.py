"""The notifier: turns the log's events and the due obligations into deliveries to the routes
of the policy (`[notifications]`), at least once each, and records each one in the log.

Per route, two loops run: one reads the route's durable consumer (`services.notify.consumers`)
and acknowledges each message only after its notification was delivered and recorded; one
tells the due obligations that the check (every `check_every`) found in the read models, once
they include everything the log held at the check. Every delivery has a deterministic id
(`obligations.delivery_id`); the log is asked before delivering (`ledger.sent`), so nothing
recorded is ever sent again. A crash between a receiver's answer and the record may send that
one notification again, with the same delivery id (`Idempotency-Key`): at least once.

`services.readmodels.keep_running` runs it like the projector: a failure shows in `/readyz` (503)
until it runs again.
"""

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from contextlib import suppress
from datetime import datetime
from typing import Any, Final, TypeVar

import httpx
import msgspec
import nats.errors
from nats.aio.msg import Msg
from prometheus_client import Counter

from events.notifications import Notifications, Route, RouteKind, Secret
from events.policy import Policy
from events.records import Stored, record
from events.schema import MAX_TEXT, NotificationSent, Source, type_name
from events.store import EventStore, StoreUnavailableError
from services.clock import Clock
from services.config import ConfigError
from services.notify import consumers, deliver, messages, obligations, readings, slack
from services.notify.ledger import NOTIFIER, PRINCIPAL, Ledger
from services.notify.obligations import Notice
from services.readmodels import LiveModels
from services.write.handler import CommandHandler

T = TypeVar("T")
log = logging.getLogger("incidents")

FETCH_WAIT_S: Final = 5.0
RESUME_AFTER_S: Final = 1.0  # after losing the log

SENT: Final = Counter(
    "incidents_notifications_sent", "Notifications delivered and recorded", ["route"]
)
FAILED: Final = Counter(
    "incidents_notification_attempts_failed", "Delivery attempts a receiver did not take", ["route"]
)


class RouteStatus(msgspec.Struct):
    """What `/readyz` shows of a route: never its URL."""

    kind: str
    target: str
    delivered: int = 0
    last_delivered_at: datetime | None = None
    failing_since: datetime | None = None  # the delivery now retried first failed then
    failed_attempts: int = 0  # of that delivery
    last_error: str | None = None


def resolve(routes: tuple[Route, ...], environ: Mapping[str, str]) -> dict[str, Secret]:
    """Each route's URL, from the policy or from the variable it names (`url_env`)."""
    urls = {}
    for route in routes:
        if route.url is not None:
            urls[route.name] = route.url
            continue
        assert route.url_env is not None
        value = environ.get(route.url_env, "").strip()
        if not value.startswith(("http://", "https://")):
            raise ConfigError(
                f"{route.url_env}: route {route.name} of the policy's notifications reads its "
                "URL here; set it to the http(s) URL"
            )
        urls[route.name] = Secret(value)
    return urls


class Notifier:
    def __init__(
        self,
        store: EventStore,
        handler: CommandHandler,
        models: LiveModels,
        policy: Policy,
        clock: Clock,
        environ: Mapping[str, str] = os.environ,
    ) -> None:
        self.store = store
        self.models = models
        self.policy = policy
        self.settings: Notifications = policy.notifications
        self.clock = clock
        self.urls = resolve(self.settings.routes, environ)
        self.ledger = Ledger(store, handler)
        self.backoff = deliver.Backoff(self.settings.retry_first_s, self.settings.retry_max_s)
        secrets = [*self.urls.values(), *(v for r in self.settings.routes for _, v in r.headers)]
        self.http: httpx.AsyncClient = deliver.client(secrets)
        self._js = store.nc.jetstream(timeout=store.timeout)
        self.status = {r.name: RouteStatus(r.kind.value, r.target) for r in self.settings.routes}
        # Set by `supervise` when `run` failed; cleared once it moves on again.
        self.failure: str | None = None
        self.restarts = 0
        self.checks = 0  # completed checks of due obligations
        self.checked_at: datetime | None = None
        self._due: readings.Due = []
        self._incidents = readings.Incidents()
        self._due_changed = asyncio.Condition()
        self._acked: dict[str, int] = {}  # route -> the last stream sequence it acknowledged

    async def start(self) -> None:
        """Create (or update) the routes' consumers before anything is appended, so no event
        after start-up is missed; delete the consumers of removed routes."""
        await consumers.forget_removed(self._js, self.store.stream, self.settings.routes)
        for route in self.settings.routes:
            if route.events:
                await consumers.ensure(self._js, self.store.stream, route)

    async def close(self) -> None:
        await self.http.aclose()

    def report(self) -> dict[str, Any]:
        return {
            "failure": self.failure,
            "restarts": self.restarts,
            "checks": self.checks,
            "checked_at": self.checked_at,
            "routes": {name: msgspec.to_builtins(s) for name, s in self.status.items()},
        }

    async def run(self) -> None:
        """Until cancelled; raises on a failure that is not an outage of the log."""
        routes = self.settings.routes
        async with asyncio.TaskGroup() as tasks:
            if any(route.wants_obligations for route in routes):
                tasks.create_task(self._check_forever(), name="notifier-check")
            for route in routes:
                if route.events:
                    tasks.create_task(self._follow(route), name=f"notifier-{route.name}-events")
                if route.wants_obligations:
                    tasks.create_task(self._tell_due(route), name=f"notifier-{route.name}-due")
            if not routes:
                tasks.create_task(asyncio.Event().wait())  # nothing to do, for ever

    async def _follow(self, route: Route) -> None:
        while True:
            try:
                reconnects = self.store.nc.stats["reconnects"]
                after = self._acked.get(route.name)
                sub = await consumers.subscribe(self._js, self.store.stream, route, after)
                try:
                    while True:
                        try:
                            msgs = await sub.fetch(1, timeout=FETCH_WAIT_S)
                        except nats.errors.TimeoutError:
                            if self.store.nc.stats["reconnects"] != reconnects:
                                # A restarted nats-server may have lost the consumer, and the
                                # pull subscription its server side: ensure and bind again.
                                break
                            self.failure = None  # caught up: nothing left to fail on
                            continue
                        for msg in msgs:
                            await self._on_message(route, msg)
                finally:
                    with suppress(nats.errors.Error):
                        await sub.unsubscribe()
            except (StoreUnavailableError, nats.errors.Error) as exc:
                log.warning("notifier: route %s lost the log (%r); resuming", route.name, exc)
                await asyncio.sleep(RESUME_AFTER_S)

    async def _on_message(self, route: Route, msg: Msg) -> None:
        stored = record(msg.metadata.sequence.stream, msg.subject, msg.data)
        # A record that does not decode is quarantined by every reader: nothing to tell.
        if isinstance(stored, Stored) and type_name(stored.event) in route.events:

            async def keepalive() -> None:
                with suppress(nats.errors.Error):  # lost: redelivered, and found recorded
                    await msg.in_progress()

            notice = obligations.of_event(stored)
            incident = await readings.incident_of(self.models, notice, self.clock, keepalive)
            await self._notify(route, notice, incident, keepalive)
        # Only now does the route's position move: after the delivery and its record.
        await msg.ack_sync()
        self._acked[route.name] = msg.metadata.sequence.stream
        self.failure = None

    async def _check_forever(self) -> None:
        while True:
            try:
                await self._check()
            except (StoreUnavailableError, nats.errors.Error, TimeoutError) as exc:
                log.warning("notifier: due obligations not checked (%r); next check later", exc)
            await asyncio.sleep(self.settings.check_every_s)

    async def _check(self) -> None:
        now, due = await readings.due_now(
            self.store,
            self.models,
            self.policy,
            self.clock,
            self.settings.remind_before_s,
            self._incidents,
        )
        async with self._due_changed:
            self._due = due
            self.checks += 1
            self.checked_at = now
            self._due_changed.notify_all()
        self.failure = None

    async def _tell_due(self, route: Route) -> None:
        told = 0
        while True:
            async with self._due_changed:
                while self.checks <= told:
                    await self._due_changed.wait()
                told, due = self.checks, self._due
            for notice, incident in due:
                await self._notify(route, notice, incident)

    async def _notify(
        self,
        route: Route,
        notice: Notice,
        incident: dict[str, Any] | None,
        keepalive: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        severity = incident.get("severity") if incident else None
        if not route.wants(notice.obligation, severity, readings.services_of(incident)):
            return
        delivery = obligations.delivery_id(route.name, notice)
        record_id = obligations.record_id(delivery)
        while True:
            try:
                if await self.ledger.sent(notice.incident_id, record_id):
                    return
                break
            except StoreUnavailableError as exc:
                log.warning("notifier: cannot read the log (%s); retrying", exc)
                await asyncio.sleep(RESUME_AFTER_S)
        text = messages.text(notice, incident)
        base_url = self.settings.base_url
        if route.kind is RouteKind.SLACK:
            body = slack.body(notice, incident, delivery, base_url)
        else:
            body = messages.webhook_body(notice, incident, delivery, base_url)
        outbound = deliver.Outbound(
            self.urls[route.name], msgspec.json.encode(body), delivery, route.headers
        )
        status = self.status[route.name]

        def failed(attempt: int, reason: str, pause_s: float) -> None:
            FAILED.labels(route.name).inc()
            status.failing_since = status.failing_since or self.clock()
            status.failed_attempts, status.last_error = attempt, reason
            log.warning(
                "notifier: route %s did not take delivery %s (%s, attempt %s); next in %.1fs",
                route.name,
                delivery[:16],
                reason,
                attempt,
                pause_s,
            )

        attempts = await deliver.deliver(self.http, outbound, self.backoff, failed, keepalive)
        now = self.clock()
        if attempts > 1:
            log.warning("notifier: route %s took delivery %s", route.name, delivery[:16])
        status.failing_since, status.failed_attempts, status.last_error = None, 0, None
        await self.ledger.record(
            NotificationSent(
                event_id=record_id,
                incident_id=notice.incident_id,
                occurred_at=now,
                actor=NOTIFIER,
                source=Source.SYSTEM,
                principal=PRINCIPAL,
                causation_id=notice.event.event_id if notice.event is not None else None,
                obligation=notice.obligation,
                route=route.name,
                channel=route.kind.value,
                target=route.target,
                delivery_id=delivery,
                attempts=attempts,
                message=text[:MAX_TEXT],
            )
        )
        status.delivered += 1
        status.last_delivered_at = now
        SENT.labels(route.name).inc()
