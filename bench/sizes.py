"""How big each stage runs: the full run (issue 15's sizes), `--quick` (every row in under a
minute) and `--smoke` (the test's: every row, smallest)."""

from typing import Final

import msgspec


class Sizes(msgspec.Struct, frozen=True, kw_only=True):
    log_events: int  # replay and serve RSS (`--events`)
    projector_events: int  # the projector and its raw baselines (at most log_events)
    mttr_incidents: int  # 6 events each
    samples: int  # timed runs of each MTTR grouping and of as-of / live
    asof_events: int  # the one incident's size
    sequential: int  # one-at-a-time raw publishes
    pipelined: int  # raw pipelined publishes and pipelined CommandHandler.handle calls
    http_batches: int  # POST /v1/events batches of 100
    load_seconds: int  # each wrk run (single events, Alertmanager webhook)


FULL: Final = Sizes(
    log_events=1_000_000,
    projector_events=200_000,
    mttr_incidents=100_000,
    samples=20,
    asof_events=1_000,
    sequential=2_000,
    pipelined=10_000,
    http_batches=100,
    load_seconds=5,
)
QUICK: Final = Sizes(
    log_events=20_000,
    projector_events=20_000,
    mttr_incidents=5_000,
    samples=20,
    asof_events=1_000,
    sequential=300,
    pipelined=1_000,
    http_batches=10,
    load_seconds=2,
)
SMOKE: Final = Sizes(
    log_events=2_000,
    projector_events=2_000,
    mttr_incidents=300,
    samples=3,
    asof_events=100,
    sequential=50,
    pipelined=300,
    http_batches=3,
    load_seconds=1,
)


def sized(preset: Sizes, events: int | None) -> Sizes:
    if events is None:
        return preset
    return msgspec.structs.replace(
        preset, log_events=events, projector_events=min(events, preset.projector_events)
    )
