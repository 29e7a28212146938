"""`incidents export` and `incidents verify`: evidence straight from NATS, or a bundle offline.

They read the log itself, not the service, so they work when the service is down. Which NATS:
`--nats-url` / `INCIDENTS_NATS_URL`, else the one the `incidents serve` running on the data
dir wrote to its runtime file (services/runtime.py), as the service's own user when that
embedded server has users (tokens on).
"""

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final, NamedTuple, TypeVar

import msgspec
import nats
import nats.errors
import typer
from nats.aio.client import Client as NATS

from events.store import StoreUnavailableError
from services import natsurl, runtime
from services.cli.options import Verb, fail, local_user, parse_incident_id, rfc3339
from services.config import ConfigError
from services.errors import ErrorKind
from services.evidence.bundle import MANIFEST, Manifest, Selection, export, sha256
from services.evidence.chains import Report, describe, verify_log
from services.evidence.log import EvidenceError, Log
from services.natsauth import CREDENTIALS_FILE, SERVICE_INBOX, ServiceCredentials

T = TypeVar("T")


class _Nats(NamedTuple):
    url: str
    stream: str
    # The embedded server's service user, with its own inbox prefix (services/natsauth.py).
    login: dict[str, str]
    found_in: str = ""  # where the URL came from, for the error that it cannot be reached


DEFAULT_STREAM: Final = "INCIDENTS"


def _nats(url: str | None, stream: str | None) -> _Nats:
    """The NATS and stream to read: as given, else those of the running `incidents serve`."""
    if url:
        try:
            natsurl.target(url)
        except ValueError as exc:
            fail(f"--nats-url / INCIDENTS_NATS_URL: {exc}")
        return _Nats(url, stream or DEFAULT_STREAM, {})
    directory = runtime.data_dir()
    try:
        endpoints = runtime.running_service(directory)
    except OSError as exc:
        fail(
            f"cannot read {directory / runtime.RUNTIME_FILE} ({exc.strerror}): run this as the "
            "user of incidents serve, or set INCIDENTS_NATS_URL"
        )
    if endpoints is None:
        fail(
            f"no incidents serve is running on data dir {directory} (no live "
            f"{runtime.RUNTIME_FILE}): start it, set INCIDENTS_DATA_DIR to its data dir, or set "
            "INCIDENTS_NATS_URL / --nats-url: export and verify read NATS directly"
        )
    found_in = f" (from {directory / runtime.RUNTIME_FILE}, incidents serve pid {endpoints.pid})"
    login = _service_login(directory) if endpoints.nats_users else {}
    return _Nats(endpoints.nats_url, stream or endpoints.stream, login, found_in)


def _service_login(directory: Path) -> dict[str, str]:
    path = directory / CREDENTIALS_FILE
    if not path.is_file():
        fail(
            f"{path} is missing: the embedded nats-server has users (tokens on) and its "
            "service user's password lives there; set INCIDENTS_NATS_URL instead"
        )
    try:
        credentials = ServiceCredentials.load_or_create(directory)
    except ConfigError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(
            f"cannot read {path} ({exc.strerror}): run this as the user of incidents serve, "
            "or set INCIDENTS_NATS_URL"
        )
    return {
        "user": credentials.user,
        "password": credentials.password,
        "inbox_prefix": SERVICE_INBOX,
    }


async def _connect(target: _Nats) -> NATS:
    errors: list[Exception] = []

    async def remember(exc: Exception) -> None:  # instead of nats-py's logged tracebacks
        errors.append(exc)

    try:
        # Credentials written into the URL hold for every server of a cluster (natsurl.py).
        options = natsurl.target(target.url).options() | target.login
        return await nats.connect(
            **options,
            name="incidents-evidence",
            connect_timeout=5,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # 0 would retry the first connection for ever
            reconnect_time_wait=0.1,
            error_cb=remember,
        )
    except (OSError, TimeoutError, nats.errors.Error) as exc:
        reason = errors[-1] if errors else exc
        where = f"{natsurl.redacted(target.url)}{target.found_in}"
        raise StoreUnavailableError(f"cannot reach NATS at {where}: {reason}") from exc


async def _with_log(target: _Nats, work: Callable[[Log], Awaitable[T]]) -> T:
    nc = await _connect(target)
    try:
        return await work(Log(nc, target.stream))
    finally:
        await nc.close()


def _run(url: str | None, stream: str | None, work: Callable[[Log], Awaitable[T]]) -> T:
    target = _nats(url, stream)
    try:
        return asyncio.run(_with_log(target, work))
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
    stream: str | None,
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
    stream: str | None,
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
    typer.Option(
        "--nats-url",
        envvar="INCIDENTS_NATS_URL",
        help="NATS holding the log (default: that of the incidents serve running on "
        "INCIDENTS_DATA_DIR, from its serve.json)",
    ),
]
Stream = Annotated[
    str | None,
    typer.Option(
        envvar="INCIDENTS_STREAM",
        show_default=False,
        help=f"stream name (default: the running serve's, else {DEFAULT_STREAM})",
    ),
]
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
    stream: Stream = None,
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
    stream: Stream = None,
    as_json: AsJson = False,
) -> None:
    """Recompute every incident's hash chain from NATS; exit 1 on a break or a gap."""
    verify_command(bundle, nats_url, stream, expect_last_seq, strict, as_json)


def register(app: typer.Typer) -> None:
    app.command("export", cls=Verb)(export_verb)
    app.command("verify", cls=Verb)(verify_verb)
