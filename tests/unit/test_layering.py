"""One-way layering: the pure event modules import no I/O library and no outer layer."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PURE = [
    "events/schema.py",
    "events/subjects.py",
    "events/commands.py",
    "events/incident.py",
    "events/facts.py",
    "events/decisions.py",
    "events/chain.py",
    "events/policy.py",
    "events/durations.py",
    "events/escalation.py",
    "events/notifications.py",
    "events/templates.py",
    "events/aliases.py",
    "events/teams.py",
    "events/vocabulary.py",
]
FORBIDDEN_ROOTS = {"nats", "faststream", "duckdb", "asyncio", "socket", "services", "projections"}
FORBIDDEN_MODULES = {"events.store"}


def imported_modules(source: str, module: str) -> set[str]:
    """Absolute names of every module an import statement in `source` may load."""
    package = module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            # `from events import store` loads events.store.
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name | ast.Attribute)
            and getattr(node.func, "id", getattr(node.func, "attr", ""))
            in {"__import__", "import_module"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.add(str(node.args[0].value))
    return found


def violations(modules: set[str]) -> set[str]:
    return {
        name
        for name in modules
        if name.split(".")[0] in FORBIDDEN_ROOTS
        or any(name == bad or name.startswith(f"{bad}.") for bad in FORBIDDEN_MODULES)
    }


@pytest.mark.parametrize("path", PURE)
def test_pure_module_imports_nothing_impure(path: str) -> None:
    source = (ROOT / path).read_text(encoding="utf-8")
    modules = imported_modules(source, path.removesuffix(".py").replace("/", "."))
    assert modules, f"{path}: no imports found, is the scanner broken?"
    assert violations(modules) == set(), path


@pytest.mark.parametrize(
    "source",
    [
        "import nats",
        "import nats.js.api as api",
        "from faststream.nats import NatsBroker",
        "import duckdb",
        "import asyncio",
        "from socket import create_connection",
        "from services.bootstrap import build",
        "import projections.projector",
        "from events.store import EventStore",
        "from events import store",
        "from . import store",
        "from .store import EventStore",
        "def f():\n    import duckdb",
        "import importlib\nimportlib.import_module('nats')",
        "__import__('socket')",
    ],
)
def test_scanner_flags_forbidden_imports(source: str) -> None:
    assert violations(imported_modules(source, "events.incident"))


@pytest.mark.parametrize(
    "source",
    [
        "import msgspec",
        "from events.schema import Event",
        "from .schema import encode",
        "import hashlib",
    ],
)
def test_scanner_allows_pure_imports(source: str) -> None:
    assert imported_modules(source, "events.chain")
    assert violations(imported_modules(source, "events.chain")) == set()


def test_pure_modules_load_no_impure_module_transitively() -> None:
    """What the modules pull in at runtime, in a fresh interpreter, not only what they name."""
    modules = ", ".join(p.removesuffix(".py").replace("/", ".") for p in PURE)
    code = f"import sys, {modules}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded = set(result.stdout.split())
    assert "events.incident" in loaded and "events.chain" in loaded
    assert violations(loaded) == set()


# The foreign-format parsers are pure too: bytes in, observations out, nothing else touched.
FORMATS = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "services/formats").glob("*.py"))
IO_ROOTS = {
    "nats",
    "faststream",
    "duckdb",
    "asyncio",
    "socket",
    "litestar",
    "uvicorn",
    "httpx",
    "typer",
    "rich",
    "projections",
}
# What a pure parser may use from the service layer: the error vocabulary and its own room.
PURE_SERVICES = ("services.errors", "services.formats")


def io_imports(modules: set[str]) -> set[str]:
    return {
        name
        for name in modules
        if name.split(".")[0] in IO_ROOTS
        or any(name == bad or name.startswith(f"{bad}.") for bad in FORBIDDEN_MODULES)
        or (
            name.split(".")[0] == "services"
            and name != "services"
            and not name.startswith(PURE_SERVICES)
        )
    }


@pytest.mark.parametrize("path", FORMATS)
def test_format_parsers_import_nothing_impure(path: str) -> None:
    source = (ROOT / path).read_text(encoding="utf-8")
    modules = imported_modules(source, path.removesuffix(".py").replace("/", "."))
    assert io_imports(modules) == set(), path


def test_format_parsers_and_errors_load_no_io_library_transitively() -> None:
    names = [p.removesuffix(".py").replace("/", ".") for p in FORMATS if "__init__" not in p]
    code = f"import sys, {', '.join(names)}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    loaded = set(result.stdout.split())
    assert "services.formats.pagerduty" in loaded
    assert {name for name in loaded if name.split(".")[0] in IO_ROOTS} == set()


def _modules_under(package: str) -> list[Path]:
    return sorted((ROOT / package.replace(".", "/")).rglob("*.py"))


@pytest.mark.parametrize(
    ("entry", "other"), [("services.api", "services.cli"), ("services.cli", "services.api")]
)
def test_entry_points_never_import_each_other(entry: str, other: str) -> None:
    """The HTTP app and the command line are two doors into the same service layer."""
    for path in _modules_under(entry):
        module = str(path.relative_to(ROOT).with_suffix("")).replace("/", ".")
        imported = imported_modules(path.read_text(encoding="utf-8"), module)
        crossing = {name for name in imported if name == other or name.startswith(other + ".")}
        assert crossing == set(), f"{module} imports {crossing}"


def test_service_layer_knows_no_transport() -> None:
    """Command handling, correlation and intake rules know no HTTP, CLI or NATS intake."""
    transports = {"litestar", "uvicorn", "typer", "rich", "httpx", "faststream"}
    for path in _modules_under("services.write"):
        module = str(path.relative_to(ROOT).with_suffix("")).replace("/", ".")
        imported = imported_modules(path.read_text(encoding="utf-8"), module)
        bad = {
            name
            for name in imported
            if name.split(".")[0] in transports
            or name.startswith(("services.api", "services.cli", "services.nats_intake"))
        }
        assert bad == set(), f"{module} imports {bad}"
