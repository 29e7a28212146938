"""The `incidents` command: `serve` runs the service; other verbs talk to it.

Exit codes: 0 success, 1 a failure of the system, 2 bad input (with a one-line reason).
"""

import asyncio
import logging
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from events.policy import PolicyError
from services import replay_cli, verbs, views
from services.auth import Role, TokensError, new_token, token_entry
from services.client import Verb, parse_incident_id, rfc3339
from services.config import Config, ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Record and query production incidents as an immutable event log."""


verbs.register(app)
views.register(app)
replay_cli.register(app)


def _config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


@app.command()
def serve() -> None:
    """Run the whole service (an embedded nats-server unless INCIDENTS_NATS_URL is set)."""
    # Imported here: the server stack (Litestar, faststream) would slow every other verb.
    from events.store import StreamConfigError
    from services.app import serve as serve_service
    from services.natsserver import NatsServerError

    config = _config()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        asyncio.run(serve_service(config))
    except (ConfigError, TokensError, PolicyError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    except (NatsServerError, StreamConfigError, OSError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        pass


@app.command()
def project(
    until_caught_up: bool = typer.Option(
        False, "--until-caught-up", help="stop once the log's end (as of start) is projected"
    ),
) -> None:
    """Run only the projector into the data dir's DuckDB file (needs INCIDENTS_NATS_URL)."""
    from services.app import project as run_projector

    config = _config()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        checkpoint = asyncio.run(run_projector(config, until_caught_up))
    except ConfigError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    except (OSError, TimeoutError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    typer.echo(f"projected through sequence {checkpoint}")


@app.command()
def token(role: Role, name: str) -> None:
    """Create an API token: prints it once, and the entry for INCIDENTS_TOKENS_FILE."""
    value = new_token()
    typer.echo(f"token: {value}")
    typer.echo("add to the tokens file (only the hash is stored):")
    typer.echo(token_entry(name, role, value))


NatsUrl = Annotated[
    str | None,
    typer.Option("--nats-url", envvar="INCIDENTS_NATS_URL", help="NATS holding the log (required)"),
]
Stream = Annotated[str, typer.Option(envvar="INCIDENTS_STREAM", help="stream name")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
Moment = Annotated[
    datetime | None,
    typer.Option(parser=rfc3339, metavar="RFC3339", help="bounds of recorded_at (inclusive)"),
]


@app.command(cls=Verb)
def export(
    out: Annotated[Path, typer.Option("--out", help="bundle directory to create (new or empty)")],
    incident_id: Annotated[
        str | None,
        typer.Argument(
            metavar="ID", parser=parse_incident_id, show_default=False, help="one incident"
        ),
    ] = None,
    since: Moment = None,
    until: Moment = None,
    nats_url: NatsUrl = None,
    stream: Stream = "INCIDENTS",
    as_json: AsJson = False,
) -> None:
    """Write an evidence bundle (events as stored, manifest, verify.py) straight from NATS:
    one incident, or whole incidents with an event recorded between --since and --until."""
    from services import evidence

    evidence.export_command(incident_id, since, until, out, nats_url, stream, as_json)


@app.command(cls=Verb)
def verify(
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="check an exported bundle, offline")
    ] = None,
    expect_last_seq: Annotated[
        int, typer.Option(min=0, help="a sequence known written: the log must reach it")
    ] = 0,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="also fail a chain cut by expiry that no retention.advanced record vouches for",
        ),
    ] = False,
    nats_url: NatsUrl = None,
    stream: Stream = "INCIDENTS",
    as_json: AsJson = False,
) -> None:
    """Recompute every incident's hash chain from NATS; exit 1 on a break or a gap."""
    from services import evidence

    evidence.verify_command(bundle, nats_url, stream, expect_last_seq, strict, as_json)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
