"""Health for supervisors: `/healthz` (the process answers), `/readyz` (the log answers, and
how far the read models are behind it)."""

from typing import Any, Final

from litestar import Response, get
from litestar.openapi import ResponseSpec

from events.store import StoreUnavailableError
from services.api.state import AnyRequest, reader_of, storage_fault_of, store_of
from services.errors import storage_full
from services.notify.notifier import Notifier
from services.supervisor import LogHealth


@get(
    "/healthz",
    tags=["operations"],
    responses={
        503: ResponseSpec(
            dict[str, Any], description="the log has been unreachable", generate_examples=False
        )
    },
)
async def healthz(request: AnyRequest) -> Response[dict[str, Any]]:
    """Alive; 503 once the log (NATS) has been unreachable longer than
    INCIDENTS_UNHEALTHY_AFTER, so an outer supervisor can act."""
    health: LogHealth | None = request.app.state.get("health")
    if health is None:
        return Response({"status": "ok"})
    healthy, body = health.report()
    # Healthy is just that; the details are for whoever has to find out why it is not.
    return Response({"status": "ok"}) if healthy else Response(body, status_code=503)


@get(
    "/readyz",
    tags=["operations"],
    responses={
        503: ResponseSpec(
            dict[str, Any], description="`failed` or `unavailable`", generate_examples=False
        )
    },
)
async def readyz(request: AnyRequest) -> Response[dict[str, Any]]:
    """Ready when NATS is connected and the projector runs; reports the projector's lag behind
    the log. `status`: `ready`; `degraded` (still 200) while the quarantine holds records that
    do not decode; `failed` (503) while a failed projector (or notifier) waits for its restart
    or has not moved on since; `unavailable` (503) when the log does not answer or its storage
    is full (`reason` says which). An INCIDENTS_ROLE=api replica has no projector: ready when
    the log answers."""
    if request.app.state.models is None:
        return await _api_replica(request)
    reader = reader_of(request)
    store = store_of(request)
    projector = reader.projector
    supervision = {"failure": projector.failure, "restarts": projector.restarts}
    quarantine = {"count": projector.quarantined, "table": "quarantine"}
    try:
        first_seq, last_seq = await store.bounds()
        _, oldest_at = await store.first_retained()
        # A log that still answers reads but can store nothing is not ready either.
        fault = storage_fault_of(request)
        reason = None if fault is None else storage_full(fault)
    except StoreUnavailableError as exc:
        reason = str(exc)
    if reason is not None:
        return Response(
            {
                "ready": False,
                "status": "unavailable",
                "reason": reason,
                "projector": {"checkpoint": projector.checkpoint, **supervision},
                "quarantine": quarantine,
            },
            status_code=503,
        )
    lag = max(last_seq - projector.checkpoint, 0)
    body: dict[str, Any] = {
        "ready": True,
        "status": "degraded" if projector.quarantined else "ready",
        "stream": {"first_seq": first_seq, "last_seq": last_seq},
        "projector": {"checkpoint": projector.checkpoint, "lag": lag, **supervision},
        "quarantine": quarantine,
        "retention": {
            "first_retained_seq": projector.first_retained,
            "oldest_record_at": oldest_at,
            "prune_pending": first_seq > projector.first_retained,
            "expired_events": projector.expired,
        },
    }
    notifier: Notifier | None = request.app.state.get("notifier")
    if notifier is not None:
        body["notifier"] = notifier.report()
    if projector.failure is not None:
        reason = f"projector failed ({projector.restarts} restarts): {projector.failure}"
        failed = {**body, "ready": False, "status": "failed", "reason": reason}
        return Response(failed, status_code=503)
    if notifier is not None and notifier.failure is not None:
        # A receiver that is down is not this: it shows in the route's `failing_since`.
        reason = f"notifier failed ({notifier.restarts} restarts): {notifier.failure}"
        failed = {**body, "ready": False, "status": "failed", "reason": reason}
        return Response(failed, status_code=503)
    return Response(body)


async def _api_replica(request: AnyRequest) -> Response[dict[str, Any]]:
    try:
        first_seq, last_seq = await store_of(request).bounds()
    except StoreUnavailableError as exc:
        body = {"ready": False, "status": "unavailable", "role": "api", "reason": str(exc)}
        return Response(body, status_code=503)
    stream = {"first_seq": first_seq, "last_seq": last_seq}
    return Response({"ready": True, "status": "ready", "role": "api", "stream": stream})


ROUTES: Final = [healthz, readyz]
