"""CLI read verbs (DESIGN 11): each turns its arguments into one request to a read route.

A verb is a plain function from arguments to a `Read` (path, query, renderer); `register` adds
`--url`, `--token` and `--json`, sends it and prints the answer as rich tables, or verbatim with
`--json`. Exit 0 on success, 2 on bad input or a 4xx answer, 1 when the service fails.
"""

import functools
import inspect
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Final, NamedTuple

import typer

from events.schema import Severity, Status
from projections.groups import GroupBy, group_by_text, parse_group_by
from services.cli import render
from services.cli.client import call
from services.cli.options import (
    IncidentArg,
    Verb,
    fail,
    incident_path,
    parse_incident_id,
    rfc3339,
    service_options,
)
from services.cli.render import Answer


class Read(NamedTuple):
    path: str
    render: Callable[[Answer], None]
    params: dict[str, Any] | None = None
    body: Any = None  # POSTed when given
    json_path: str | None = None  # what --json prints, when not `path`


IncidentOption = Annotated[
    str | None, typer.Option("--incident", parser=parse_incident_id, metavar="ID")
]
Moment = Annotated[
    datetime | None, typer.Option(parser=rfc3339, metavar="RFC3339", help="e.g. 2026-01-02T10:00Z")
]
From = Annotated[datetime | None, typer.Option("--from", parser=rfc3339, metavar="RFC3339")]


def list_(
    status: Annotated[Status | None, typer.Option(show_default=False)] = None,
    severity: Annotated[Severity | None, typer.Option(show_default=False)] = None,
    service: Annotated[str | None, typer.Option(show_default=False)] = None,
    all_: Annotated[bool, typer.Option("--all", help="Include resolved and closed.")] = False,
) -> Read:
    """The status board: open incidents, most severe first."""
    query = {"status": status, "severity": severity, "service": service}
    return Read("/v1/incidents", render.board, query | {"include_closed": all_ or None})


def show(incident_id: IncidentArg) -> Read:
    """One incident: its state, impact, alerts, breaches, evidence and changes before it."""
    # People see what the timeline answer adds (evidence, changes); --json stays the incident.
    timeline = incident_path(incident_id, "/timeline")
    return Read(timeline, render.incident, json_path=incident_path(incident_id))


def timeline(incident_id: IncidentArg, as_of: Moment = None) -> Read:
    """Every event of an incident in order (--as-of: as the log knew it then)."""
    show_timeline = functools.partial(render.timeline, as_of=as_of)
    return Read(incident_path(incident_id, "/timeline"), show_timeline, {"as_of": as_of})


def _group_by(text: str) -> str:
    return group_by_text(parse_group_by(text))


def mttr(
    group_by: Annotated[
        str,
        typer.Option(
            parser=_group_by,
            metavar="KEY[,KEY]",
            help=f"One of {', '.join(GroupBy)}, or two comma-separated: severity,month.",
        ),
    ] = GroupBy.SEVERITY.value,
    from_: From = None,
    to: Moment = None,
) -> Read:
    """MTTD, MTTA, MTTM, MTTR and the automation share per group, for incidents declared
    between --from and --to."""
    return Read("/v1/metrics/mttr", render.mttr, {"group_by": group_by, "from": from_, "to": to})


def breaches(
    open_: Annotated[bool, typer.Option("--open", help="Only open incidents.")] = False,
    incident: IncidentOption = None,
) -> Read:
    """Missed targets of the severity policy, and repeat incidents."""
    return Read(
        "/v1/breaches", render.breaches, {"open_only": open_ or None, "incident_id": incident}
    )


def audit(
    actor: Annotated[str | None, typer.Option(show_default=False)] = None,
    type_: Annotated[str | None, typer.Option("--type", help="e.g. incident.acknowledged")] = None,
    incident: IncidentOption = None,
    from_: From = None,
    to: Moment = None,
    limit: Annotated[int | None, typer.Option(min=1, show_default=False)] = None,
) -> Read:
    """Who did what, newest first (--from/--to bound the recording time)."""
    query = {"actor": actor, "type": type_, "incident_id": incident, "limit": limit}
    return Read("/v1/audit", render.audit, query | {"from": from_, "to": to})


def query(
    sql: Annotated[str, typer.Argument(show_default=False, help="One statement; - reads stdin.")],
) -> Read:
    """Read-only SQL over the read models (tables incidents, events, alerts, comms)."""
    sql = sys.stdin.read() if sql == "-" else sql
    if not sql.strip():
        fail("empty SQL")
    return Read("/v1/query", render.result, body={"sql": sql})


def _params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Query parameters as the routes take them: unset ones left out, times in RFC 3339."""
    items = (params or {}).items()
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in items if v is not None}


_SERVICE: Final = service_options("Service")


def read_verb(build: Callable[..., Read]) -> Callable[..., None]:
    """The typer command of a verb: its own parameters, then --url, --token and --json."""

    def command(*, url: str, token: str | None, as_json: bool, **kwargs: Any) -> None:
        read = build(**kwargs)
        method = "GET" if read.body is None else "POST"
        path = read.json_path if as_json and read.json_path else read.path
        raw, answer = call(url, token, method, path, read.body, _params(read.params))
        if as_json:
            typer.echo(raw.decode())
        elif isinstance(answer, dict):
            read.render(answer)
        else:
            fail(f"service at {url} answered a JSON {type(answer).__name__}", code=1)

    own = inspect.signature(build).parameters.values()
    command.__signature__ = inspect.Signature([*own, *_SERVICE])  # type: ignore[attr-defined]
    command.__doc__ = build.__doc__
    return command


VERBS: Final = (list_, show, timeline, mttr, breaches, audit, query)

OutFile = Annotated[
    Path | None,
    typer.Option("--out", metavar="FILE", dir_okay=False, help="Write the Markdown to FILE."),
]


def postmortem(
    incident_id: IncidentArg, out_file: OutFile = None, *, url: str, token: str | None
) -> None:
    """A postmortem draft in Markdown from the incident's log: printed, or written to --out."""
    raw, _ = call(url, token, "GET", incident_path(incident_id, "/postmortem"), json=False)
    markdown = raw.decode()
    if out_file is None:
        typer.echo(markdown, nl=False)
        return
    try:
        out_file.write_text(markdown, encoding="utf-8")
    except OSError as exc:
        fail(f"cannot write {out_file}: {exc.strerror or exc}")
    typer.echo(f"wrote {out_file}")


# Markdown, not JSON: its own --url and --token, and no --json.
_own = list(inspect.signature(postmortem).parameters.values())[:2]
postmortem.__signature__ = inspect.Signature([*_own, *_SERVICE[:2]])  # type: ignore[attr-defined]


def register(app: typer.Typer) -> None:
    for build in VERBS:
        app.command(build.__name__.rstrip("_"), cls=Verb)(read_verb(build))
    # `postmortem` (the draft) is registered by `process`, with publish and review.
