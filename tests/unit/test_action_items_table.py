"""Action items: the one overdue rule, and the `action_items` table as the fold has them.

The log goes through the real decider, the hash chain and the projector into DuckDB (in memory,
or a file for the schema upgrade); the table is compared with the domain's fold.
"""

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import msgspec
import pytest

from events.chain import seal
from events.commands import (
    AddActionItem,
    AnyCommand,
    CompleteActionItem,
    Declare,
    StartActionItem,
)
from events.decisions import Rejected, decide
from events.incident import INITIAL, Incident, fold
from events.records import Stored
from events.schema import Source, encode
from projections import action_items, schema
from projections.action_items import deadline, overdue, overdue_sql
from projections.database import open_database
from projections.projector import Projector

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
DUE = date(2026, 11, 8)


class Log:
    """Commands decided against the folded state of their incident, sealed and numbered."""

    def __init__(self) -> None:
        self.stored: list[Stored] = []
        self.states: dict[str, Incident] = {}

    def do(self, incident_id: str, command: type[AnyCommand], **fields: Any) -> None:
        n = len(self.stored) + 1
        at = T0 + timedelta(minutes=n)
        envelope = {"incident_id": incident_id, "event_id": f"e{n}", "occurred_at": at}
        built = msgspec.convert(
            envelope | {"actor": "dave", "source": Source.CLI} | fields, command
        )
        state = self.states.get(incident_id, INITIAL)
        decision = decide(built, state)
        assert not isinstance(decision, Rejected), decision
        mine = [s for s in self.stored if s.event.incident_id == incident_id]
        for event in seal(decision, mine[-1].event.hash if mine else "", at):
            self.stored.append(Stored(len(self.stored) + 1, event, encode(event)))
        self.states[incident_id] = fold(decision, state)


def scripted() -> Log:
    log = Log()
    for incident_id in ("INC-AI1", "INC-AI2"):
        log.do(incident_id, Declare, title=f"{incident_id} down", severity="P1")
    log.do(
        "INC-AI1",
        AddActionItem,
        item_id="AI-1",
        title="Validate pool settings in CI",
        owner="erin",
        due=DUE,
        priority="P1",
        ticket_url="https://jira.example.com/OPS-1",
    )
    log.do("INC-AI1", AddActionItem, item_id="AI-2", title="Alert on pool exhaustion")
    log.do("INC-AI2", AddActionItem, item_id="AI-1", title="Same id, other incident", due=DUE)
    log.do("INC-AI1", StartActionItem, item_id="AI-1")
    log.do("INC-AI2", AddActionItem, item_id="AI-3", title="Done early", owner="erin", due=DUE)
    log.do("INC-AI2", CompleteActionItem, item_id="AI-3")
    return log


def projected(stored: list[Stored], per_event: bool = False, path: str = ":memory:") -> Any:
    con = open_database(path)
    projector = Projector(con, None)
    for chunk in [[s] for s in stored] if per_event else [stored]:
        projector.apply(chunk, chunk[-1].seq)
    return con


def table(con: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
    return con.execute(
        "SELECT incident_id, item_id, position, title, owner, due, due_at, priority, status, "
        "ticket_url FROM action_items ORDER BY incident_id, position"
    ).fetchall()


def folded(log: Log) -> list[tuple[Any, ...]]:
    return [row for _, state in sorted(log.states.items()) for row in action_items.rows(state)]


@pytest.mark.parametrize(
    ("status", "due", "now", "expected"),
    [
        ("todo", DUE, datetime(2026, 11, 8, 23, 59, 59, 999999, tzinfo=UTC), False),
        ("todo", DUE, datetime(2026, 11, 9, 0, 0, tzinfo=UTC), True),  # the day has ended
        ("in_progress", DUE, datetime(2026, 12, 1, tzinfo=UTC), True),
        ("done", DUE, datetime(2026, 12, 1, tzinfo=UTC), False),
        ("todo", None, datetime(2099, 1, 1, tzinfo=UTC), False),
        # UTC decides, not the asker's zone: 01:00+02:00 on the 9th is still the 8th in UTC.
        ("todo", DUE, datetime.fromisoformat("2026-11-09T01:00:00+02:00"), False),
        ("todo", date.max, datetime.max.replace(tzinfo=UTC) - timedelta(days=1), False),
    ],
)
def test_overdue_once_the_due_day_has_ended_in_utc(
    status: str, due: date | None, now: datetime, expected: bool
) -> None:
    assert overdue(status, due, now) is expected


def test_deadline_is_the_next_midnight_utc() -> None:
    assert deadline(DUE) == datetime(2026, 11, 9, tzinfo=UTC)
    assert deadline(date(2026, 12, 31)) == datetime(2027, 1, 1, tzinfo=UTC)


def test_the_table_holds_the_fold_whatever_the_batching() -> None:
    log = scripted()
    whole, one_by_one = projected(log.stored), projected(log.stored, per_event=True)
    assert table(whole) == table(one_by_one) == folded(log)
    assert table(whole) == [
        (
            "INC-AI1",
            "AI-1",
            1,
            "Validate pool settings in CI",
            "erin",
            DUE,
            datetime(2026, 11, 9, tzinfo=UTC),
            "P1",
            "in_progress",
            "https://jira.example.com/OPS-1",
        ),
        ("INC-AI1", "AI-2", 2, "Alert on pool exhaustion", None, None, None, None, "todo", None),
        (
            "INC-AI2",
            "AI-1",
            1,
            "Same id, other incident",
            None,
            DUE,
            deadline(DUE),
            None,
            "todo",
            None,
        ),
        ("INC-AI2", "AI-3", 2, "Done early", "erin", DUE, deadline(DUE), None, "done", None),
    ]


def test_sql_and_python_agree_on_overdue() -> None:
    log = scripted()
    con = projected(log.stored)
    for now in (
        T0,
        deadline(DUE) - timedelta(microseconds=1),
        deadline(DUE),
        T0 + timedelta(days=90),
    ):
        rows = con.execute(
            f"SELECT item_id, status, due, {overdue_sql('$now')} FROM action_items "
            "ORDER BY incident_id, position",
            {"now": now},
        ).fetchall()
        assert [late for *_, late in rows] == [overdue(s, d, now) for _, s, d, _ in rows], now


def test_listed_filters_and_orders() -> None:
    con = projected(scripted().stored)
    late = deadline(DUE)

    def ids(**filters: Any) -> list[tuple[str, str]]:
        cur = con.cursor()
        return [(r["incident_id"], r["item_id"]) for r in action_items.listed(cur, late, **filters)]

    # Soonest due first, items without a due date last.
    assert ids() == [
        ("INC-AI1", "AI-1"),
        ("INC-AI2", "AI-1"),
        ("INC-AI2", "AI-3"),
        ("INC-AI1", "AI-2"),
    ]
    assert ids(overdue=True) == [("INC-AI1", "AI-1"), ("INC-AI2", "AI-1")]
    assert ids(overdue=False) == [("INC-AI2", "AI-3"), ("INC-AI1", "AI-2")]
    assert ids(owner="erin") == [("INC-AI1", "AI-1"), ("INC-AI2", "AI-3")]
    assert ids(owner="erin", overdue=True) == [("INC-AI1", "AI-1")]
    assert ids(status="done") == [("INC-AI2", "AI-3")]
    assert ids(incident_id="INC-AI2", limit=1) == [("INC-AI2", "AI-1")]
    [first] = action_items.listed(con.cursor(), late, limit=1)
    assert first == {
        "incident_id": "INC-AI1",
        "item_id": "AI-1",
        "title": "Validate pool settings in CI",
        "owner": "erin",
        "due": DUE,
        "due_at": late,
        "priority": "P1",
        "status": "in_progress",
        "ticket_url": "https://jira.example.com/OPS-1",
        "overdue": True,
    }
    added = [r["item_id"] for r in action_items.of_incident(con.cursor(), "INC-AI1", late)]
    assert added == ["AI-1", "AI-2"]  # in the order they were added


def test_retention_takes_the_items_of_expired_incidents_away() -> None:
    """An incident whose events all aged out loses its items; one whose declaration aged out
    (partial) shows none; the others keep theirs."""
    log = Log()
    log.do("INC-OLD", Declare, title="old", severity="P2")
    log.do("INC-OLD", AddActionItem, item_id="AI-1", title="gone with it")
    log.do("INC-HALF", Declare, title="half", severity="P2")
    log.do("INC-HALF", AddActionItem, item_id="AI-1", title="partial")
    log.do("INC-KEPT", Declare, title="kept", severity="P2")
    log.do("INC-KEPT", AddActionItem, item_id="AI-1", title="kept")
    con = projected(log.stored)
    projector = Projector(con, None)
    projector.prune(4)  # seqs 1..3 expire: all of INC-OLD, INC-HALF's declaration
    assert [(r[0], r[1]) for r in table(con)] == [("INC-KEPT", "AI-1")]


def test_a_file_of_schema_5_is_folded_again_into_the_table(tmp_path: Path) -> None:
    log = scripted()
    path = str(tmp_path / "models.duckdb")
    con = projected(log.stored, path=path)
    con.execute("DROP TABLE action_items")
    con.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
    con.close()
    con = open_database(path)
    Projector(con, None)  # opening it upgrades
    assert table(con) == folded(log)
    version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(schema.SCHEMA_VERSION),)
    con.close()
