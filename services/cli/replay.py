"""`incidents replay`: rebuild the read models from the log, with a progress bar.

Against a running service (default) it asks the service to rebuild and swap, and follows its
progress; `--direct` rebuilds the data directory's read models itself, straight from NATS,
when no service has them open.
"""

import asyncio
import time
from typing import Annotated

import duckdb
import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from services.cli.client import BadRequest, Client, Unavailable
from services.cli.options import fail
from services.config import Config, ConfigError

err = Console(stderr=True)


def _bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:,.0f} events/s"),
        TimeRemainingColumn(),
        console=err,
    )


async def _direct(config: Config, verify: bool) -> list[str]:
    from events.store import EventStore
    from projections import rebuild as rebuilds
    from projections.database import open_database
    from projections.projector import Projector
    from services.bootstrap import connect

    if config.nats_url is None:
        raise ConfigError("INCIDENTS_NATS_URL: --direct reads the log from an existing NATS")
    live = rebuilds.live_path(config.data_dir)
    if live.exists():
        try:
            duckdb.connect(str(live)).close()
        except duckdb.IOException as exc:
            raise ConfigError(
                f"{live} is open in a running service: run `incidents replay` without --direct"
            ) from exc
    nc = await connect(config.nats_url, name="incidents-replay")
    try:
        store = EventStore(nc, config.stream)
        target = await store.last_seq()
        with _bar() as bar:
            task = bar.add_task("replay", total=None, rate=0.0)

            def show(p: rebuilds.Progress) -> None:
                bar.update(
                    task,
                    total=p.target_seq - p.start_seq,
                    completed=p.done_seq - p.start_seq,
                    rate=p.rate,
                )

            await rebuilds.rebuild(
                store,
                rebuilds.next_path(config.data_dir),
                target,
                show,
                memory_limit=config.duckdb_memory_limit,
            )
        differences: list[str] = []
        if verify and live.exists():
            con = open_database(live, config.duckdb_memory_limit)
            try:
                projector = Projector(con, store)  # bring the old build to the same position
                await rebuilds.catch_up(store, projector, target)
                live_rows = rebuilds.fingerprints(con)
            finally:
                con.close()
            shadow = open_database(rebuilds.next_path(config.data_dir), config.duckdb_memory_limit)
            try:
                differences = rebuilds.differences(live_rows, rebuilds.fingerprints(shadow))
            finally:
                shadow.close()
        old = live
        new = rebuilds.promote(config.data_dir)
        if old.exists() or old.is_symlink():
            rebuilds.retire(old)
        err.print(f"read models rebuilt through sequence {target} into {new.name}")
        return differences
    finally:
        await nc.close()


def _over_http(url: str, token: str | None, verify: bool) -> list[str]:
    with Client(url, token, timeout=30) as client, _bar() as bar:
        client.post("/v1/admin/replay", {"verify": verify})
        task = bar.add_task("replay", total=None, rate=0.0)
        while True:
            status = client.get("/v1/admin/replay")
            span = status["target_seq"] - status["start_seq"]
            bar.update(
                task,
                total=span or None,
                completed=status["done_seq"] - status["start_seq"],
                rate=status["events_per_s"],
                description=f"replay ({status['state']})",
            )
            if status["state"] in ("done", "failed"):
                break
            time.sleep(0.3)
    if status["state"] == "failed":
        err.print(f"error: replay failed: {status['error']}")
        raise typer.Exit(1)
    err.print(
        f"read models swapped to {status['generation']} through sequence {status['done_seq']}"
    )
    differences: list[str] = status["differences"]
    return differences


def register(app: typer.Typer) -> None:
    @app.command()
    def replay(
        verify: Annotated[
            bool, typer.Option("--verify", help="compare with the live models")
        ] = False,
        direct: Annotated[
            bool, typer.Option("--direct", help="rebuild here from NATS, no service running")
        ] = False,
        url: Annotated[str, typer.Option(envvar="INCIDENTS_URL")] = "http://127.0.0.1:8080",
        token: Annotated[str | None, typer.Option(envvar="INCIDENTS_TOKEN")] = None,
    ) -> None:
        """Rebuild every read model from the log and swap it in (resumable)."""
        try:
            if direct:
                differences = asyncio.run(_direct(Config.from_env(), verify))
            else:
                differences = _over_http(url, token, verify)
        except ConfigError as exc:
            fail(str(exc))
        except BadRequest as exc:
            fail(exc.detail)
        except Unavailable as exc:
            fail(f"{exc.reason}; use --direct without a running service", code=1)
        except OSError as exc:
            fail(str(exc), code=1)
        if verify:
            for line in differences:
                err.print(f"differs: {line}")
            err.print(
                "verify: identical"
                if not differences
                else f"verify: {len(differences)} differences"
            )
            if differences:
                raise typer.Exit(1)
