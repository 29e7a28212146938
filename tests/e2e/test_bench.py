"""`incidents bench --smoke`: every row of issue 15's table end to end, at the smallest sizes.

Checks the shape of the results (every row, its raw baselines and ratios, the verdicts, the
machine facts, the profiles), never a figure: the machine is shared and timings are noise.
"""

import json
import subprocess
from pathlib import Path

from tests_support import INCIDENTS

from bench.targets import TARGETS

WRITE_ROWS = {
    "http_single_sequential",
    "http_single_32",
    "http_batches_100",
    "append_pipelined",
    "webhook",
}
FACTS = {
    "cpu_count",
    "cpu_model",
    "ram_gib",
    "python",
    "nats_server",
    "nats_py",
    "duckdb",
    "msgspec",
    "sync_settings",
    "git_commit",
}


def test_smoke_run_reports_every_row_with_baselines_ratios_and_machine_facts(
    tmp_path: Path,
) -> None:
    out, profiles = tmp_path / "results", tmp_path / "profiles"
    done = subprocess.run(
        [INCIDENTS, "bench", "--smoke", "--no-sync", "--out", str(out), "--profile", str(profiles)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    result = json.loads((out / "latest.json").read_text())
    assert result["failures"] == {}
    assert result["machine"].keys() >= FACTS
    assert result["machine"]["sync_settings"] == "default"
    rows = {(r["key"], r["sync"]): r for r in result["rows"]}
    expected = {(key, "default" if key in WRITE_ROWS else None) for key in TARGETS}
    assert rows.keys() == expected
    for row in rows.values():
        assert row["value"] > 0, row
        assert row["baselines"], row
        for baseline in row["baselines"]:
            assert baseline["value"] > 0, row
            assert baseline["ratio"] == row["value"] / baseline["value"]
        assert len(row["verdicts"]) == len(TARGETS[row["key"]])
    assert rows["webhook", "default"]["details"]["non_2xx"] == 0

    table = (out / "latest.md").read_text()
    for row in rows.values():
        assert row["what"] in table
    assert sorted(p.name for p in profiles.iterdir()) == [
        f"{stage}.{kind}"
        for stage in ("append-default", "asof", "projector")
        for kind in ("pstats", "txt")
    ]


def test_bench_help_lists_the_options() -> None:
    done = subprocess.run([INCIDENTS, "bench", "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for option in ("--quick", "--events", "--no-sync", "--profile"):
        assert option in done.stdout
