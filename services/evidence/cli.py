"""The evidence verbs of the CLI (registered in services/cli.py): straight against NATS, or
offline on a bundle."""

import asyncio
import getpass
import socket
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import msgspec
import nats
import nats.errors
import typer
from nats.aio.client import Client as NATS

from events.store import StoreUnavailableError
from services.client import fail
from services.evidence.bundle import MANIFEST, Manifest, Selection, export, sha256
from services.evidence.log import EvidenceError, Log
from services.evidence.verify import Report, describe, verify_log
from services.intake import ErrorKind

T = TypeVar("T")


async def _connect(url: str) -> NATS:
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:  # instead of nats-py's logged tracebacks
        errors.append(exc)

    try:
        return await nats.connect(
            servers=url.split(","),
            name="incidents-evidence",
            connect_timeout=5,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # 0 would retry the first connection for ever
            reconnect_time_wait=0.1,
            error_cb=remember,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        reason = errors[-1] if errors else exc
        raise StoreUnavailableError(f"cannot reach NATS at {url}: {reason}") from exc


async def _with_log(url: str, stream: str, work: Callable[[Log], Awaitable[T]]) -> T:
    nc = await _connect(url)
    try:
        return await work(Log(nc, stream))
    finally:
        await nc.close()


def _run(url: str | None, stream: str, work: Callable[[Log], Awaitable[T]]) -> T:
    if not url:
        fail("set INCIDENTS_NATS_URL or pass --nats-url: export and verify read NATS directly")
    try:
        return asyncio.run(_with_log(url, stream, work))
    except EvidenceError as exc:
        fail(exc.detail, code=1 if exc.kind is ErrorKind.CONFLICT else 2)
    except StoreUnavailableError as exc:
        fail(str(exc), code=1)


def _who() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (cli)"


def export_command(
    incident_id: str | None,
    since: datetime | None,
    until: datetime | None,
    out: Path,
    nats_url: str | None,
    stream: str,
    as_json: bool,
) -> None:
    if (incident_id is None) == (since is None and until is None):
        fail("give an incident ID, or --since and/or --until (whole incidents recorded then)")
    if since is not None and until is not None and since > until:
        fail("--since is after --until")
    selection = Selection(incident_id=incident_id, since=since, until=until)

    async def work(log: Log) -> Manifest:
        return await export(log, selection, out, _who())

    manifest: Manifest = _run(nats_url, stream, work)
    problems = _check_bundle(out)
    digest = sha256((out / MANIFEST).read_bytes())
    if as_json:
        answer = {"out": str(out), "manifest_sha256": digest, "manifest": manifest}
        typer.echo(msgspec.json.encode(answer).decode())
    else:
        typer.echo(
            f"exported {manifest.event_count} events of {len(manifest.incidents)} incidents "
            f"(seq {manifest.first_seq}..{manifest.last_seq}) to {out}\n"
            f"manifest.json sha256 {digest} (keep it: it anchors the bundle)"
        )
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)


def _check_bundle(bundle: Path) -> list[str]:
    from services.evidence.verifier import check  # this program's verifier, not the bundle's copy

    return check(bundle)


def verify_command(
    bundle: Path | None,
    nats_url: str | None,
    stream: str,
    expect_last_seq: int,
    strict: bool,
    as_json: bool,
) -> None:
    if bundle is not None:
        if not (bundle / MANIFEST).is_file():
            fail(f"{bundle} holds no {MANIFEST}: not an evidence bundle")
        problems = _check_bundle(bundle)
        if as_json:
            answer = {"intact": not problems, "problems": problems}
            typer.echo(msgspec.json.encode(answer).decode())
        else:
            for problem in problems:
                typer.echo(problem)
            typer.echo(f"{bundle}: {'FAILED' if problems else 'intact'}")
        raise typer.Exit(1 if problems else 0)

    async def work(log: Log) -> Report:
        return await verify_log(log, expect_last_seq, strict)

    report: Report = _run(nats_url, stream, work)
    if as_json:
        typer.echo(msgspec.json.encode(report).decode())
    else:
        for line in describe(report):
            typer.echo(line)
    raise typer.Exit(0 if report.intact else 1)
