"""One run's results: rows (each figure with its raw baselines and ratios), machine facts, and
their JSON and Markdown files under bench/results/."""

import importlib.metadata
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import msgspec

from services.natsserver import find_binary

RESULTS_DIR: Final = Path(__file__).with_name("results")


class Baseline(msgspec.Struct, frozen=True):
    name: str
    value: float
    unit: str
    ratio: float  # the row's value divided by this value


class Verdict(msgspec.Struct, frozen=True):
    target: str
    measured: float
    met: bool


class Row(msgspec.Struct, frozen=True, kw_only=True):
    key: str  # the row of issue 15's table (bench.targets.TARGETS)
    what: str
    sync: str | None  # nats-server sync_interval for write rows: "always" or "default"
    value: float
    unit: str
    figure: str  # the value and its details, for people
    baselines: tuple[Baseline, ...]
    details: dict[str, float] = {}
    verdicts: tuple[Verdict, ...] = ()

    @property
    def ratio(self) -> float:
        return self.baselines[0].ratio

    def field(self, name: str) -> float:
        return self.value if name == "value" else self.details[name]


def row(
    key: str,
    what: str,
    value: float,
    unit: str,
    figure: str,
    baselines: list[tuple[str, float, str]],
    sync: str | None = None,
    details: dict[str, float] | None = None,
) -> Row:
    return Row(
        key=key,
        what=what,
        sync=sync,
        value=value,
        unit=unit,
        figure=figure,
        baselines=tuple(Baseline(n, v, u, value / v) for n, v, u in baselines),
        details=details or {},
    )


class Run(msgspec.Struct, kw_only=True):
    command: str
    started_at: datetime
    wall_s: float
    stage_s: dict[str, float]  # wall seconds of each stage
    sizes: dict[str, int | float]
    machine: dict[str, str | int | float]
    rows: list[Row]
    notes: list[str]
    failures: dict[str, str] = {}  # stage -> the error that cost its rows


def machine_facts(syncs: list[str], http_client: str) -> dict[str, str | int | float]:
    return {
        "cpu_count": os.cpu_count() or 0,
        "cpu_model": _cpu_model(),
        "ram_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "python": platform.python_version(),
        "nats_server": _output([str(find_binary()), "--version"]) or "unknown",
        "nats_py": importlib.metadata.version("nats-py"),
        "duckdb": importlib.metadata.version("duckdb"),
        "msgspec": importlib.metadata.version("msgspec"),
        "sync_settings": ", ".join(syncs),
        "http_client": http_client,
        "git_commit": _git_commit(),
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _output(argv: list[str]) -> str | None:
    """The command's stdout, or None when it cannot run or fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except OSError:
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def _git_commit() -> str:
    root = str(Path(__file__).parents[1])
    commit = _output(["git", "-C", root, "rev-parse", "--short=12", "HEAD"])
    if commit is None:
        return "unknown (not a git checkout)"
    dirty = _output(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"])
    return f"{commit} (uncommitted changes)" if dirty else commit


def write(run: Run, out: Path) -> tuple[Path, Path]:
    """`<UTC time>.json` and `.md` in `out`, and the same as `latest.json` and `latest.md`."""
    out.mkdir(parents=True, exist_ok=True)
    stamp = run.started_at.strftime("%Y%m%dT%H%M%SZ")
    data = msgspec.json.format(msgspec.json.encode(run), indent=2)
    text = markdown(run)
    for name in (stamp, "latest"):
        (out / f"{name}.json").write_bytes(data)
        (out / f"{name}.md").write_text(text)
    return out / f"{stamp}.json", out / f"{stamp}.md"


def marks(r: Row) -> str:
    if not r.verdicts:
        return ""
    return "pass" if all(v.met for v in r.verdicts) else "MISS"


def cells(r: Row) -> list[str]:
    """what, sync, figure, baselines, ratios, targets, mark: one table line (`<br>` joins)."""
    return [
        r.what,
        r.sync or "",
        r.figure,
        "<br>".join(f"{b.name}: {_number(b.value)} {b.unit}" for b in r.baselines),
        "<br>".join(f"{b.ratio:.2f}" for b in r.baselines),
        "<br>".join(f"{v.target}: {'met' if v.met else 'missed'}" for v in r.verdicts),
        marks(r),
    ]


HEADERS: Final = ["what", "sync", "figure", "raw baseline (same run)", "ratio", "target", ""]


def markdown(run: Run) -> str:
    met = sum(v.met for r in run.rows for v in r.verdicts)
    total = sum(len(r.verdicts) for r in run.rows)
    lines = [
        f"# `{run.command}` ({run.started_at:%Y-%m-%d %H:%M} UTC)",
        "",
        f"Wall time {run.wall_s:.0f} s ("
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in run.stage_s.items())
        + f"); targets met: {met} of {total}. Ratio = figure / baseline.",
        "",
        "| " + " | ".join(HEADERS) + " |",
        "|" + "---|" * len(HEADERS),
        *("| " + " | ".join(cells(r)) + " |" for r in run.rows),
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in run.machine.items()),
        "",
        "Sizes: " + ", ".join(f"{k} {_number(v)}" for k, v in run.sizes.items()),
        "",
        *(f"- {note}" for note in run.notes),
        *(f"- **FAILED** {stage}: {error}" for stage, error in run.failures.items()),
        "",
    ]
    return "\n".join(lines)


def _number(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3g}"


def utc_now() -> datetime:
    return datetime.now(UTC)
