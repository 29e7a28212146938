"""HTTP read routes: status board, incident, timeline, metrics, breaches, audit, SQL, health.

Thin: each route picks its parameters, runs one query function on a fresh DuckDB cursor in a
worker thread (DuckDB blocks), and answers JSON. Reads come from the projection; the write
answer's `seq` can be awaited with `?wait_for=SEQ` for read-your-writes.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Annotated, Any, Final, TypeVar

import duckdb
import msgspec
from litestar import Request, get, post
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.response import Response

from events.policy import Policy
from events.store import EventStore, StoreUnavailableError
from projections import asof as asofs
from projections import breaches, metrics, postmortem, queries, sandbox
from projections.projector import Projector
from services import evidence
from services.auth import Permission
from services.guards import principal_of, requires
from services.intake import ErrorKind, IntakeError

T = TypeVar("T")
GROUPS: Final = ("severity", "service", "category", "month")


class Reader(msgspec.Struct, frozen=True, kw_only=True):
    """What read routes need, kept on the app state."""

    con: duckdb.DuckDBPyConnection
    projector: Projector
    policy: Policy
    clock: Callable[[], datetime]
    # Readers get their own threads: DuckDB releases the GIL, and the loop's default pool
    # (cores + 4) is shared with everything else that must not wait behind slow reports.
    executor: ThreadPoolExecutor

    async def run(self, query: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def call() -> T:
            cur = self.con.cursor()
            try:
                return query(cur, *args, **kwargs)
            finally:
                cur.close()

        return await asyncio.get_running_loop().run_in_executor(self.executor, call)


def _reader(request: Request[Any, Any, Any]) -> Reader:
    # Read once per request: a replay may swap in a new generation at any moment.
    reader: Reader = request.app.state.models.reader
    return reader


async def _fresh(reader: Reader, wait_for: int | None) -> None:
    if wait_for is not None:
        try:
            await reader.projector.wait(wait_for, timeout=10)
        except TimeoutError as exc:
            raise IntakeError(
                ErrorKind.UNAVAILABLE, f"the read models have not reached seq {wait_for} yet"
            ) from exc


async def _incident(reader: Reader, incident_id: str, now: datetime) -> dict[str, Any]:
    incident = await reader.run(queries.get_incident, incident_id, now)
    if incident is None:
        raise NotFoundException(f"incident {incident_id} does not exist")
    return incident


@get("/v1/incidents", guards=[requires(Permission.READ)], tags=["reads"])
async def list_incidents(
    request: Request[Any, Any, Any],
    status: FromQuery[str | None] = None,
    severity: FromQuery[str | None] = None,
    service: FromQuery[str | None] = None,
    include_closed: FromQuery[bool] = False,
    wait_for: FromQuery[int | None] = None,
    as_of: FromQuery[datetime | None] = None,
) -> dict[str, Any]:
    """The status board: open incidents unless `include_closed` or a `status` is asked for.

    With `as_of`, the board as it stood then, folded from the log (not the projection).
    """
    reader = _reader(request)
    args = (status, severity, service, include_closed)
    if as_of is not None:
        past = await _past(request, reader, None, as_of)
        return {"as_of": as_of, "incidents": await past.run(queries.list_incidents, as_of, *args)}
    await _fresh(reader, wait_for)
    return {"incidents": await reader.run(queries.list_incidents, reader.clock(), *args)}


@get("/v1/incidents/{incident_id:str}", guards=[requires(Permission.READ)], tags=["reads"])
async def show_incident(
    request: Request[Any, Any, Any],
    incident_id: FromPath[str],
    wait_for: FromQuery[int | None] = None,
) -> dict[str, Any]:
    reader = _reader(request)
    await _fresh(reader, wait_for)
    now = reader.clock()
    incident = await _incident(reader, incident_id, now)
    incident["breaches"] = await reader.run(
        breaches.breaches, reader.policy, now, incident_id=incident_id
    )
    return {"incident": incident}


@get("/v1/incidents/{incident_id:str}/timeline", guards=[requires(Permission.READ)], tags=["reads"])
async def incident_timeline(
    request: Request[Any, Any, Any],
    incident_id: FromPath[str],
    wait_for: FromQuery[int | None] = None,
    as_of: FromQuery[datetime | None] = None,
) -> dict[str, Any]:
    """State and events of an incident; with `as_of`, as the log knew it then (recorded_at)."""
    reader = _reader(request)
    if as_of is not None:
        reader = await _past(request, reader, incident_id, as_of)
    else:
        await _fresh(reader, wait_for)
    now = as_of or reader.clock()
    incident = await _incident(reader, incident_id, now)
    incident["breaches"] = await reader.run(
        breaches.breaches, reader.policy, now, incident_id=incident_id
    )
    answer = {"incident": incident, "events": await reader.run(queries.timeline, incident_id)}
    return answer | ({"as_of": as_of} if as_of is not None else {})


@get(
    "/v1/incidents/{incident_id:str}/postmortem",
    guards=[requires(Permission.READ)],
    tags=["reads"],
    media_type="text/markdown",  # Litestar appends "; charset=utf-8" to text types
)
async def incident_postmortem(
    request: Request[Any, Any, Any],
    incident_id: FromPath[str],
    wait_for: FromQuery[int | None] = None,
) -> str:
    """A postmortem draft in Markdown, from the incident's events and the severity policy."""
    reader = _reader(request)
    await _fresh(reader, wait_for)
    draft = await reader.run(postmortem.report, incident_id, reader.policy, reader.clock())
    if draft is None:
        raise NotFoundException(f"incident {incident_id} does not exist")
    return draft


async def _past(
    request: Request[Any, Any, Any], reader: Reader, incident_id: str | None, as_of: datetime
) -> Reader:
    """A reader over the read models reconstructed from the log as of `as_of`."""
    if as_of.tzinfo is None:
        raise IntakeError(ErrorKind.INVALID, "as_of needs a UTC offset", "as_of")
    store: EventStore = request.app.state.store
    if incident_id is None:
        events = [s async for batch in store.read() for s in batch]
    else:
        events = (await store.load(incident_id)).events
    loop = asyncio.get_running_loop()
    con = await loop.run_in_executor(reader.executor, asofs.reconstruct, events, as_of)
    return msgspec.structs.replace(reader, con=con)


@get("/v1/metrics/mttr", guards=[requires(Permission.READ)], tags=["reads"])
async def mttr(
    request: Request[Any, Any, Any],
    group_by: FromQuery[str] = "severity",
    from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
    to: FromQuery[datetime | None] = None,
) -> dict[str, Any]:
    """MTTD, MTTA, MTTM and MTTR per group (`from`/`to` bound the declaration time)."""
    if group_by not in GROUPS:
        raise IntakeError(ErrorKind.INVALID, f"group_by is one of {', '.join(GROUPS)}", "group_by")
    reader = _reader(request)
    rows = await reader.run(metrics.mttx, group_by, from_, to)
    return {
        "group_by": group_by,
        "definitions_version": metrics.DEFINITIONS_VERSION,
        "rows": rows,
        "snapshot": _snapshot(request, reader),
    }


@get("/v1/metrics/definitions", tags=["reads"])
async def definitions() -> dict[str, Any]:
    return {"version": metrics.DEFINITIONS_VERSION, "definitions": metrics.DEFINITIONS}


@get("/v1/breaches", guards=[requires(Permission.READ)], tags=["reads"])
async def list_breaches(
    request: Request[Any, Any, Any],
    open_only: FromQuery[bool] = False,
    incident_id: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """Missed targets of the severity policy; open incidents are judged against now."""
    reader = _reader(request)
    rows = await reader.run(
        breaches.breaches,
        reader.policy,
        reader.clock(),
        incident_id=incident_id,
        open_only=open_only,
    )
    repeats = await reader.run(breaches.repeats)
    return {
        "breaches": rows,
        "repeats": repeats,
        "policy_version": reader.policy.version,
        "snapshot": _snapshot(request, reader),
    }


@get("/v1/audit", guards=[requires(Permission.READ)], tags=["reads"])
async def audit(
    request: Request[Any, Any, Any],
    actor: FromQuery[str | None] = None,
    type_: Annotated[str | None, QueryParameter(name="type")] = None,
    incident_id: FromQuery[str | None] = None,
    from_: Annotated[datetime | None, QueryParameter(name="from")] = None,
    to: FromQuery[datetime | None] = None,
    limit: FromQuery[int] = 1000,
) -> dict[str, Any]:
    reader = _reader(request)
    rows = await reader.run(queries.audit, actor, type_, incident_id, from_, to, min(limit, 10_000))
    return {"entries": rows, "snapshot": _snapshot(request, reader)}


class QueryBody(msgspec.Struct, forbid_unknown_fields=True):
    sql: str


@post("/v1/query", status_code=200, guards=[requires(Permission.QUERY)], tags=["reads"])
async def query(request: Request[Any, Any, Any], data: JSONBody[QueryBody]) -> sandbox.Result:
    """Read-only SQL over the read models (one statement, 10,000 rows, 10 s)."""
    reader = _reader(request)
    try:
        return await asyncio.get_running_loop().run_in_executor(
            reader.executor, sandbox.run, reader.con, data.sql
        )
    except sandbox.QueryError as exc:
        raise IntakeError(ErrorKind.MALFORMED, str(exc), "sql") from exc


def _snapshot(request: Request[Any, Any, Any], reader: Reader) -> dict[str, Any]:
    """Report metadata: who asked, when, which part of the log the answer covers."""
    principal = principal_of(request)
    return {
        "asked_by": principal.name if principal else None,
        "asked_at": datetime.now(UTC),
        "through_seq": reader.projector.checkpoint,
        "definitions_version": metrics.DEFINITIONS_VERSION,
    }


@get("/readyz", tags=["operations"])
async def readyz(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """Ready when NATS is connected; reports the projector's lag behind the log."""
    reader = _reader(request)
    store = request.app.state.store
    try:
        first_seq, last_seq = await store.bounds()
        _, oldest_at = await store.first_retained()
    except StoreUnavailableError as exc:
        return Response({"ready": False, "reason": str(exc)}, status_code=503)
    projector = reader.projector
    lag = max(last_seq - projector.checkpoint, 0)
    return Response(
        {
            "ready": True,
            "stream": {"first_seq": first_seq, "last_seq": last_seq},
            "projector": {"checkpoint": projector.checkpoint, "lag": lag},
            "retention": {
                "first_retained_seq": projector.first_retained,
                "oldest_record_at": oldest_at,
                "prune_pending": first_seq > projector.first_retained,
                "expired_events": projector.expired,
            },
        }
    )


@get(
    "/v1/incidents/{incident_id:str}/export",
    guards=[requires(Permission.ADMINISTER)],
    tags=["evidence"],
    media_type="application/gzip",
)
async def export_bundle(
    request: Request[Any, Any, Any], incident_id: FromPath[str]
) -> Response[bytes]:
    """The incident's evidence bundle: a tar.gz of one directory `evidence-<id>/` holding
    events.jsonl (as stored), sequences.txt, manifest.json, verify.py and README.txt."""
    principal = principal_of(request)
    bundle = await evidence.packed_bundle(
        evidence.Log.of(request.app.state.store),
        incident_id,
        principal.name if principal else "anonymous",
    )
    disposition = f'attachment; filename="{bundle.name}.tar.gz"'
    return Response(
        bundle.data,
        media_type="application/gzip",
        headers={"Content-Disposition": disposition, "X-Manifest-SHA256": bundle.manifest_sha256},
    )


@get("/v1/verify", guards=[requires(Permission.ADMINISTER)], tags=["evidence"])
async def verify_chains(
    request: Request[Any, Any, Any], strict: FromQuery[bool] = False
) -> evidence.Report:
    """Recompute every incident's hash chain from the log: first break per incident, gaps.

    `strict`: a chain cut by expiry that no retention.advanced record vouches for fails too."""
    # The projector's checkpoint was written: a log ending before it has lost its tail.
    checkpoint = _reader(request).projector.checkpoint
    log = evidence.Log.of(request.app.state.store)
    return await evidence.verify_log(log, checkpoint, strict)


ROUTES: Final = [
    list_incidents,
    show_incident,
    incident_timeline,
    incident_postmortem,
    mttr,
    definitions,
    list_breaches,
    audit,
    query,
    readyz,
    export_bundle,
    verify_chains,
]
