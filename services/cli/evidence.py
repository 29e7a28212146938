"""`incidents export` and `incidents verify`: evidence straight from NATS, or a bundle offline.

They read the log itself, not the service, so they work when the service is down.
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, TypeVar

import msgspec
import nats
import nats.errors
import typer
from nats.aio.client import Client as NATS

from events.store import StoreUnavailableError
from services.cli.options import Verb, fail, local_user, parse_incident_id, rfc3339
from services.errors import ErrorKind
from services.evidence.bundle import MANIFEST, Manifest, Selection, export, sha256
from services.evidence.chains import Report, describe, verify_log
from services.evidence.log import EvidenceError, Log

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
        return await export(log, selection, out, f"{local_user()} (cli)")

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


NatsUrl = Annotated[
    str | None,
    typer.Option("--nats-url", envvar="INCIDENTS_NATS_URL", help="NATS holding the log (required)"),
]
Stream = Annotated[str, typer.Option(envvar="INCIDENTS_STREAM", help="stream name")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
Moment = Annotated[
    datetime | None,
    typer.Option(parser=rfc3339, metavar="RFC3339", help="bounds of recorded_at (inclusive)"),
]


def export_verb(
    out: Annotated[Path, typer.Option("--out", help="bundle directory to create (new or empty)")],
    incident_id: Annotated[
        str | None,
        typer.Argument(
            metavar="ID", parser=parse_incident_id, show_default=False, help="one incident"
        ),
    ] = None,
    since: Moment = None,
    until: Moment = None,
    nats_url: NatsUrl = None,
    stream: Stream = "INCIDENTS",
    as_json: AsJson = False,
) -> None:
    """Write an evidence bundle (events as stored, manifest, verify.py) straight from NATS:
    one incident, or whole incidents with an event recorded between --since and --until."""
    export_command(incident_id, since, until, out, nats_url, stream, as_json)


def verify_verb(
    bundle: Annotated[
        Path | None, typer.Option("--bundle", help="check an exported bundle, offline")
    ] = None,
    expect_last_seq: Annotated[
        int, typer.Option(min=0, help="a sequence known written: the log must reach it")
    ] = 0,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="also fail a chain cut by expiry that no retention.advanced record vouches for",
        ),
    ] = False,
    nats_url: NatsUrl = None,
    stream: Stream = "INCIDENTS",
    as_json: AsJson = False,
) -> None:
    """Recompute every incident's hash chain from NATS; exit 1 on a break or a gap."""
    verify_command(bundle, nats_url, stream, expect_last_seq, strict, as_json)


def register(app: typer.Typer) -> None:
    app.command("export", cls=Verb)(export_verb)
    app.command("verify", cls=Verb)(verify_verb)
