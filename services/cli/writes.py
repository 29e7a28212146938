"""CLI write verbs (DESIGN 11): each turns its arguments into one POST to the HTTP intake
(`correct` without an EVENT_ID first reads the declaration's id).

Each verb is a plain function from arguments to a `Post` (path and body); `verbs.write_verb`
makes it a command with the options every write verb shares, sends it and prints the answer.
Exit 0 on success, 2 on bad input or a 4xx answer, 1 when the service fails.
"""

import re
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Annotated, Any, Final

import typer

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
    parse_incident_id,
    parse_severity,
    parse_status,
    rfc3339,
)
from services.cli.verbs import Answer, Post, write_verb


def _duration(text: str) -> timedelta:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be greater than zero")
    return timedelta(seconds=seconds)


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
) -> Post:
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
    return Post("/v1/incidents", body, note=lambda answer: str(answer.get("incident_id")))


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
) -> Post:
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
    return Post(incident_path(incident_id, "/impact"), body)


def ack(incident_id: IncidentArg) -> Post:
    """Acknowledge an incident (a second acknowledgement changes nothing)."""
    return Post(incident_path(incident_id, "/ack"), {})


def severity(
    incident_id: IncidentArg,
    to: Annotated[
        str, typer.Argument(metavar="SEVERITY", parser=parse_severity, help=SEVERITY_HELP)
    ],
    reason: Reason = None,
) -> Post:
    """Change the severity."""
    return Post(incident_path(incident_id, "/severity"), {"to": to, "reason": reason})


def status(
    incident_id: IncidentArg,
    to: Annotated[
        str | None,
        typer.Argument(metavar="STATUS", parser=parse_status, show_default=False),
    ] = None,
    phase: Annotated[Phase | None, typer.Option(help="Set the internal phase instead.")] = None,
) -> Post:
    """Set the public status (use `resolve` to resolve), or the internal phase with --phase."""
    if (to is None) == (phase is None):
        fail("give either a STATUS or --phase PHASE (see: incidents status --help)")
    if phase is not None:
        return Post(incident_path(incident_id, "/phase"), {"phase": phase})
    return Post(incident_path(incident_id, "/status"), {"status": to})


def assign(
    incident_id: IncidentArg,
    role: Annotated[Role, typer.Argument(show_default=False)],
    person: Annotated[str, typer.Argument(show_default=False)],
    release: Annotated[bool, typer.Option(help="Release the role from PERSON instead.")] = False,
) -> Post:
    """Give PERSON a ROLE (or take it back with --release)."""
    route = "roles/release" if release else "roles"
    return Post(incident_path(incident_id, "/" + route), {"role": role, "person": person})


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
) -> Post:
    """Escalate along the policy's path for the incident's severity: the next level due and
    its target, unless --level or --to say otherwise (at the top of the path, --to is needed)."""
    return Post(
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
) -> Post:
    """Start a mitigation ACTION, or finish one: --complete MITIGATION_ID --outcome OUTCOME."""
    if complete is not None:
        if action is not None or outcome is None:
            fail("--complete takes --outcome and no ACTION (see: incidents mitigate --help)")
        done = {"mitigation_id": complete, "outcome": outcome, "details": details}
        return Post(incident_path(incident_id, "/mitigations/complete"), done)
    if action is None:
        fail("give an ACTION, or --complete MITIGATION_ID (see: incidents mitigate --help)")
    # Named here, not by the server, so that people learn the id they will complete.
    mid = mitigation_id or f"MIT-{new_event_id()[:8]}"
    body: dict[str, Any] = {"mitigation_id": mid, "action": action, "target": target}
    body |= {"automated": automated, "confidence": confidence}
    return Post(
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
) -> Post:
    """Record a communication: AUDIENCE KIND MESSAGE, or --template NAME rendered by the
    service from the incident (prints the message it sent)."""
    body: dict[str, Any] = {"channel": channel, "status": status, "next_update_at": next_update}
    path = incident_path(incident_id, "/comms")
    if template is None:
        if audience is None or kind is None or message is None:
            fail("give AUDIENCE KIND MESSAGE, or --template NAME (see: incidents comms --help)")
        if extra or preview or to or template_kind:
            fail("--set, --preview, --audience and --kind go with --template")
        return Post(path, body | {"audience": audience, "kind": kind, "message": message})
    if audience is not None or kind is not None or message is not None:
        fail("--template writes the message: give no AUDIENCE KIND MESSAGE (--audience, --kind)")
    body |= {"template": template, "vars": _extras(extra or [])}
    body |= {"audience": to, "kind": template_kind}
    return Post(path + ("/preview" if preview else ""), body, note=_composed(preview))


def note(
    incident_id: IncidentArg,
    text: Annotated[str, typer.Argument(show_default=False)],
    kind: Annotated[NoteKind, typer.Option()] = NoteKind.NOTE,
) -> Post:
    """Add a note, decision, root cause or impact statement to the timeline."""
    return Post(incident_path(incident_id, "/notes"), {"text": text, "kind": kind})


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
) -> Post:
    """Correct an event (default: the declaration); the original stays in the log.

    The timeline shows both, metrics use the correction. --detected-at and
    --impact-started-at correct the declaration only."""
    body = {"target_event_id": target, "reason": reason, "corrected_occurred_at": occurred_at}
    body |= {"corrected_text": text, "corrected_actor": corrected_actor}
    body |= {"corrected_detected_at": detected_at}
    body |= {"corrected_impact_started_at": impact_started_at}
    lookup = None if target else (incident_path(incident_id, "/timeline"), _declaration)
    return Post(incident_path(incident_id, "/corrections"), body, lookup=lookup)


def resolve(
    incident_id: IncidentArg,
    summary: Annotated[str | None, typer.Option(show_default=False)] = None,
) -> Post:
    """Resolve the incident (service restored)."""
    return Post(incident_path(incident_id, "/resolve"), {"summary": summary})


def reopen(incident_id: IncidentArg, reason: Reason = None) -> Post:
    """Reopen a resolved incident (a closed one is final)."""
    return Post(incident_path(incident_id, "/reopen"), {"reason": reason})


def close(incident_id: IncidentArg, reason: Reason = None) -> Post:
    """Close a resolved incident for good."""
    return Post(incident_path(incident_id, "/close"), {"reason": reason})


VERBS: Final[tuple[Callable[..., Post], ...]] = (
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
        app.command(build.__name__, cls=Verb)(write_verb(build))
