"""What the CLI verbs share: the service options, argument parsers, one-line failures."""

import getpass
import inspect
import os
import re
import socket
from datetime import datetime
from typing import Annotated, Any, Final, NoReturn
from urllib.parse import quote, urlsplit

import typer
from typer.core import TyperCommand

from events.aliases import canonical_severity, phase_meant
from events.schema import INCIDENT_ID_PATTERN, Status
from services import runtime
from services.clock import to_utc

DEFAULT_URL: Final = "http://127.0.0.1:8080"


def fail(reason: str, code: int = 2) -> NoReturn:
    typer.echo("error: " + " ".join(reason.split()), err=True)
    raise typer.Exit(code)


class Verb(TyperCommand):
    """A verb whose bad arguments cost one line on stderr instead of a usage panel."""

    def make_context(
        self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any
    ) -> Any:
        try:
            return super().make_context(info_name, args, parent, **extra)
        except typer.TyperException as exc:  # the base of typer's usage errors
            reason = exc.format_message().replace("Value error, ", "")
            # A sub-command (`incidents action add`) is named with its group.
            group = f"{parent.info_name} " if parent is not None and parent.parent else ""
            fail(f"{reason} (see: incidents {group}{info_name} --help)", exc.exit_code)


def service_url(url: str | None) -> str:
    """The service's base URL: `--url` / `INCIDENTS_URL`, else the HTTP URL of the `incidents
    serve` running on the data dir (its runtime file), else the local default."""
    if url:
        return url
    try:
        endpoints = runtime.running_service(runtime.data_dir())
    except OSError:
        endpoints = None  # not ours to read: the default, and its error if nothing answers
    return endpoints.http_url if endpoints is not None else DEFAULT_URL


def http_url(text: str) -> str:
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ValueError(f"malformed URL {text!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} is not an http(s) URL, e.g. {DEFAULT_URL}")
    return text


def rfc3339(text: str) -> datetime:
    """A time option, in UTC; one without an offset is refused, as the service refuses it."""
    try:
        return to_utc(datetime.fromisoformat(text))
    except ValueError:
        raise ValueError(
            f"{text!r} is not RFC 3339 with an offset, e.g. 2026-01-02T10:00:00Z"
        ) from None


def parse_incident_id(text: str) -> str:
    if not re.fullmatch(INCIDENT_ID_PATTERN, text):
        raise ValueError(f"{text!r} is not an incident id (letters, digits, '_' and '-')")
    return text


SEVERITY_HELP: Final = "P0 (worst) to P4, or a word for one: SEV-1 (worst) to SEV-4."


def parse_severity(text: str) -> str:
    """A severity as typed: P0..P4 (any case) or a word for one. The service maps words by its
    policy's aliases (SEV-1..SEV-4 by default) and refuses unknown ones, so the log holds
    P0..P4 whatever was typed."""
    word = text.strip()
    if not word:
        raise ValueError("a severity is P0..P4 or a word for one, e.g. SEV-1")
    severity = canonical_severity(word)
    return severity.value if severity is not None else word


def parse_status(text: str) -> str:
    """A public status; a phase word (`mitigating`) is refused with the verb that sets it."""
    phase = phase_meant(text)
    if phase is not None:
        raise ValueError(
            f"{text} is a phase, not a status: incidents status ID --phase {phase.value}"
        )
    try:
        return Status(text.strip().lower()).value
    except ValueError:
        raise ValueError(
            f"{text!r} is not a status (use {', '.join(Status)}; phases: --phase)"
        ) from None


IncidentArg = Annotated[
    str,
    typer.Argument(
        metavar="ID",
        parser=parse_incident_id,
        show_default=False,
        help="Incident id, e.g. INC-7K2M9Q.",
    ),
]


def option(
    name: str, kind: Any, default: Any, *decls: str, panel: str, **info: Any
) -> inspect.Parameter:
    """A keyword parameter with a typer option, for signatures built by `register`."""
    option = typer.Option(*decls, rich_help_panel=panel, show_default=False, **info)
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, option]
    )


def service_options(panel: str) -> tuple[inspect.Parameter, inspect.Parameter, inspect.Parameter]:
    """`--url`, `--token` and `--json`, as parameters `url`, `token` and `as_json`."""
    return (
        option(
            "url",
            str | None,
            None,
            envvar="INCIDENTS_URL",
            parser=http_url,
            panel=panel,
            help="Base URL of the service (default: that of the incidents serve running on "
            f"INCIDENTS_DATA_DIR, from its serve.json, else {DEFAULT_URL}). HTTPS with a "
            "private CA: INCIDENTS_CA_FILE.",
        ),
        option(
            "token", str | None, None, envvar="INCIDENTS_TOKEN", panel=panel, help="Bearer token."
        ),
        option("as_json", bool, False, "--json", panel=panel, help="Print the JSON answer as is."),
    )


def incident_path(incident_id: str, tail: str = "") -> str:
    """The route of one incident: `/v1/incidents/<id>` plus `tail` (e.g. "/timeline")."""
    return f"/v1/incidents/{quote(incident_id, safe='')}{tail}"


def local_user() -> str:
    """Who runs this command, as `user@host`, for the records it writes."""
    try:
        user = os.environ.get("USER") or getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


# An impact statement, as `incidents impact` and `incidents declare` take it (DESIGN 6).
_IMPACT: Final = "Impact"


def _impact_option(*decls: str, **info: Any) -> Any:
    return typer.Option(*decls, rich_help_panel=_IMPACT, show_default=False, **info)


ImpactServices = Annotated[
    list[str] | None, _impact_option("--service", help="Service affected; repeat.")
]
Regions = Annotated[list[str] | None, _impact_option("--region", help="Region affected; repeat.")]
Customers = Annotated[
    list[str] | None,
    _impact_option("--customer", help="Customer or tenant affected, by name; repeat."),
]
CustomersAffected = Annotated[
    int | None, _impact_option(min=0, metavar="N", help="How many customers are affected.")
]
UsersPct = Annotated[
    float | None,
    _impact_option(
        "--users-pct", min=0.0, max=100.0, metavar="PERCENT", help="Share of users affected."
    ),
]
DataLoss = Annotated[
    bool | None, _impact_option("--data-loss/--no-data-loss", help="Default: not known.")
]
Security = Annotated[
    bool | None, _impact_option("--security/--no-security", help="A security incident?")
]
RevenueAtRisk = Annotated[
    int | None, _impact_option(min=0, metavar="AMOUNT", help="In whole currency units.")
]
ImpactText = Annotated[str | None, _impact_option(help="The impact, for people.")]


def impact_body(
    *,
    services: list[str] | None = None,
    regions: list[str] | None = None,
    customers: list[str] | None = None,
    customers_affected: int | None = None,
    users_pct: float | None = None,
    data_loss: bool | None = None,
    security: bool | None = None,
    revenue_at_risk: int | None = None,
    text: str | None = None,
) -> dict[str, Any]:
    """The statement the impact options make, as the service takes it; options not given are
    left out (not known). Empty when none is given."""
    fields = {
        "services": services,
        "regions": regions,
        "customers": customers,
        "customers_affected": customers_affected,
        "users_affected_pct": users_pct,
        "data_loss": data_loss,
        "security": security,
        "revenue_at_risk": revenue_at_risk,
        "text": text,
    }
    return {key: value for key, value in fields.items() if value not in (None, [], ())}
