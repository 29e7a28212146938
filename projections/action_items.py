"""Action items across incidents: the rows of the `action_items` table (`schema`; the fold's items,
written with each folded incident by `rows.save`), its queries, and the one rule for "overdue".

Overdue: an item that is not done once its due day has ended, in UTC. `deadline` and `overdue`
are the rule in Python; the table stores each item's deadline (`due_at`), so SQL applies the
same rule with `overdue_sql` (the breach query and `listed` both do).
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

import duckdb

from events.incident import Incident
from events.schema import ActionStatus

MAX_LISTED: Final = 10_000
_COLUMNS: Final = "incident_id, item_id, title, owner, due, due_at, priority, status, ticket_url"


def deadline(due: date) -> datetime:
    """When an item due on `due` becomes overdue: the end of that day, in UTC."""
    if due == date.max:  # the day after does not exist: never overdue in practice
        return datetime.max.replace(tzinfo=UTC)
    return datetime.combine(due + timedelta(days=1), time(), tzinfo=UTC)


def overdue(status: str, due: date | None, now: datetime) -> bool:
    """Whether an item with this status and due date is overdue at `now`."""
    return status != ActionStatus.DONE and due is not None and now >= deadline(due)


def overdue_sql(now: str, alias: str = "") -> str:
    """`overdue` as a SQL condition over the table's columns; `now` is a TIMESTAMPTZ expression
    (a parameter such as `$now`, or `make_timestamp($now_us)`), `alias` the table's alias."""
    p = f"{alias}." if alias else ""
    return f"({p}status <> '{ActionStatus.DONE}' AND {p}due_at IS NOT NULL AND {p}due_at <= {now})"


def rows(state: Incident) -> list[tuple[Any, ...]]:
    """The table's rows of one folded incident, in the order its items were added."""
    return [
        (
            state.incident_id,
            item.item_id,
            position,
            item.title,
            item.owner,
            item.due,
            deadline(item.due) if item.due is not None else None,
            item.priority.value if item.priority is not None else None,
            item.status.value,
            item.ticket_url,
        )
        for position, item in enumerate(state.action_items, start=1)
    ]


def listed(
    cur: duckdb.DuckDBPyConnection,
    now: datetime,
    *,
    overdue: bool | None = None,
    owner: str | None = None,
    status: str | None = None,
    incident_id: str | None = None,
    limit: int = MAX_LISTED,
) -> list[dict[str, Any]]:
    """Items across incidents, the soonest due first (no due date last), each with `overdue`
    as of `now`. `overdue`: True only overdue ones, False only the others, None all."""
    late = overdue_sql("$now")
    where = ["TRUE"]
    params: dict[str, Any] = {"now": now, "limit": limit}
    if overdue is not None:
        where.append(late if overdue else f"NOT {late}")
    for column, value in (("owner", owner), ("status", status), ("incident_id", incident_id)):
        if value is not None:
            where.append(f"{column} = ${column}")
            params[column] = value
    return _select(cur, late, " AND ".join(where), params, "due_at NULLS LAST, incident_id")


def of_incident(
    cur: duckdb.DuckDBPyConnection, incident_id: str, now: datetime
) -> list[dict[str, Any]]:
    """One incident's items in the order they were added, each with `overdue` as of `now`."""
    params = {"now": now, "incident_id": incident_id, "limit": MAX_LISTED}
    return _select(cur, overdue_sql("$now"), "incident_id = $incident_id", params, "position")


def _select(
    cur: duckdb.DuckDBPyConnection, late: str, where: str, params: dict[str, Any], order: str
) -> list[dict[str, Any]]:
    cur.execute(
        f"SELECT {_COLUMNS}, {late} AS overdue FROM action_items WHERE {where} "
        f"ORDER BY {order}, position LIMIT $limit",
        params,
    )
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
