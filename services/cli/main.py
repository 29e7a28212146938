"""The `incidents` command: `serve` runs the service; other verbs talk to it.

Exit codes: 0 success, 1 a failure of the system, 2 bad input (with a one-line reason).
"""

import asyncio
import logging

import typer
from rich.console import Console

from events.policy import PolicyError
from services.auth import Role, TokensError, digest, nats_name_problem, new_token, token_entry
from services.cli import bench, evidence, process, reads, replay, writes
from services.cli.options import fail
from services.config import Config, ConfigError
from services.datadir import DataDirBusyError

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)
err = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Record and query production incidents as an immutable event log."""


writes.register(app)
reads.register(app)
replay.register(app)
evidence.register(app)
process.register(app)
bench.register(app)


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
    except DataDirBusyError as exc:
        fail(str(exc))
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
    except DataDirBusyError as exc:
        fail(str(exc))
    except ConfigError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from exc
    except (OSError, TimeoutError) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(1) from exc
    typer.echo(f"projected through sequence {checkpoint}")


@app.command()
def token(
    role: Role,
    name: str,
    nats: bool = typer.Option(
        False,
        "--nats",
        help="also NATS credentials of the embedded nats-server (producers; run it where "
        "`incidents serve` runs, with its INCIDENTS_DATA_DIR)",
    ),
) -> None:
    """Create an API token: prints it once, and the entry for INCIDENTS_TOKENS_FILE."""
    value = new_token()
    if nats:
        _nats_producer(role, name, value)
        return
    typer.echo(f"token: {value}")
    typer.echo("add to the tokens file (only the hash is stored):")
    typer.echo(token_entry(name, role, value))


def _nats_producer(role: Role, name: str, token_value: str) -> None:
    from services.natsauth import ServiceCredentials, producer_inbox, producer_subjects

    problem = nats_name_problem(name, role)
    if problem is not None:
        fail(f"--nats {role.value} {name!r}: {problem}")
    config = _config()
    try:
        credentials = ServiceCredentials.load_or_create(config.data_dir)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"NATS credentials in {config.data_dir}: {exc}", code=1)
    password = credentials.producer_password(name, digest(token_value))
    port = str(config.nats_port) if config.nats_port else "<INCIDENTS_NATS_PORT>"
    events, alertmanager = producer_subjects(name)
    typer.echo(f"token: {token_value}")
    typer.echo(f"nats user: {name}")
    typer.echo(f"nats password: {password}")
    typer.echo(f"nats url: nats://{name}:{password}@127.0.0.1:{port}")
    typer.echo(f"publish (request/reply) to: {events}, {alertmanager}")
    # Its replies arrive only there: the server lets it subscribe to nothing else.
    typer.echo(f"nats inbox prefix: {producer_inbox(name)}")
    typer.echo("add to the tokens file (only the hash is stored), then restart incidents serve:")
    typer.echo(token_entry(name, role, token_value, nats=True))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
