"""HTTP read routes: status board, incident, timeline, postmortem, metrics, breaches, audit, SQL.

Thin: each route picks its parameters, runs one query function on a fresh DuckDB cursor in a
worker thread (DuckDB blocks), and answers JSON. Reads come from the projection; the write
answer's `seq` can be awaited with `?wait_for=SEQ` for read-your-writes.

Times in the query string (`as_of`, `from`, `to`) go through `state.query_time`: RFC 3339 text
only; a time without an offset is refused with 422 naming the parameter, any other is read and
answered in UTC.
"""

import asyncio
import functools
from datetime import UTC, datetime
from typing import Annotated, Any, Final

import msgspec
from litestar import Response, get, post
from litestar.enums import MediaType
from litestar.exceptions import NotFoundException
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from events.store import EventStore
from projections import asof as asofs
from projections import breaches, changes, metrics, postmortem, queries, sandbox
from projections.groups import group_by_text, parse_group_by
from services.api.guards import principal_of, requires
from services.api.state import (
    AnyRequest,
    QueryFrom,
    QueryTime,
    query_time,
    reader_of,
    store_of,
)
from services.auth import Permission
from services.errors import ErrorKind, ServiceError
from services.readmodels import Reader

MAX_AUDIT_ENTRIES: Final = 10_000


async def fresh(reader: Reader, wait_for: int | None, store: EventStore) -> None:
    """Until the read models include `wait_for`. A `wait_for` the log has not reached is refused
    at once (422): no write answered it, so waiting could only end in 503."""
    if wait_for is None or wait_for <= reader.projector.checkpoint:
        return
    if wait_for > (last := await store.last_seq()):
        raise ServiceError(ErrorKind.INVALID, f"the log ends at seq {last}", "wait_for")
    try:
        await reader.projector.wait(wait_for, timeout=10)
    except TimeoutError as exc:
        raise ServiceError(
            ErrorKind.UNAVAILABLE, f"the read models have not reached seq {wait_for} yet"
        ) from exc


async def incident_with_breaches(reader: Reader, incident_id: str, now: datetime) -> dict[str, Any]:
    """The incident's row as of `now`, with the policy targets it missed; 404 when unknown."""
    incident = await reader.run(queries.incident_with_breaches, incident_id, now, reader.policy)
    if incident is None:
        raise _unknown(incident_id)
    return incident


async def incident_then(
    request: AnyRequest, reader: Reader, incident_id: str, as_of: datetime
) -> asofs.IncidentThen:
    """The incident as the log knew it at `as_of` (UTC), folded from its events (not the
    projection); 404 when it was unknown then."""
    events = (await store_of(request).load(incident_id)).events
    loop = asyncio.get_running_loop()
    then = await loop.run_in_executor(
        reader.executor, asofs.incident, events, as_of, incident_id, reader.policy
    )
    if then is None:
        raise _unknown(incident_id)
    return then


def _unknown(incident_id: str) -> NotFoundException:
    return NotFoundException(f"incident {incident_id} does not exist")


@get("/v1/incidents", guards=[requires(Permission.READ)], tags=["reads"])
async def list_incidents(
    request: AnyRequest,
    status: FromQuery[str | None] = None,
    severity: FromQuery[str | None] = None,
    service: FromQuery[str | None] = None,
    include_closed: FromQuery[bool] = False,
    wait_for: FromQuery[int | None] = None,
    as_of: QueryTime = None,
) -> dict[str, Any]:
    """The status board: open incidents unless `include_closed` or a `status` is asked for.

    With `as_of`, the board as it stood then, folded from the log (not the projection).
    """
    reader = reader_of(request)
    args = (status, severity, service, include_closed)
    moment = query_time(as_of, "as_of")
    if moment is not None:
        events = [s async for batch in store_of(request).read() for s in batch]
        fold = functools.partial(asofs.board, events, moment, *args, policy=reader.policy)
        board = await asyncio.get_running_loop().run_in_executor(reader.executor, fold)
        return {"as_of": moment, "incidents": board}
    await fresh(reader, wait_for, store_of(request))
    board = await reader.run(queries.list_incidents, reader.clock(), *args, policy=reader.policy)
    return {"incidents": board}


@get("/v1/incidents/{incident_id:str}", guards=[requires(Permission.READ)], tags=["reads"])
async def show_incident(
    request: AnyRequest,
    incident_id: FromPath[str],
    wait_for: FromQuery[int | None] = None,
) -> dict[str, Any]:
    reader = reader_of(request)
    await fresh(reader, wait_for, store_of(request))
    now = reader.clock()
    incident = await incident_with_breaches(reader, incident_id, now)
    before = await _changes_before(request, incident)
    return {"incident": incident, "changes_before_detection": before}


async def _changes_before(
    request: AnyRequest, incident: dict[str, Any], as_of: datetime | None = None
) -> list[dict[str, Any]]:
    """Changes (deploys, config pushes) of the hour before the incident was detected, from the
    live read models (with `as_of`, those the log had recorded by then)."""
    detected_at = incident.get("detected_at")
    return await reader_of(request).run(changes.before, detected_at, as_of)


@get("/v1/incidents/{incident_id:str}/timeline", guards=[requires(Permission.READ)], tags=["reads"])
async def incident_timeline(
    request: AnyRequest,
    incident_id: FromPath[str],
    wait_for: FromQuery[int | None] = None,
    as_of: QueryTime = None,
) -> dict[str, Any]:
    """State and events of an incident; with `as_of`, as the log knew it then (recorded_at)."""
    reader = reader_of(request)
    moment = query_time(as_of, "as_of")
    if moment is not None:
        then = await incident_then(request, reader, incident_id, moment)
        incident, events = then.incident, then.events
    else:
        await fresh(reader, wait_for, store_of(request))
        incident = await incident_with_breaches(reader, incident_id, reader.clock())
        events = await reader.run(queries.timeline, incident_id)
    answer = {
        "incident": incident,
        "events": events,
        "changes_before_detection": await _changes_before(request, incident, moment),
    }
    return answer | ({"as_of": moment} if moment is not None else {})


@get(
    "/v1/incidents/{incident_id:str}/postmortem",
    guards=[requires(Permission.READ)],
    tags=["reads"],
    media_type="text/markdown",  # Litestar appends "; charset=utf-8" to text types
)
async def incident_postmortem(
    request: AnyRequest,
    incident_id: FromPath[str],
    wait_for: FromQuery[int | None] = None,
) -> str:
    """A postmortem draft in Markdown, from the incident's events and the severity policy."""
    reader = reader_of(request)
    await fresh(reader, wait_for, store_of(request))
    draft = await reader.run(postmortem.report, incident_id, reader.policy, reader.clock())
    if draft is None:
        raise NotFoundException(f"incident {incident_id} does not exist")
    return draft


@get("/v1/metrics/mttr", guards=[requires(Permission.READ)], tags=["reads"])
async def mttr(
    request: AnyRequest,
    group_by: FromQuery[str] = "severity",
    from_: QueryFrom = None,
    to: QueryTime = None,
) -> dict[str, Any]:
    """MTTD, MTTA, MTTM and MTTR per group (`from`/`to` bound the declaration time), and the
    automation share; `group_by` one key or two (`severity,month`; `team` by the policy)."""
    try:
        keys = parse_group_by(group_by)
    except ValueError as exc:
        raise ServiceError(ErrorKind.INVALID, str(exc), "group_by") from None
    reader = reader_of(request)
    since, until = query_time(from_, "from"), query_time(to, "to")
    rows = await reader.run(metrics.mttx, keys, since, until, reader.policy.teams)
    return {
        "group_by": group_by_text(keys),
        "definitions_version": metrics.DEFINITIONS_VERSION,
        "rows": rows,
        "snapshot": _snapshot(request, reader),
    }


@get("/v1/metrics/definitions", tags=["reads"])
async def definitions() -> dict[str, Any]:
    return {"version": metrics.DEFINITIONS_VERSION, "definitions": metrics.DEFINITIONS}


@get("/v1/breaches", guards=[requires(Permission.READ)], tags=["reads"])
async def list_breaches(
    request: AnyRequest,
    open_only: FromQuery[bool] = False,
    incident_id: FromQuery[str | None] = None,
) -> dict[str, Any]:
    """Missed targets of the severity policy; open incidents are judged against now."""
    reader = reader_of(request)
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
    request: AnyRequest,
    actor: FromQuery[str | None] = None,
    type_: Annotated[str | None, QueryParameter(name="type")] = None,
    incident_id: FromQuery[str | None] = None,
    from_: QueryFrom = None,
    to: QueryTime = None,
    limit: FromQuery[int] = 1000,
) -> dict[str, Any]:
    """Who did what; at most `limit` entries (default 1,000; more than 10,000 gives 10,000)."""
    if limit < 1:
        raise ServiceError(ErrorKind.INVALID, "must be at least 1", "limit")
    reader = reader_of(request)
    since, until = query_time(from_, "from"), query_time(to, "to")
    rows = await reader.run(
        queries.audit, actor, type_, incident_id, since, until, min(limit, MAX_AUDIT_ENTRIES)
    )
    return {"entries": rows, "snapshot": _snapshot(request, reader)}


class QueryBody(msgspec.Struct, forbid_unknown_fields=True):
    sql: str


@post(
    "/v1/query",
    status_code=200,
    guards=[requires(Permission.QUERY)],
    tags=["reads"],
    media_type=MediaType.JSON,
    response_description='{"columns": [...], "rows": [[...]], "truncated": bool}',
)
async def query(request: AnyRequest, data: JSONBody[QueryBody]) -> Response[bytes]:
    """Read-only SQL over the read models: one SELECT; 10,000 rows, 8 MiB of answer, 1 GiB of
    memory, 10 s, one query at a time (`projections/sandbox.py`)."""
    reader = reader_of(request)
    loop = asyncio.get_running_loop()
    try:
        # Refused at once, without waiting for a turn behind a running query.
        await loop.run_in_executor(reader.executor, sandbox.check, reader.con, data.sql)
        gate: asyncio.Semaphore = request.app.state.sql_gate
        try:
            async with asyncio.timeout(sandbox.TIMEOUT_S):
                await gate.acquire()
        except TimeoutError as exc:
            detail = "another query has been running for a while; try again shortly"
            raise ServiceError(ErrorKind.UNAVAILABLE, detail, "sql") from exc
        # Run, fetch and encode in a reader thread: the loop only sends the bytes. The gate
        # opens when the thread is done, even if this request is given up meanwhile. The
        # reader is taken again: a replay may have swapped generations while this one waited.
        try:
            reader = reader_of(request)
            running = loop.run_in_executor(reader.executor, sandbox.answer, reader.con, data.sql)
        except BaseException:
            gate.release()
            raise
        running.add_done_callback(lambda _: gate.release())
        body = await asyncio.shield(running)
    except sandbox.QueryError as exc:
        raise ServiceError(ErrorKind.MALFORMED, str(exc), "sql") from exc
    return Response(body, media_type=MediaType.JSON)


def _snapshot(request: AnyRequest, reader: Reader) -> dict[str, Any]:
    """Report metadata: who asked, when, which part of the log the answer covers."""
    principal = principal_of(request)
    return {
        "asked_by": principal.name if principal else None,
        "asked_at": datetime.now(UTC),
        "through_seq": reader.projector.checkpoint,
        "definitions_version": metrics.DEFINITIONS_VERSION,
    }


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
]
