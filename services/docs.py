"""`uv run python -m services.docs`: write the API documents into docs/ (`--check`: only say
which are stale, exit 1).

docs/openapi.json is what `GET /schema/openapi.json` serves (services/api/openapi.py);
docs/asyncapi.json describes the NATS subjects (services/asyncapi.py). Both are checked in and
compared with a fresh generation by tests/e2e/test_docs.py, so a change to a route or a subject
that is not exported fails the tests, naming this command.
"""

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final, cast

import msgspec
from litestar import Litestar

from events.policy import load_policy
from events.store import EventStore
from services import asyncapi
from services.api import openapi
from services.api.app import create_app
from services.auth import Tokens
from services.clock import utc_now
from services.write.intake import Intake

DOCS: Final = Path(__file__).resolve().parent.parent / "docs"
COMMAND: Final = "uv run python -m services.docs"


def routes_only() -> Litestar:
    """The app `incidents serve` runs, never started (no NATS needed): its routes and their
    documents; its handlers, which would need the intake and the log, never run."""
    return create_app(
        cast(Intake, None),
        Tokens.load(None),
        utc_now,
        None,
        cast(EventStore, None),
        policy=load_policy(None),
    )


def openapi_document() -> dict[str, Any]:
    """The document the API serves."""
    app = routes_only()
    return openapi.amended(app, app.openapi_schema.to_schema())


DOCUMENTS: Final[dict[str, Callable[[], dict[str, Any]]]] = {
    "openapi.json": openapi_document,
    "asyncapi.json": asyncapi.document,
}


def text(document: dict[str, Any]) -> bytes:
    """Sorted and indented: a change to the API shows as a readable diff."""
    return msgspec.json.format(msgspec.json.encode(document, order="sorted"), indent=2) + b"\n"


def main(argv: list[str]) -> int:
    check = argv == ["--check"]
    if argv and not check:
        print(f"usage: {COMMAND} [--check]", file=sys.stderr)
        return 2
    stale = []
    for name, build in DOCUMENTS.items():
        path = DOCS / name
        fresh = text(build())
        if path.is_file() and path.read_bytes() == fresh:
            continue
        stale.append(name)
        if not check:
            DOCS.mkdir(exist_ok=True)
            path.write_bytes(fresh)
            print(f"wrote {path}")
    if check and stale:
        print(f"stale in {DOCS}: {', '.join(stale)}; run `{COMMAND}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
