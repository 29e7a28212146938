"""How a write verb becomes an HTTP call: a verb is a plain function from its arguments to a
`Post` (path and body); `write_verb` adds the options every write verb shares (service, token,
actor, envelope, --json), sends it and prints the answer (`writes`, `process`)."""

import inspect
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

import typer
from rich.console import Console
from rich.markup import escape

from services.cli.client import call
from services.cli.options import local_user, option, rfc3339, service_options

out = Console(soft_wrap=True, highlight=False)


Answer = dict[str, Any]


class Post(NamedTuple):
    path: str
    body: dict[str, Any]
    # An extra line for people, made from the answer (the new incident id, a mitigation id).
    note: Callable[[Answer], str] | None = None
    # Body fields read from the service first: a GET path, and the fields out of its answer.
    lookup: tuple[str, Callable[[Answer], dict[str, Any]]] | None = None


class _Common(NamedTuple):
    url: str
    token: str | None
    actor: str | None
    as_json: bool
    event_id: str | None
    at: datetime | None


_PANEL: Final = "Service and envelope"
_URL, _TOKEN, _AS_JSON = service_options(_PANEL)

# Added to every verb's own parameters; `_Common` receives them in this order.
_COMMON: Final = (
    _URL,
    _TOKEN,
    option(
        "actor",
        str | None,
        None,
        envvar="INCIDENTS_ACTOR",
        panel=_PANEL,
        help="Who acts, recorded on the event (default $USER@hostname).",
    ),
    _AS_JSON,
    option(
        "event_id",
        str | None,
        None,
        "--event-id",
        panel=_PANEL,
        help="Idempotency key: a retry with the same key is stored once.",
    ),
    option(
        "at",
        datetime | None,
        None,
        parser=rfc3339,
        panel=_PANEL,
        metavar="RFC3339",
        help="When it happened, for backfilling, e.g. 2026-01-02T10:00:00+01:00.",
    ),
)


def _body(common: _Common, post: Post) -> dict[str, Any]:
    anchor = common.at or datetime.now(UTC)
    body = {
        key: anchor + value if isinstance(value, timedelta) else value
        for key, value in post.body.items()
        if value is not None
    }
    body |= {"actor": common.actor or local_user(), "source": "cli"}
    if common.event_id:
        body["event_id"] = common.event_id
    if common.at:
        body["occurred_at"] = common.at
    return body


def _show(answer: dict[str, Any], post: Post) -> None:
    if post.note is not None:
        out.print(escape(post.note(answer)))
    events: list[dict[str, Any]] = answer.get("events") or []
    for event in events:
        mark = " [yellow]duplicate[/]" if event.get("duplicate") else ""
        where = f"[bold]{escape(str(event.get('incident_id')))}[/]"
        out.print(f"{where} [cyan]{escape(str(event.get('type')))}[/] seq {event.get('seq')}{mark}")
    # A preview answers no events at all: it never tried to change anything.
    if not events and "events" in answer:
        out.print(f"[bold]{escape(str(answer.get('incident_id') or ''))}[/] no change")


def _submit(common: _Common, post: Post) -> None:
    if post.lookup is not None:
        path, pick = post.lookup
        _, found = call(common.url, common.token, "GET", path)
        post = post._replace(body=post.body | pick(found if isinstance(found, dict) else {}))
    raw, answer = call(common.url, common.token, "POST", post.path, _body(common, post))
    if common.as_json:
        typer.echo(raw.decode())
    else:
        _show(answer if isinstance(answer, dict) else {}, post)


def write_verb(build: Callable[..., Post]) -> Callable[..., None]:
    """The typer command of a verb: its own parameters, then the common options."""
    names = [parameter.name for parameter in _COMMON]

    def command(**kwargs: Any) -> None:
        common = _Common(*(kwargs.pop(name) for name in names))
        _submit(common, build(**kwargs))

    own = inspect.signature(build).parameters.values()
    command.__signature__ = inspect.Signature([*own, *_COMMON])  # type: ignore[attr-defined]
    command.__name__ = build.__name__
    command.__doc__ = build.__doc__
    return command
