"""The policy: response targets per severity (DESIGN 8), how alerts map to severities and
categories, when alerts resolve their incident; the defaults and the file loader.

Pure apart from `load_policy`, which reads the one file it is given. Breach queries
(`projections/breaches.py`) judge incidents against the targets (a `None` target is never
missed); correlation (`services/write/correlation.py`) reads the alert rules and `auto_resolve`.
"""

import hashlib
import math
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec
import yaml
from msgspec import Struct

from events.aliases import DEFAULT_SEVERITY_ALIASES, canonical_severity, parse_severity_aliases
from events.durations import parse_duration
from events.escalation import (
    DEFAULT_ESCALATION,
    EscalationPolicy,
    parse_escalation,
)
from events.notifications import (
    NO_NOTIFICATIONS,
    Notifications,
    parse_notifications,
)
from events.schema import Category, Severity
from events.teams import parse_teams
from events.templates import DEFAULT_TEMPLATES, CommsTemplate, parse_templates

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
    # The postmortem review meeting, from the postmortem's first publication (issue 13).
    review_s: float | None = None


NO_TARGETS: Final = Targets()


_CATEGORY_NAMES: Final = frozenset(c.value for c in Category)


class AlertRules(Struct, frozen=True, kw_only=True):
    """How a monitor's labels map to a severity and a category (DESIGN 7), as data.

    A `priority` label P0..P4 (any case) wins; else the `severity` label's value through
    `severities` (case-insensitive); else `default_severity`. The category is the first of
    `category_labels` whose value is a category name or a key of `categories`.
    """

    priority_label: str = "priority"
    severity_label: str = "severity"
    severities: dict[str, Severity] = msgspec.field(
        default_factory=lambda: {
            "critical": Severity.P1,
            "error": Severity.P2,
            "high": Severity.P2,
            "warning": Severity.P3,
            "info": Severity.P4,
        }
    )
    default_severity: Severity = Severity.P3
    category_labels: tuple[str, ...] = ("category", "team")
    categories: dict[str, Category] = msgspec.field(
        default_factory=lambda: {
            "infra": Category.INFRASTRUCTURE,
            "platform": Category.INFRASTRUCTURE,
            "network": Category.INFRASTRUCTURE,
            "sre": Category.INFRASTRUCTURE,
            "database": Category.DATA,
            "db": Category.DATA,
            "dba": Category.DATA,
            "secops": Category.SECURITY,
            "vendor": Category.EXTERNAL,
            "third_party": Category.EXTERNAL,
        }
    )
    default_category: Category = Category.APPLICATION
    # The policy's `severity_aliases` (copied by `parse_policy`): labels say `SEV-1` too.
    severity_aliases: dict[str, Severity] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_ALIASES)
    )

    def severity(self, labels: Mapping[str, str]) -> tuple[Severity, str | None]:
        """The severity and the raw label value it came from."""
        priority = labels.get(self.priority_label)
        named = canonical_severity(priority, self.severity_aliases) if priority else None
        if named is not None:
            return named, priority
        raw = labels.get(self.severity_label)
        mapped = self.severities.get((raw or "").strip().lower())
        if mapped is None and raw:
            mapped = canonical_severity(raw, self.severity_aliases)
        return mapped or self.default_severity, raw

    def category(self, labels: Mapping[str, str]) -> Category:
        for name in self.category_labels:
            value = labels.get(name, "").strip().lower()
            if value in _CATEGORY_NAMES or value in self.categories:
                return self.categories.get(value) or Category(value)
        return self.default_category


DEFAULT_ALERT_RULES: Final = AlertRules()


class Policy(Struct, frozen=True, kw_only=True):
    targets: dict[Severity, Targets]
    version: str
    alerts: AlertRules = DEFAULT_ALERT_RULES
    # Severities at which an incident opened by alerts resolves itself once all its alerts
    # have resolved (`auto_resolve = "alerts"`); the others wait for a person ("never").
    auto_resolve: frozenset[Severity] = frozenset(Severity)
    # Escalation paths per severity (`[escalation]`, events.escalation): runbook 002's.
    escalation: EscalationPolicy = DEFAULT_ESCALATION
    # Comms templates by name (`[templates.NAME]`, events.templates): the runbooks' by default.
    templates: dict[str, CommsTemplate] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_TEMPLATES)
    )
    # Where the notifier delivers what (`[notifications]`, events.notifications): no routes.
    notifications: Notifications = NO_NOTIFICATIONS
    # Words for severities (`[severity_aliases]`, events.aliases): SEV-n = P(n-1) by default.
    severity_aliases: dict[str, Severity] = msgspec.field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_ALIASES)
    )
    # Service -> team (`[teams]`, events.teams), for metrics by team.
    teams: dict[str, str] = msgspec.field(default_factory=dict)

    def for_severity(self, severity: Severity | str) -> Targets:
        return self.targets.get(Severity(severity), NO_TARGETS)


# Runbook 002: "schedule postmortem review (within 1 week)", for every severity that has a
# postmortem (runbook 004's "meeting within 48 hours" is `review = "48h"` in a policy file).
_REVIEW_S: Final = 7 * _DAY

DEFAULT_POLICY: Final = Policy(
    version="default-1",
    targets={
        Severity.P0: Targets(
            ack_s=5 * _MIN,
            first_comms_s=15 * _MIN,
            update_s=15 * _MIN,
            resolve_s=2 * _HOUR,
            postmortem_s=24 * _HOUR,
            review_s=_REVIEW_S,
        ),
        Severity.P1: Targets(
            ack_s=15 * _MIN,
            first_comms_s=15 * _MIN,
            update_s=30 * _MIN,
            resolve_s=8 * _HOUR,
            postmortem_s=48 * _HOUR,
            review_s=_REVIEW_S,
        ),
        Severity.P2: Targets(
            ack_s=1 * _HOUR,
            first_comms_s=1 * _HOUR,
            update_s=60 * _MIN,
            resolve_s=24 * _HOUR,
            postmortem_s=5 * _DAY,
            review_s=_REVIEW_S,
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


_AUTO_RESOLVE: Final = {"alerts": True, "never": False}


def _auto_resolve(value: object, where: str) -> bool:
    if not isinstance(value, str) or value.strip().lower() not in _AUTO_RESOLVE:
        raise PolicyError(f"{where}: expected 'alerts' or 'never', got {value!r}")
    return _AUTO_RESOLVE[value.strip().lower()]


def _severity(value: object, where: str) -> Severity:
    try:
        return Severity(str(value).strip().upper())
    except ValueError:
        raise PolicyError(f"{where}: not a severity (use P0..P4), got {value!r}") from None


def _category(value: object, where: str) -> Category:
    try:
        return Category(str(value).strip().lower())
    except ValueError:
        names = ", ".join(c.value for c in Category)
        raise PolicyError(f"{where}: not a category (use {names}), got {value!r}") from None


def _table(value: object, where: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise PolicyError(f"{where}: expected a table, got {value!r}")
    return value


def _label(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise PolicyError(f"{where}: expected a label name, got {value!r}")
    return value.strip()


def _alert_rules(document: object, base: AlertRules) -> AlertRules:
    """`[alerts]`: label names, `severities` and `categories` tables (merged over the base's:
    a value maps a label value, lower case), defaults, `category_labels` (a list)."""
    changes: dict[str, Any] = {}
    for key, value in _table(document, "alerts").items():
        where = f"alerts.{key}"
        if key in ("priority_label", "severity_label"):
            changes[key] = _label(value, where)
        elif key == "severities":
            mapped = {
                str(k).lower(): _severity(v, f"{where}.{k}")
                for k, v in _table(value, where).items()
            }
            changes[key] = {**base.severities, **mapped}
        elif key == "categories":
            mapped_c = {
                str(k).lower(): _category(v, f"{where}.{k}")
                for k, v in _table(value, where).items()
            }
            changes[key] = {**base.categories, **mapped_c}
        elif key == "default_severity":
            changes[key] = _severity(value, where)
        elif key == "default_category":
            changes[key] = _category(value, where)
        elif key == "category_labels":
            if not isinstance(value, list):
                raise PolicyError(f"{where}: expected a list of label names, got {value!r}")
            changes[key] = tuple(_label(v, where) for v in value)
        else:
            known = "priority_label, severity_label, severities, default_severity, " + (
                "category_labels, categories, default_category"
            )
            raise PolicyError(f"{where}: unknown key (use {known})")
    return msgspec.structs.replace(base, **changes)


# The sections their own modules parse: key (also the `Policy` field) -> parser(document, base).
_SECTIONS: Final[dict[str, Callable[[Any, Any], Any]]] = {
    "escalation": parse_escalation,
    "notifications": parse_notifications,
    "templates": parse_templates,
    "severity_aliases": parse_severity_aliases,
    "teams": parse_teams,
}


def parse_policy(document: object, version: str, base: Policy = DEFAULT_POLICY) -> Policy:
    """Overlay a decoded document (`{"P1": {"ack": "10m"}, "version": "..."}`) on `base`.

    Severities and fields the document leaves out keep `base`'s targets. Besides severity
    tables: `version`, `auto_resolve` ("alerts" or "never", for every severity; a severity's
    own `auto_resolve` wins) and `[alerts]` (`AlertRules`).
    """
    if not isinstance(document, Mapping):
        raise PolicyError("a policy is a table of severities (P0..P4), each a table of targets")
    targets = dict(base.targets)
    alerts = base.alerts
    sections: dict[str, Any] = {key: getattr(base, key) for key in _SECTIONS}
    resolving = set(base.auto_resolve)
    if "auto_resolve" in document:
        everywhere = _auto_resolve(document["auto_resolve"], "auto_resolve")
        resolving = set(Severity) if everywhere else set()
    for key, fields in document.items():
        if key == "version":
            if not isinstance(fields, str | int | float) or isinstance(fields, bool):
                raise PolicyError(f"version: expected text, got {fields!r}")
            version = str(fields)
            continue
        if key == "auto_resolve":
            continue
        if key == "alerts":
            alerts = _alert_rules(fields, alerts)
            continue
        if key in _SECTIONS:
            try:
                sections[key] = _SECTIONS[key](fields, sections[key])
            except ValueError as exc:  # each module's own error, naming the key
                raise PolicyError(str(exc)) from None
            continue
        try:
            severity = Severity(str(key).upper())
        except ValueError:
            raise PolicyError(
                f"{key}: not a severity (use P0..P4, 'version', 'auto_resolve', 'alerts', "
                f"{', '.join(repr(k) for k in _SECTIONS)})"
            ) from None
        if not isinstance(fields, Mapping):
            raise PolicyError(f"{severity}: expected a table of targets, got {fields!r}")
        changes: dict[str, Any] = {}
        for name, value in fields.items():
            if name == "auto_resolve":
                on = _auto_resolve(value, f"{severity}.auto_resolve")
                (resolving.add if on else resolving.discard)(severity)
                continue
            field = str(name).removesuffix("_s")
            if field not in FIELDS:
                raise PolicyError(
                    f"{severity}.{name}: unknown target (use {', '.join(FIELDS)}, auto_resolve)"
                )
            changes[f"{field}_s"] = _target(value, f"{severity}.{name}")
        current = targets.get(severity, NO_TARGETS)
        targets[severity] = msgspec.structs.replace(current, **changes)
    return Policy(
        targets=targets,
        version=version,
        alerts=msgspec.structs.replace(alerts, severity_aliases=sections["severity_aliases"]),
        auto_resolve=frozenset(resolving),
        **sections,
    )


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
