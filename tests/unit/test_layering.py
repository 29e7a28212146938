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
    "events/chain.py",
    "events/policy.py",
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
        "from services.app import build",
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
