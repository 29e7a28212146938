"""CLI write verbs (DESIGN 11): each turns its arguments into one POST to the HTTP intake
(`correct` without an EVENT_ID first reads the declaration's id).

A verb is a plain function from arguments to a `_Post` (path and body); `register` adds the
options every verb shares (service, token, actor, envelope, --json), sends it and prints the
answer. Exit 0 on success, 2 on bad input or a 4xx answer, 1 when the service fails.
"""

import inspect
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, NamedTuple

import typer
from rich.console import Console
from rich.markup import escape

from events.durations import parse_duration
from events.schema import (
    MAX_ESCALATION_LEVEL,
    Audience,
    Category,
    Channel,
    CommsKind,
    MitigationAction,
    NoteKind,
    Outcome,
    Phase,
    Role,
    Status,
)
from events.subjects import new_event_id
from services.cli.client import call
from services.cli.options import (
    SEVERITY_HELP,
    Customers,
    CustomersAffected,
    DataLoss,
    ImpactServices,
    ImpactText,
    IncidentArg,
    Regions,
    RevenueAtRisk,
    Security,
    UsersPct,
    Verb,
    fail,
    impact_body,
    incident_path,
    local_user,
    option,
    parse_incident_id,
    parse_severity,
    parse_status,
    rfc3339,
    service_options,
)

out = Console(soft_wrap=True, highlight=False)


Answer = dict[str, Any]


class _Post(NamedTuple):
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


def _duration(text: str) -> timedelta:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be greater than zero")
    return timedelta(seconds=seconds)


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


def _body(common: _Common, post: _Post) -> dict[str, Any]:
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


def _show(answer: dict[str, Any], post: _Post) -> None:
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


def _submit(common: _Common, post: _Post) -> None:
    if post.lookup is not None:
        path, pick = post.lookup
        _, found = call(common.url, common.token, "GET", path)
        post = post._replace(body=post.body | pick(found if isinstance(found, dict) else {}))
    raw, answer = call(common.url, common.token, "POST", post.path, _body(common, post))
    if common.as_json:
        typer.echo(raw.decode())
    else:
        _show(answer if isinstance(answer, dict) else {}, post)


def _command(build: Callable[..., _Post]) -> Callable[..., None]:
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


Reason = Annotated[str | None, typer.Option(show_default=False, help="Why, for the timeline.")]


def _moment(help: str) -> Any:
    return typer.Option(parser=rfc3339, metavar="RFC3339", show_default=False, help=help)


DetectedAt = Annotated[datetime | None, _moment("When it was detected (clocks start).")]
ImpactStartedAt = Annotated[datetime | None, _moment("When users were first affected.")]


def declare(
    title: Annotated[str, typer.Argument(show_default=False, help="What is broken, for people.")],
    severity: Annotated[
        str,
        typer.Option(
            "--severity", "-s", parser=parse_severity, metavar="SEVERITY", help=SEVERITY_HELP
        ),
    ],
    category: Annotated[Category, typer.Option()] = Category.APPLICATION,
    service: Annotated[list[str] | None, typer.Option(help="Affected service; repeat.")] = None,
    summary: Annotated[str | None, typer.Option(show_default=False)] = None,
    commander: Annotated[str | None, typer.Option(help="Incident commander.")] = None,
    incident_id: Annotated[
        str | None, typer.Option("--id", parser=parse_incident_id, help="Id instead of INC-...")
    ] = None,
    detected_at: DetectedAt = None,
    impact_started_at: ImpactStartedAt = None,
    region: Regions = None,
    customer: Customers = None,
    customers_affected: CustomersAffected = None,
    users_pct: UsersPct = None,
    data_loss: DataLoss = None,
    security: Security = None,
    revenue_at_risk: RevenueAtRisk = None,
    impact_text: ImpactText = None,
) -> _Post:
    """Declare an incident; prints its id, then the stored events.

    The impact options state who and what it hurts; later statements: `incidents impact`."""
    body: dict[str, Any] = {"title": title, "severity": severity, "category": category}
    body["services"] = service
    body |= {"summary": summary, "commander": commander, "incident_id": incident_id}
    body |= {"detected_at": detected_at, "impact_started_at": impact_started_at}
    impact = impact_body(
        regions=region,
        customers=customer,
        customers_affected=customers_affected,
        users_pct=users_pct,
        data_loss=data_loss,
        security=security,
        revenue_at_risk=revenue_at_risk,
        text=impact_text,
    )
    body["impact"] = impact or None
    return _Post("/v1/incidents", body, note=lambda answer: str(answer.get("incident_id")))


def impact(
    incident_id: IncidentArg,
    service: ImpactServices = None,
    region: Regions = None,
    customer: Customers = None,
    customers_affected: CustomersAffected = None,
    users_pct: UsersPct = None,
    data_loss: DataLoss = None,
    security: Security = None,
    revenue_at_risk: RevenueAtRisk = None,
    text: ImpactText = None,
) -> _Post:
    """State who and what the incident hurts (replaces the previous statement whole).

    Repeat what still holds: an option left out means not known."""
    body = impact_body(
        services=service,
        regions=region,
        customers=customer,
        customers_affected=customers_affected,
        users_pct=users_pct,
        data_loss=data_loss,
        security=security,
        revenue_at_risk=revenue_at_risk,
        text=text,
    )
    if not body:
        fail("give at least one impact option (see: incidents impact --help)")
    return _Post(incident_path(incident_id, "/impact"), body)


def ack(incident_id: IncidentArg) -> _Post:
    """Acknowledge an incident (a second acknowledgement changes nothing)."""
    return _Post(incident_path(incident_id, "/ack"), {})


def severity(
    incident_id: IncidentArg,
    to: Annotated[
        str, typer.Argument(metavar="SEVERITY", parser=parse_severity, help=SEVERITY_HELP)
    ],
    reason: Reason = None,
) -> _Post:
    """Change the severity."""
    return _Post(incident_path(incident_id, "/severity"), {"to": to, "reason": reason})


def status(
    incident_id: IncidentArg,
    to: Annotated[
        str | None,
        typer.Argument(metavar="STATUS", parser=parse_status, show_default=False),
    ] = None,
    phase: Annotated[Phase | None, typer.Option(help="Set the internal phase instead.")] = None,
) -> _Post:
    """Set the public status (use `resolve` to resolve), or the internal phase with --phase."""
    if (to is None) == (phase is None):
        fail("give either a STATUS or --phase PHASE (see: incidents status --help)")
    if phase is not None:
        return _Post(incident_path(incident_id, "/phase"), {"phase": phase})
    return _Post(incident_path(incident_id, "/status"), {"status": to})


def assign(
    incident_id: IncidentArg,
    role: Annotated[Role, typer.Argument(show_default=False)],
    person: Annotated[str, typer.Argument(show_default=False)],
    release: Annotated[bool, typer.Option(help="Release the role from PERSON instead.")] = False,
) -> _Post:
    """Give PERSON a ROLE (or take it back with --release)."""
    route = "roles/release" if release else "roles"
    return _Post(incident_path(incident_id, "/" + route), {"role": role, "person": person})


def escalate(
    incident_id: IncidentArg,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            show_default=False,
            help="Team or person escalated to; default the one the policy names for the level.",
        ),
    ] = None,
    level: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_ESCALATION_LEVEL,
            show_default=False,
            help=(
                "Escalation level; default the next one of the policy's path still due "
                "(never lower)."
            ),
        ),
    ] = None,
    reason: Reason = None,
) -> _Post:
    """Escalate along the policy's path for the incident's severity: the next level due and
    its target, unless --level or --to say otherwise (at the top of the path, --to is needed)."""
    return _Post(
        incident_path(incident_id, "/escalations"), {"to": to, "level": level, "reason": reason}
    )


def mitigate(
    incident_id: IncidentArg,
    action: Annotated[
        MitigationAction | None, typer.Argument(metavar="ACTION", show_default=False)
    ] = None,
    target: Annotated[str | None, typer.Option(help="What it acts on, e.g. checkout@v41.")] = None,
    automated: Annotated[bool, typer.Option("--automated", help="Run by automation.")] = False,
    confidence: Annotated[float | None, typer.Option(min=0.0, max=1.0)] = None,
    mitigation_id: Annotated[
        str | None, typer.Option(help="Default MIT-<random>; set it when retrying.")
    ] = None,
    complete: Annotated[
        str | None, typer.Option(metavar="MITIGATION_ID", help="Complete this mitigation.")
    ] = None,
    outcome: Annotated[Outcome | None, typer.Option(help="With --complete.")] = None,
    details: Annotated[str | None, typer.Option(help="With --complete.")] = None,
) -> _Post:
    """Start a mitigation ACTION, or finish one: --complete MITIGATION_ID --outcome OUTCOME."""
    if complete is not None:
        if action is not None or outcome is None:
            fail("--complete takes --outcome and no ACTION (see: incidents mitigate --help)")
        done = {"mitigation_id": complete, "outcome": outcome, "details": details}
        return _Post(incident_path(incident_id, "/mitigations/complete"), done)
    if action is None:
        fail("give an ACTION, or --complete MITIGATION_ID (see: incidents mitigate --help)")
    # Named here, not by the server, so that people learn the id they will complete.
    mid = mitigation_id or f"MIT-{new_event_id()[:8]}"
    body: dict[str, Any] = {"mitigation_id": mid, "action": action, "target": target}
    body |= {"automated": automated, "confidence": confidence}
    return _Post(
        incident_path(incident_id, "/mitigations"), body, note=lambda _: f"mitigation {mid}"
    )


_VAR: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _extras(pairs: list[str]) -> dict[str, str]:
    extras: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _VAR.fullmatch(key):
            fail(f"--set takes KEY=VALUE with KEY a variable name, got {pair!r}")
        extras[key] = value
    return extras


def _composed(preview: bool) -> Callable[[Answer], str]:
    """The message as the service rendered it, under a line saying where it goes."""

    def shown(answer: Answer) -> str:
        comms = answer.get("comms") or {}
        where = f"{comms.get('audience')} via {comms.get('channel') or 'no channel'}"
        head = f"{comms.get('template')} ({comms.get('kind')}) to {where}"
        head += "; preview, nothing sent" if preview else ""
        return f"{head}\n{comms.get('message', '')}"

    return shown


def comms(
    incident_id: IncidentArg,
    audience: Annotated[
        Audience | None,
        typer.Argument(metavar="AUDIENCE", show_default=False, help="Who it was for."),
    ] = None,
    kind: Annotated[CommsKind | None, typer.Argument(metavar="KIND", show_default=False)] = None,
    message: Annotated[str | None, typer.Argument(metavar="MESSAGE", show_default=False)] = None,
    template: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="Render this policy template instead of MESSAGE (GET /v1/templates lists them).",
        ),
    ] = None,
    extra: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            show_default=False,
            help="A variable of the template that the incident does not hold; repeat.",
        ),
    ] = None,
    to: Annotated[
        Audience | None,
        typer.Option(
            "--audience", show_default=False, help="With --template: instead of the template's."
        ),
    ] = None,
    template_kind: Annotated[
        CommsKind | None,
        typer.Option(
            "--kind", show_default=False, help="With --template: instead of the template's."
        ),
    ] = None,
    channel: Annotated[
        Channel | None,
        typer.Option(show_default=False, help="Where it went (a template names its own)."),
    ] = None,
    status: Annotated[Status | None, typer.Option(help="Public status announced.")] = None,
    next_update: Annotated[
        timedelta | None,
        typer.Option(parser=_duration, metavar="DURATION", help="Next update due in, e.g. 30m."),
    ] = None,
    preview: Annotated[
        bool, typer.Option("--preview", help="With --template: print it, send nothing.")
    ] = False,
) -> _Post:
    """Record a communication: AUDIENCE KIND MESSAGE, or --template NAME rendered by the
    service from the incident (prints the message it sent)."""
    body: dict[str, Any] = {"channel": channel, "status": status, "next_update_at": next_update}
    path = incident_path(incident_id, "/comms")
    if template is None:
        if audience is None or kind is None or message is None:
            fail("give AUDIENCE KIND MESSAGE, or --template NAME (see: incidents comms --help)")
        if extra or preview or to or template_kind:
            fail("--set, --preview, --audience and --kind go with --template")
        return _Post(path, body | {"audience": audience, "kind": kind, "message": message})
    if audience is not None or kind is not None or message is not None:
        fail("--template writes the message: give no AUDIENCE KIND MESSAGE (--audience, --kind)")
    body |= {"template": template, "vars": _extras(extra or [])}
    body |= {"audience": to, "kind": template_kind}
    return _Post(path + ("/preview" if preview else ""), body, note=_composed(preview))


def note(
    incident_id: IncidentArg,
    text: Annotated[str, typer.Argument(show_default=False)],
    kind: Annotated[NoteKind, typer.Option()] = NoteKind.NOTE,
) -> _Post:
    """Add a note, decision, root cause or impact statement to the timeline."""
    return _Post(incident_path(incident_id, "/notes"), {"text": text, "kind": kind})


def _declaration(timeline: Answer) -> dict[str, Any]:
    found = [e for e in timeline.get("events") or [] if e.get("type") == "incident.declared"]
    if not found:
        fail("the incident has no declaration to correct: give the EVENT_ID")
    return {"target_event_id": found[0]["event_id"]}


def correct(
    incident_id: IncidentArg,
    reason: Annotated[str, typer.Option(show_default=False, help="Why, for the timeline.")],
    target: Annotated[
        str | None,
        typer.Argument(
            metavar="EVENT_ID",
            show_default=False,
            help="The event to correct (`timeline --json` shows ids); default the declaration.",
        ),
    ] = None,
    occurred_at: Annotated[datetime | None, _moment("When it really happened.")] = None,
    text: Annotated[str | None, typer.Option(help="Its text, corrected.")] = None,
    corrected_actor: Annotated[str | None, typer.Option(help="Who really did it.")] = None,
    detected_at: DetectedAt = None,
    impact_started_at: ImpactStartedAt = None,
) -> _Post:
    """Correct an event (default: the declaration); the original stays in the log.

    The timeline shows both, metrics use the correction. --detected-at and
    --impact-started-at correct the declaration only."""
    body = {"target_event_id": target, "reason": reason, "corrected_occurred_at": occurred_at}
    body |= {"corrected_text": text, "corrected_actor": corrected_actor}
    body |= {"corrected_detected_at": detected_at}
    body |= {"corrected_impact_started_at": impact_started_at}
    lookup = None if target else (incident_path(incident_id, "/timeline"), _declaration)
    return _Post(incident_path(incident_id, "/corrections"), body, lookup=lookup)


def resolve(
    incident_id: IncidentArg,
    summary: Annotated[str | None, typer.Option(show_default=False)] = None,
) -> _Post:
    """Resolve the incident (service restored)."""
    return _Post(incident_path(incident_id, "/resolve"), {"summary": summary})


def reopen(incident_id: IncidentArg, reason: Reason = None) -> _Post:
    """Reopen a resolved incident (a closed one is final)."""
    return _Post(incident_path(incident_id, "/reopen"), {"reason": reason})


def close(incident_id: IncidentArg, reason: Reason = None) -> _Post:
    """Close a resolved incident for good."""
    return _Post(incident_path(incident_id, "/close"), {"reason": reason})


VERBS: Final[tuple[Callable[..., _Post], ...]] = (
    declare,
    ack,
    severity,
    impact,
    status,
    assign,
    escalate,
    mitigate,
    comms,
    note,
    correct,
    resolve,
    reopen,
    close,
)


def register(app: typer.Typer) -> None:
    for build in VERBS:
        app.command(build.__name__, cls=Verb)(_command(build))
