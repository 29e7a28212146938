"""The severity policy: response targets per severity (DESIGN 8), the default table and its loader.

Pure apart from `load_policy`, which reads the one file it is given. Breach queries
(`projections/breaches.py`) judge incidents against these targets; a `None` target is never missed.
"""

import hashlib
import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec
import yaml
from msgspec import Struct

from events.durations import parse_duration
from events.schema import Severity

_MIN: Final = 60.0
_HOUR: Final = 3600.0
_DAY: Final = 86400.0


class PolicyError(ValueError):
    """A policy file that cannot be used; the message names the severity and field."""


class Targets(Struct, frozen=True, kw_only=True):
    """Seconds allowed for each obligation; None: no target."""

    ack_s: float | None = None
    first_comms_s: float | None = None
    update_s: float | None = None
    resolve_s: float | None = None
    postmortem_s: float | None = None


NO_TARGETS: Final = Targets()


class Policy(Struct, frozen=True, kw_only=True):
    targets: dict[Severity, Targets]
    version: str

    def for_severity(self, severity: Severity | str) -> Targets:
        return self.targets.get(Severity(severity), NO_TARGETS)


DEFAULT_POLICY: Final = Policy(
    version="default-1",
    targets={
        Severity.P0: Targets(
            ack_s=5 * _MIN,
            first_comms_s=15 * _MIN,
            update_s=15 * _MIN,
            resolve_s=2 * _HOUR,
            postmortem_s=24 * _HOUR,
        ),
        Severity.P1: Targets(
            ack_s=15 * _MIN,
            first_comms_s=15 * _MIN,
            update_s=30 * _MIN,
            resolve_s=8 * _HOUR,
            postmortem_s=48 * _HOUR,
        ),
        Severity.P2: Targets(
            ack_s=1 * _HOUR,
            first_comms_s=1 * _HOUR,
            update_s=60 * _MIN,
            resolve_s=24 * _HOUR,
            postmortem_s=5 * _DAY,
        ),
        # DESIGN's "update: end of day" becomes 24 h: a clock-free rule that needs no team time
        # zone or working hours, and never asks for more than one update per day.
        Severity.P3: Targets(ack_s=4 * _HOUR, update_s=24 * _HOUR, resolve_s=5 * _DAY),
        Severity.P4: NO_TARGETS,
    },
)

# Field names in files are the Targets fields without the `_s` suffix ("ack", "update", ...).
FIELDS: Final = tuple(name.removesuffix("_s") for name in Targets.__struct_fields__)
_NONE_WORDS: Final = frozenset({"none", "off", "-"})


def _target(value: object, where: str) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        return None
    if isinstance(value, bool):  # bool is an int: `ack = true` means nothing here
        raise PolicyError(f"{where}: expected a duration or 'none', got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            raise PolicyError(f"{where}: {exc}") from None
    else:
        raise PolicyError(f"{where}: expected a duration or 'none', got {value!r}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise PolicyError(f"{where}: a target must be a positive duration, got {value!r}")
    return seconds


def parse_policy(document: object, version: str, base: Policy = DEFAULT_POLICY) -> Policy:
    """Overlay a decoded document (`{"P1": {"ack": "10m"}, "version": "..."}`) on `base`.

    Severities and fields the document leaves out keep `base`'s targets.
    """
    if not isinstance(document, Mapping):
        raise PolicyError("a policy is a table of severities (P0..P4), each a table of targets")
    targets = dict(base.targets)
    for key, fields in document.items():
        if key == "version":
            if not isinstance(fields, str | int | float) or isinstance(fields, bool):
                raise PolicyError(f"version: expected text, got {fields!r}")
            version = str(fields)
            continue
        try:
            severity = Severity(str(key).upper())
        except ValueError:
            raise PolicyError(f"{key}: not a severity (use P0..P4, and 'version')") from None
        if not isinstance(fields, Mapping):
            raise PolicyError(f"{severity}: expected a table of targets, got {fields!r}")
        changes: dict[str, Any] = {}
        for name, value in fields.items():
            field = str(name).removesuffix("_s")
            if field not in FIELDS:
                raise PolicyError(f"{severity}.{name}: unknown target (use {', '.join(FIELDS)})")
            changes[f"{field}_s"] = _target(value, f"{severity}.{name}")
        current = targets.get(severity, NO_TARGETS)
        targets[severity] = msgspec.structs.replace(current, **changes)
    return Policy(targets=targets, version=version)


def load_policy(path: Path | str | None) -> Policy:
    """The policy in a TOML (.toml) or YAML (.yaml, .yml) file over the defaults; None: defaults.

    The version is the file's own `version` key, else the file name and a digest of its bytes,
    so reports name the policy they were judged against.
    """
    if path is None:
        return DEFAULT_POLICY
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            document: object = tomllib.loads(data.decode())
        elif suffix in (".yaml", ".yml"):
            document = yaml.safe_load(data) or {}
        else:
            raise PolicyError(f"{path}: policy files end in .toml, .yaml or .yml")
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise PolicyError(f"{path}: not valid {suffix.lstrip('.').upper()}: {exc}") from exc
    version = f"{path.name}@{hashlib.sha256(data).hexdigest()[:12]}"
    try:
        return parse_policy(document, version)
    except PolicyError as exc:
        raise PolicyError(f"{path}: {exc}") from None
