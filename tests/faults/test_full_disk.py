"""A full disk under `incidents serve`: a clear 503 naming it, `/readyz` not ready, recovery by
itself once space is freed, a clean SIGTERM, nothing acknowledged lost (issue 16 item 4).

The data dir (nats-server's store and the DuckDB read models) is a small tmpfs mounted for the
test (root only: the tests skip, saying why, where mounting is impossible). A filler file takes
every free block; truncating it frees them again. Each event is posted until it is
acknowledged, with the same event id, as a producer would.
"""

import asyncio
import errno
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, Final

import duckdb
import httpx
import pytest
from invariants import Outcomes, check_log, read_model_differences, served_models
from serve_process import ServeProcess, eventually
from tests_support import envelope, producer_declared, producer_note, snapshot

from events.records import Stored
from events.schema import AlertFired, encode
from projections.database import open_database
from projections.projector import Projector
from services.natsserver import EmbeddedNatsServer

DISK_MB: Final = 24  # room for the log, the read models and DuckDB's WAL, no more
WRITE_TIMEOUT_S: Final = 15.0  # a write may wait for JetStream's 5 s timeout; never longer
RECOVER_WITHIN_S: Final = 90.0  # a deadline to wait for, not a claim (the figures are printed)
MOST_WRITES_INTO_A_FULL_DISK: Final = 300  # small writes may still fit in half-used pages


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of `DISK_MB` mounted at a directory of `tmp_path`; lazily unmounted at the end
    (the test stops its processes first)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; run as root to test a full disk")
    mount = tmp_path / "disk"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", f"size={DISK_MB}m", "tmpfs", str(mount)]
    try:
        mounted = subprocess.run(command, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs ({exc}): no small disk to fill")
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({mounted.stderr.strip()}): no small disk to fill")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], check=False, timeout=30)


def fill(disk: Path) -> BinaryIO:
    """A file that takes every free block of `disk`; truncate it to free them."""
    filler = (disk / "filler").open("wb", buffering=0)
    for size in (1 << 20, 4096):  # megabytes, then the pages left
        try:
            while True:
                filler.write(bytes(size))
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
    return filler


class Producer:
    """One HTTP client posting producer events, tallied in `outcomes`."""

    def __init__(self, http_url: str) -> None:
        self.client = httpx.Client(base_url=http_url, timeout=WRITE_TIMEOUT_S)
        self.outcomes = Outcomes()

    def __enter__(self) -> "Producer":
        return self

    def __exit__(self, *_: object) -> None:
        self.client.close()

    def post(self, body: dict[str, Any]) -> httpx.Response:
        event_id = str(body["event_id"])
        answer = self.client.post("/v1/events", json=body)
        self.outcomes.answered(event_id, answer, (event_id,))
        return answer

    def until_acked(self, body: dict[str, Any], timeout: float = RECOVER_WITHIN_S) -> float:
        """Post `body` until it is acknowledged; the seconds it took."""
        return eventually(lambda: self.post(body).is_success, timeout, "an acknowledged write")

    def until_refused(self, incident_id: str) -> tuple[dict[str, Any], httpx.Response]:
        """Post new notes until one is refused; that note and its answer."""
        for n in range(MOST_WRITES_INTO_A_FULL_DISK):
            body = producer_note(incident_id, f"{incident_id}-full-{n}", f"note {n}")
            answer = self.post(body)
            if not answer.is_success:
                return body, answer
        raise AssertionError(f"{MOST_WRITES_INTO_A_FULL_DISK} writes into a full disk succeeded")


def readyz(process: ServeProcess) -> httpx.Response:
    return httpx.get(process.http_url + "/readyz", timeout=WRITE_TIMEOUT_S)


def assert_storage_full(answer: httpx.Response) -> None:
    """503 with Retry-After, in the error shape, naming the full disk."""
    assert answer.status_code == 503, answer.text
    assert answer.headers.get("retry-after"), answer.headers
    body = answer.json()
    assert body["error"] == "unavailable", body
    assert body["detail"].startswith("storage full: "), body


def stop(process: ServeProcess) -> list[str]:
    """SIGTERM; the lines written from then on (the process must exit 0, without a traceback)."""
    process.drain()
    before = len(process.lines)
    process.proc.send_signal(signal.SIGTERM)
    code, output = process.finish(timeout=60)
    after = process.lines[before:]
    assert code == 0, output[-3000:]
    assert "Traceback" not in "".join(after), "".join(after)
    return after


def assert_invariants(outcomes: Outcomes, data_dir: Path, scratch: Path) -> dict[str, int]:
    """Nothing acknowledged lost or stored twice, chains whole, read models = a fresh fold,
    no 5xx but 503 with Retry-After."""
    assert not outcomes.bad, outcomes.bad[:5]
    # The service's own nats-server stopped with it: the same store, read by one of our own.
    with EmbeddedNatsServer(data_dir / "nats") as server:
        check = asyncio.run(check_log(server.url, frozenset(outcomes.acked)))
        check.assert_sound()
        differences = asyncio.run(
            read_model_differences(server.url, served_models(data_dir), scratch)
        )
    assert differences == [], differences
    return {"acked": check.acked, "in the log": check.events}


@pytest.mark.slow
def test_a_full_disk_means_503_naming_it_then_recovery_by_itself(
    small_disk: Path, tmp_path: Path
) -> None:
    process = ServeProcess(small_disk / "var")
    try:
        process.wait_ready(60)
        with Producer(process.http_url) as producer:
            incident_id = "DISK-1"
            producer.until_acked(producer_declared(incident_id, f"{incident_id}-d"))

            with fill(small_disk) as filler:
                refused, answer = producer.until_refused(incident_id)
                assert_storage_full(answer)
                not_ready = readyz(process)
                assert not_ready.status_code == 503, not_ready.text
                assert not_ready.json()["reason"].startswith("storage full: "), not_ready.text
                filler.truncate(0)
            freed = time.monotonic()
            # The refused note again, with its event id: stored once, however often tried.
            producer.until_acked(refused)
            first_write_s = time.monotonic() - freed
            eventually(
                lambda: readyz(process).status_code == 200,
                RECOVER_WITHIN_S,
                "/readyz ready after space was freed",
                every=0.2,
            )
            ready_s = time.monotonic() - freed
            for n in range(3):
                producer.until_acked(producer_note(incident_id, f"{incident_id}-after-{n}"))
            eventually(
                lambda: readyz(process).json()["projector"]["lag"] == 0,
                RECOVER_WITHIN_S,
                "the projector caught up with the writes after the fault",
            )
        stop(process)
    finally:
        process.stop()
    figures = assert_invariants(producer.outcomes, small_disk / "var", tmp_path)
    statuses = dict(sorted(producer.outcomes.statuses.items()))
    print(
        f"\nfull disk: space freed -> first 2xx write {first_write_s:.1f} s, -> /readyz ready "
        f"{ready_s:.1f} s; {figures}, statuses {statuses}; refused with: {answer.json()['detail']}"
    )


@pytest.mark.slow
def test_sigterm_while_the_disk_is_full_exits_cleanly_and_loses_nothing(
    small_disk: Path, tmp_path: Path
) -> None:
    process = ServeProcess(small_disk / "var")
    try:
        process.wait_ready(60)
        with Producer(process.http_url) as producer:
            incident_id = "DISK-2"
            producer.until_acked(producer_declared(incident_id, f"{incident_id}-d"))
            with fill(small_disk) as filler:
                _, answer = producer.until_refused(incident_id)
                assert_storage_full(answer)
                after = stop(process)
                filler.truncate(0)
    finally:
        process.stop()
    assert any("stopping" in line for line in after), after
    figures = assert_invariants(producer.outcomes, small_disk / "var", tmp_path)
    print(f"\nSIGTERM on a full disk: exit 0; {figures}")


def test_a_commit_into_a_full_disk_fails_naming_it_and_applies_whole_once_space_is_back(
    small_disk: Path, tmp_path: Path
) -> None:
    fired = [
        AlertFired(**envelope(f"INC-FULL{n % 7}", f"fired-{n}", n), fingerprint=f"fp-{n}")
        for n in range(2000)
    ]
    batch = [Stored(seq, event, encode(event)) for seq, event in enumerate(fired, start=1)]
    con = open_database(small_disk / "models.duckdb")
    try:
        projector = Projector(con, None)
        with fill(small_disk) as filler:
            # DuckDB rolls a failed COMMIT back itself: its error must not be hidden behind
            # that of a second rollback ("no transaction is active").
            with pytest.raises(duckdb.Error, match="No space left on device"):
                projector.apply(batch, len(batch))
            assert projector.checkpoint == 0
            assert con.execute("SELECT count(*) FROM events").fetchone() == (0,)
            filler.truncate(0)
        assert projector.apply(batch, len(batch)) == len(batch)
        projected = snapshot(con)
    finally:
        con.close()
    fresh = open_database(tmp_path / "fresh.duckdb")
    try:
        Projector(fresh, None).apply(batch, len(batch))
        assert projected == snapshot(fresh)
    finally:
        fresh.close()
