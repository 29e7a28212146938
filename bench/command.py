"""`incidents bench` (also `python -m bench`, for a checkout whose CLI predates the verb): the
options, turned into sizes for bench.suite."""

from pathlib import Path
from typing import Annotated

import typer

from bench.results import RESULTS_DIR
from bench.sizes import FULL, QUICK, SMOKE, sized
from bench.writeside import SYNCS

app = typer.Typer(add_completion=False)


@app.command()
def bench(
    quick: Annotated[
        bool, typer.Option("--quick", help="every row at small sizes: under a minute")
    ] = False,
    smoke: Annotated[
        bool, typer.Option("--smoke", help="every row at the smallest sizes (the test's)")
    ] = False,
    events: Annotated[
        int | None,
        typer.Option(
            "--events",
            min=100,
            help="the big log, for replay and serve RSS (default 1,000,000; --quick 20,000); "
            "the projector reads at most 200,000 of it",
        ),
    ] = None,
    no_sync: Annotated[
        bool,
        typer.Option("--no-sync", help="write rows only under nats-server's default fsync policy"),
    ] = False,
    profile: Annotated[
        Path | None,
        typer.Option(
            "--profile",
            help="write cProfile stats (.pstats and a top-30 .txt) of the projector, append "
            "and as-of stages into this directory",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="where the JSON and Markdown results go")
    ] = RESULTS_DIR,
) -> None:
    """Every row of issue 15's table, each figure next to a raw baseline of the same run."""
    from bench.suite import run

    preset = SMOKE if smoke else QUICK if quick else FULL
    flags = [
        *(["--smoke"] if smoke else ["--quick"] if quick else []),
        *([f"--events {events}"] if events else []),
        *(["--no-sync"] if no_sync else []),
        *([f"--profile {profile}"] if profile else []),
    ]
    syncs = ["default"] if no_sync else list(SYNCS)
    result = run(" ".join(["incidents bench", *flags]), sized(preset, events), syncs, out, profile)
    if result.failures:
        raise typer.Exit(1)
