"""The `incidents` command: `serve` runs the service; other verbs talk to it.

Exit codes: 0 success, 1 a failure of the system, 2 bad input (with a one-line reason).
"""

import asyncio
import logging

import typer
from rich.console import Console

from events.policy import PolicyError
from services.auth import Role, TokensError, new_token, token_entry
from services.cli import evidence, reads, replay, writes
from services.config import Config, ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Record and query production incidents as an immutable event log."""


writes.register(app)
reads.register(app)
replay.register(app)
evidence.register(app)


def _config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc


def _log_to_stderr() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@app.command()
def serve() -> None:
    """Run the whole service (an embedded nats-server unless INCIDENTS_NATS_URL is set)."""
    # Imported here: the server stack (Litestar, faststream) would slow every other verb.
    from events.stream import StreamConfigError
    from services.bootstrap import serve as serve_service
    from services.natsserver import NatsServerError

    config = _config()
    _log_to_stderr()
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
    from services.bootstrap import project as run_projector

    config = _config()
    _log_to_stderr()
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
