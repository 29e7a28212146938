"""Issue 15's targets, as data in one place, and the pass/miss verdict of a measured row.

A target reads a row's `value`, its `ratio` (to the row's first baseline) or one of its
`details`. The issue measured the write rows under `sync_interval: always` (the embedded
default): when a run measures both settings, only those rows are judged, the others are shown
for what durability costs.
"""

from typing import Final, Literal

import msgspec

from bench.results import Row, Verdict


class Target(msgspec.Struct, frozen=True):
    field: str  # "value", "ratio" or a key of the row's details
    op: Literal[">=", "<="]
    limit: float
    unit: str

    @property
    def text(self) -> str:
        return f"{self.op} {self.limit:,g}{self.unit}"

    def met_by(self, measured: float) -> bool:
        return measured >= self.limit if self.op == ">=" else measured <= self.limit


TARGETS: Final[dict[str, tuple[Target, ...]]] = {
    "projector": (Target("value", ">=", 100_000, " events/s"), Target("ratio", ">=", 0.5, "x")),
    # 1M events in <= 20 s, as a rate so that smaller logs are judged alike.
    "replay": (Target("value", ">=", 50_000, " events/s"), Target("peak_rss_mb", "<=", 300, " MB")),
    "mttr_severity": (Target("p95_ms", "<=", 50, " ms p95"),),
    "mttr_month": (Target("p95_ms", "<=", 50, " ms p95"),),
    "mttr_service": (Target("p95_ms", "<=", 50, " ms p95"),),
    "asof": (Target("p95_ms", "<=", 50, " ms p95"),),
    "http_single_sequential": (),
    "http_single_32": (Target("ratio", ">=", 0.5, "x"),),
    "http_batches_100": (Target("ratio", ">=", 0.8, "x"),),
    "append_pipelined": (Target("ratio", ">=", 0.8, "x"),),
    "webhook": (Target("value", ">=", 2_000, " alerts/s"), Target("non_2xx", "<=", 0, " non-2xx")),
    "serve_rss": (Target("value", "<=", 300, " MB"),),
}


def judged(row: Row, judge: bool = True) -> Row:
    if not judge:
        return row
    verdicts = []
    for target in TARGETS[row.key]:
        measured = row.ratio if target.field == "ratio" else row.field(target.field)
        verdicts.append(Verdict(target.text, measured, target.met_by(measured)))
    return msgspec.structs.replace(row, verdicts=tuple(verdicts))
