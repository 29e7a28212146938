"""CLI verbs of the process after an incident (DESIGN 11): `incidents action add | start |
complete | list` and `incidents postmortem [draft] | publish | review`.

Writes are built and sent by `writes`' machinery (shared options: --url, --token, --actor,
--json, --event-id, --at), `action list` and the draft by `reads`'. `incidents postmortem ID`
still prints the draft: a first word that is not a sub-command means `draft`.
"""

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from events.schema import MAX_MARKDOWN, ActionStatus, PostmortemStatus, Severity
from events.subjects import new_event_id
from services.cli import reads
from services.cli.options import IncidentArg, Verb, fail, incident_path, rfc3339
from services.cli.reads import Read, read_verb
from services.cli.render import Answer, out
from services.cli.verbs import Post, write_verb

ItemArg = Annotated[
    str, typer.Argument(metavar="ITEM", show_default=False, help="Action item id, e.g. AI-1.")
]


def _day(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date, e.g. 2026-01-31") from None


def add(
    incident_id: IncidentArg,
    title: Annotated[str, typer.Argument(show_default=False, help="What is to be done.")],
    owner: Annotated[str | None, typer.Option(show_default=False, help="Who does it.")] = None,
    due: Annotated[
        date | None,
        typer.Option(
            parser=_day,
            metavar="YYYY-MM-DD",
            show_default=False,
            help="Due date: overdue once this day has ended (UTC) and it is not done.",
        ),
    ] = None,
    priority: Annotated[Severity | None, typer.Option(show_default=False)] = None,
    ticket: Annotated[
        str | None, typer.Option(metavar="URL", show_default=False, help="Its ticket.")
    ] = None,
    item_id: Annotated[
        str | None, typer.Option(help="Default AI-<random>; set it when retrying.")
    ] = None,
) -> Post:
    """Add an action item; prints its id, then the stored events."""
    # Named here, not by the server, so that people learn the id they will start and complete.
    item = item_id or f"AI-{new_event_id()[:8]}"
    body = {"item_id": item, "title": title, "owner": owner, "due": due}
    body |= {"priority": priority, "ticket_url": ticket}
    return Post(incident_path(incident_id, "/action-items"), body, note=lambda _: item)


def start(incident_id: IncidentArg, item_id: ItemArg) -> Post:
    """Start an action item (todo -> in_progress; once started or done, nothing changes)."""
    return Post(incident_path(incident_id, "/action-items/start"), {"item_id": item_id})


def complete(incident_id: IncidentArg, item_id: ItemArg) -> Post:
    """Complete an action item (-> done; a second completion changes nothing)."""
    return Post(incident_path(incident_id, "/action-items/complete"), {"item_id": item_id})


_ITEM_COLUMNS: Final = (
    ("incident_id", "incident"),
    ("item_id", "item"),
    ("title", "action"),
    ("owner", "owner"),
    ("priority", "priority"),
    ("due", "due"),
    ("status", "status"),
    ("ticket_url", "ticket"),
)


def _items(answer: Answer) -> None:
    found: list[Answer] = answer.get("action_items") or []
    if not found:
        out.print("action items: none")
        return
    table = Table(title=Text("action items"), title_justify="left")
    for _, header in _ITEM_COLUMNS:
        table.add_column(header, overflow="fold", no_wrap=header == "item")
    table.add_column("overdue")
    for row in found:
        cells = [Text(str(row.get(key) or "")) for key, _ in _ITEM_COLUMNS]
        late = Text("OVERDUE", style="bold red") if row.get("overdue") else Text("")
        table.add_row(*cells, late)
    out.print(table)


def list_(
    overdue: Annotated[
        bool, typer.Option("--overdue", help="Only items past their due day (UTC), not done.")
    ] = False,
    owner: Annotated[str | None, typer.Option(show_default=False)] = None,
    status: Annotated[ActionStatus | None, typer.Option(show_default=False)] = None,
    incident: Annotated[
        str | None, typer.Option("--incident", metavar="ID", show_default=False)
    ] = None,
) -> Read:
    """Action items of every incident, the soonest due first."""
    query = {"overdue": overdue or None, "owner": owner, "status": status}
    return Read("/v1/action-items", _items, query | {"incident_id": incident})


def publish(
    incident_id: IncidentArg,
    uri: Annotated[
        str | None, typer.Option(show_default=False, help="Where the postmortem is published.")
    ] = None,
    markdown_file: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE", dir_okay=False, show_default=False, help="Publish FILE inline."
        ),
    ] = None,
    author: Annotated[
        list[str] | None, typer.Option(show_default=False, help="An author; repeat.")
    ] = None,
    status: Annotated[
        PostmortemStatus, typer.Option(help="draft, in_review or final.")
    ] = PostmortemStatus.FINAL,
    summary: Annotated[str | None, typer.Option(show_default=False)] = None,
) -> Post:
    """Publish the postmortem: at --uri, from --markdown-file, or the generated draft.

    Without --uri or --markdown-file, the service publishes the draft it generates from the log
    now (what `incidents postmortem ID` prints), inline. Publish again to move the status
    (draft, in_review, final) or change the authors."""
    if uri is not None and markdown_file is not None:
        fail("give --uri or --markdown-file, not both (see: incidents postmortem publish --help)")
    markdown = None
    if markdown_file is not None:
        try:
            markdown = markdown_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail(f"cannot read {markdown_file}: {getattr(exc, 'strerror', None) or exc}")
        if len(markdown) > MAX_MARKDOWN:
            fail(
                f"{markdown_file} is {len(markdown):,} characters, over the {MAX_MARKDOWN:,} an "
                "inline postmortem holds: publish it elsewhere and give --uri"
            )
    body: dict[str, Any] = {"uri": uri, "markdown": markdown, "summary": summary}
    body |= {"authors": author, "status": status}
    return Post(incident_path(incident_id, "/postmortem"), body)


def review(
    incident_id: IncidentArg,
    attendee: Annotated[
        list[str] | None, typer.Option(show_default=False, help="Who attended; repeat.")
    ] = None,
    held_at: Annotated[
        datetime | None,
        typer.Option(
            parser=rfc3339,
            metavar="RFC3339",
            show_default=False,
            help="When the meeting was held (default: --at, else now).",
        ),
    ] = None,
    summary: Annotated[
        str | None, typer.Option(show_default=False, help="What it concluded.")
    ] = None,
) -> Post:
    """Record the postmortem's review meeting (the postmortem must be published first)."""
    # A timedelta is anchored by `writes` at --at, else now: the meeting's default time.
    held: datetime | timedelta = held_at if held_at is not None else timedelta(0)
    body = {"held_at": held, "attendees": attendee, "summary": summary}
    return Post(incident_path(incident_id, "/postmortem/review"), body)


class _DraftByDefault(TyperGroup):
    """`incidents postmortem ID` (the verb before publish and review existed) means
    `incidents postmortem draft ID`: a first word that is no sub-command is the draft's."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["draft", *args]
        return super().parse_args(ctx, args)


def register(app: typer.Typer) -> None:
    action = typer.Typer(no_args_is_help=True, help="Action items: add, start, complete, list.")
    for build in (add, start, complete):
        action.command(build.__name__, cls=Verb)(write_verb(build))
    action.command("list", cls=Verb)(read_verb(list_))
    app.add_typer(action, name="action")

    postmortem = typer.Typer(
        cls=_DraftByDefault,
        no_args_is_help=True,
        help="The postmortem: its draft from the log (`postmortem ID`), publish, review.",
    )
    postmortem.command("draft", cls=Verb)(reads.postmortem)
    postmortem.command("publish", cls=Verb)(write_verb(publish))
    postmortem.command("review", cls=Verb)(write_verb(review))
    app.add_typer(postmortem, name="postmortem")
