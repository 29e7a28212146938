"""The whole bench: every row of issue 15's table in one run, with a live progress display, then
judged against the targets and written as JSON and Markdown."""

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.asof import asof_row
from bench.children import WRK
from bench.mttr import build, mttr_rows
from bench.profiling import profiled
from bench.progress import Steps
from bench.readside import STEPS as READ_STEPS
from bench.readside import read_side
from bench.results import HEADERS, Row, Run, cells, machine_facts, utc_now, write
from bench.sizes import Sizes
from bench.targets import TARGETS, judged
from bench.writeside import STEPS as WRITE_STEPS
from bench.writeside import write_side
from services.natsserver import EmbeddedNatsServer


def run(command: str, sizes: Sizes, syncs: list[str], out: Path, profile: Path | None) -> Run:
    console = Console(stderr=True)
    # The in-process service logs every request at INFO: it would scroll the progress away.
    logging.disable(logging.INFO)
    started, start = utc_now(), time.perf_counter()
    machine = machine_facts(syncs, "wrk" if WRK else "httpx (wrk not installed)")
    rows: list[Row] = []
    failures: dict[str, str] = {}
    stage_s: dict[str, float] = {}

    def stage(name: str, measure: Callable[[], list[Row]]) -> None:
        # A stage that fails costs its rows, not the run: the others still report, the failure
        # is printed and recorded, and the command exits 1.
        began = time.perf_counter()
        try:
            rows.extend(measure())
        except Exception as exc:  # reported: printed, recorded, exit 1
            console.print_exception()
            failures[name] = f"{type(exc).__name__}: {exc}"
        stage_s[name] = round(time.perf_counter() - began, 1)

    with (
        tempfile.TemporaryDirectory(prefix="incidents-bench-") as directory,
        Steps(READ_STEPS + 2 + WRITE_STEPS * len(syncs), console) as steps,
    ):
        tmp = Path(directory)
        stage("read side", lambda: read_side(tmp, sizes, steps, profile))
        stage("mttr", lambda: _mttr(tmp, sizes, steps))
        stage("as-of", lambda: _asof(tmp, sizes, steps, profile))
        for sync in syncs:
            stage(f"write side [{sync}]", partial(write_side, tmp, sync, sizes, steps, profile))
    order = list(TARGETS)
    judge = "always" if "always" in syncs else "default"
    rows = sorted(
        (judged(r, r.sync in (None, judge)) for r in rows),
        key=lambda r: (order.index(r.key), r.sync or ""),
    )
    result = Run(
        command=command,
        started_at=started,
        wall_s=time.perf_counter() - start,
        stage_s=stage_s,
        sizes={k: getattr(sizes, k) for k in sizes.__struct_fields__},
        machine=machine,
        rows=rows,
        notes=_notes(profile),
        failures=failures,
    )
    json_path, md_path = write(result, out)
    _show(result, console)
    console.print(f"results: {json_path} and {md_path} (also latest.json, latest.md)")
    return result


def _mttr(tmp: Path, sizes: Sizes, steps: Steps) -> list[Row]:
    with (
        steps.step(f"MTTR over a read model of {sizes.mttr_incidents:,} incidents"),
        steps.counting("applied", sizes.mttr_incidents * 6) as done,
    ):
        raw = build(tmp / "mttr.duckdb", sizes.mttr_incidents, done)
        try:
            return mttr_rows(tmp / "mttr.duckdb", raw, sizes.mttr_incidents, sizes.samples)
        finally:
            raw.close()


def _asof(tmp: Path, sizes: Sizes, steps: Steps, profile: Path | None) -> list[Row]:
    with (
        steps.step(f"as-of of a {sizes.asof_events:,}-event incident"),
        EmbeddedNatsServer(tmp / "nats-asof", sync_always=False) as server,
        profiled(profile, "asof"),
    ):
        return [asyncio.run(asof_row(server.url, tmp / "asof", sizes.asof_events, sizes.samples))]


def _notes(profile: Path | None) -> list[str]:
    notes = [
        "Ratio = the figure divided by the raw baseline measured in the same run (for ms and "
        "MB rows lower is better).",
        "Single-event HTTP rows and the webhook are driven by "
        + ("wrk." if WRK else "httpx: wrk is not installed (apt-get install wrk)."),
        "Write rows run under each nats-server fsync policy (`sync`): `always` fsyncs every "
        "write (what `incidents serve`'s embedded server does), `default` is nats-server's own.",
    ]
    if profile is not None:
        notes.append(
            f"Profiled (cProfile stats in {profile}): the projector, append and as-of figures "
            "carry the profiler's overhead."
        )
    return notes


def _show(result: Run, console: Console) -> None:
    table = Table(title=f"{result.command}: {result.wall_s:.0f} s")
    for header in HEADERS:
        table.add_column(header)
    for r in result.rows:
        table.add_row(*(cell.replace("<br>", "\n") for cell in cells(r)))
    console.print(table)
