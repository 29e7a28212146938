"""Comms templates as data (the policy file's `[templates.NAME]` tables): the defaults, adapted
from the runbooks' own, and the parser that checks every template compiles when the policy loads.

Pure. `ENVIRONMENT` is the one jinja2 environment templates are compiled and rendered in
(`services.write.comms` renders): sandboxed, strict about undefined variables, no HTML escaping
(messages are plain text for Slack, e-mail, status pages).
"""

import re
from collections.abc import Mapping
from typing import Any, Final

import msgspec
from jinja2 import StrictUndefined, TemplateSyntaxError, meta
from jinja2.sandbox import SandboxedEnvironment
from msgspec import Struct

from events.schema import MAX_TEXT
from events.vocabulary import Audience, Channel, CommsKind


class TemplateError(ValueError):
    """A templates section that cannot be used; the message names the template and key."""


def _blank(value: Any) -> Any:
    # An unknown fact (no commander yet) is None: it prints as nothing, never as "None".
    return "" if value is None else value


# Block tags on their own lines leave no blank lines behind (trim_blocks, lstrip_blocks), so
# `{% if cause is defined %}` can sit on a line of its own in a message.
ENVIRONMENT: Final = SandboxedEnvironment(
    undefined=StrictUndefined,
    autoescape=False,
    trim_blocks=True,
    lstrip_blocks=True,
    finalize=_blank,
)

NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


class CommsTemplate(Struct, frozen=True, kw_only=True):
    """A message for one audience, its kind and default channel; `text` is jinja2 source."""

    name: str
    audience: Audience
    kind: CommsKind
    channel: Channel | None = None
    text: str


def variables_of(text: str) -> frozenset[str]:
    """The variables a template reads (those it only tests with `is defined` included)."""
    return frozenset(meta.find_undeclared_variables(ENVIRONMENT.parse(text)))


# Adapted from the runbooks' communication templates: 002 "Initial Incident Notification",
# "Status Update Template", "Resolution Notification" and "Customer Communication"; 001's
# initial/update/resolution (severity, detection, commander, duration); 003's Slack template
# (impact, next update); 004's P0 updates and resolution announcement. Bracketed blanks became
# the incident's fields; what only people know (root cause, fix, workaround) comes from
# `--set` extras and is left out while not given.
_INITIAL: Final = """\
🚨 INCIDENT DETECTED: {{ title }}
Severity: {{ severity }}
Service: {{ services or "not stated" }}
Impact: {{ impact_summary }}
Detected: {{ detected_at }}
Status: {{ status | upper }}
Incident Commander: {{ commander or "not assigned yet" }}
Incident: {{ incident_id }}
{% if url %}
Page: {{ url }}
{% endif %}
{% if bridge is defined %}
War room: {{ bridge }}
{% endif %}

Next update: {{ next_update }}
"""
_UPDATE: Final = """\
📊 INCIDENT UPDATE: {{ title }}
Time: {{ now }}
Severity: {{ severity }}
Status: {{ status | upper }} (phase: {{ phase }})
Duration: {{ duration }}
Current impact: {{ impact_summary }}
{% if actions is defined %}
Actions taken: {{ actions }}
{% endif %}
{% if next_steps is defined %}
Next steps: {{ next_steps }}
{% endif %}
{% if eta is defined %}
ETA: {{ eta }}
{% endif %}
Incident Commander: {{ commander or "not assigned yet" }}

Next update: {{ next_update }}
"""
_RESOLUTION: Final = """\
✅ INCIDENT RESOLVED: {{ title }}
Severity: {{ severity }}
Resolved: {{ resolved_at or "not yet" }}
Duration: {{ duration }}
{% if cause is defined %}
Root cause: {{ cause }}
{% endif %}
{% if fix is defined %}
Resolution: {{ fix }}
{% endif %}
User impact: {{ impact_summary }}
Follow-up: a postmortem will follow{% if url %} ({{ url }}){% endif %}.
"""
_CUSTOMER_INITIAL: Final = """\
Subject: Service disruption: {{ services or title }}

We are currently experiencing issues with {{ services or "our service" }}.
Our team is actively working on a resolution.
{% if impact.text %}

Impact: {{ impact.text }}
{% endif %}
{% if workaround is defined %}
Workaround: {{ workaround }}
{% endif %}
{% if status_url is defined %}
Updates: {{ status_url }}
{% endif %}

Next update: {{ next_update }}
"""
_CUSTOMER_UPDATE: Final = """\
{{ services or title }}: {{ status | capitalize }}

{% if status == "investigating" %}
We are still investigating the issue affecting {{ services or "our service" }}.
{% elif status == "monitoring" %}
A fix has been implemented and we are monitoring the results.
{% else %}
We have identified the issue and are implementing a fix.
{% endif %}
{% if eta is defined %}
ETA: {{ eta }}
{% endif %}

Next update: {{ next_update }}
"""
_CUSTOMER_RESOLUTION: Final = """\
Subject: Service restored: {{ services or title }}

The issue affecting {{ services or "our service" }} has been resolved.
All systems are now operating normally.

Duration: {{ impact_started_at or detected_at }} - {{ resolved_at or "ongoing" }}
{% if impact.text %}
Impact: {{ impact.text }}
{% endif %}

We apologize for any inconvenience.
"""


def _by_name(*templates: CommsTemplate) -> dict[str, CommsTemplate]:
    return {template.name: template for template in templates}


DEFAULT_TEMPLATES: Final[Mapping[str, CommsTemplate]] = _by_name(
    CommsTemplate(
        name="initial",
        audience=Audience.INTERNAL,
        kind=CommsKind.INITIAL,
        channel=Channel.SLACK,
        text=_INITIAL,
    ),
    CommsTemplate(
        name="update",
        audience=Audience.INTERNAL,
        kind=CommsKind.UPDATE,
        channel=Channel.SLACK,
        text=_UPDATE,
    ),
    CommsTemplate(
        name="resolution",
        audience=Audience.INTERNAL,
        kind=CommsKind.RESOLUTION,
        channel=Channel.SLACK,
        text=_RESOLUTION,
    ),
    CommsTemplate(
        name="customer_initial",
        audience=Audience.CUSTOMERS,
        kind=CommsKind.INITIAL,
        channel=Channel.EMAIL,
        text=_CUSTOMER_INITIAL,
    ),
    CommsTemplate(
        name="customer_update",
        audience=Audience.STATUS_PAGE,
        kind=CommsKind.UPDATE,
        channel=Channel.STATUS_PAGE,
        text=_CUSTOMER_UPDATE,
    ),
    CommsTemplate(
        name="customer_resolution",
        audience=Audience.CUSTOMERS,
        kind=CommsKind.RESOLUTION,
        channel=Channel.EMAIL,
        text=_CUSTOMER_RESOLUTION,
    ),
)

_KEYS: Final = ("audience", "kind", "channel", "text")
_ENUMS: Final[dict[str, type[Audience | CommsKind | Channel]]] = {
    "audience": Audience,
    "kind": CommsKind,
    "channel": Channel,
}


def _choice(key: str, value: object, where: str) -> Audience | CommsKind | Channel:
    enum = _ENUMS[key]
    try:
        return enum(str(value).strip().lower())
    except ValueError:
        names = ", ".join(member.value for member in enum)
        raise TemplateError(f"{where}: not a {key} (use {names}), got {value!r}") from None


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TemplateError(f"{where}: expected the template's text, got {value!r}")
    if len(value) > MAX_TEXT:
        raise TemplateError(f"{where}: longer than {MAX_TEXT} characters")
    try:
        ENVIRONMENT.from_string(value)  # parses and compiles: unknown filters fail here too
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"{where}: not a valid jinja2 template (line {exc.lineno}): {exc.message}"
        ) from None
    return value


def _template(name: str, fields: object, base: CommsTemplate | None) -> CommsTemplate:
    where = f"templates.{name}"
    if not isinstance(fields, Mapping):
        raise TemplateError(f"{where}: expected a table ({', '.join(_KEYS)}), got {fields!r}")
    changes: dict[str, Any] = {}
    for key, value in fields.items():
        if key not in _KEYS:
            raise TemplateError(f"{where}.{key}: unknown key (use {', '.join(_KEYS)})")
        if key == "text":
            changes[key] = _text(value, f"{where}.text")
        else:
            changes[key] = _choice(key, value, f"{where}.{key}")
    if base is not None:
        return msgspec.structs.replace(base, **changes)
    missing = [key for key in ("audience", "kind", "text") if key not in changes]
    if missing:
        raise TemplateError(f"{where}: a new template needs {', '.join(missing)}")
    return CommsTemplate(name=name, **changes)


def parse_templates(
    document: object, base: Mapping[str, CommsTemplate] = DEFAULT_TEMPLATES
) -> dict[str, CommsTemplate]:
    """`[templates]`: one table per template, overlaid on `base` (a default keeps what the file
    leaves out); a new name needs audience, kind and text. Every text must compile."""
    if not isinstance(document, Mapping):
        raise TemplateError(f"templates: expected a table of templates, got {document!r}")
    templates = dict(base)
    for name, fields in document.items():
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise TemplateError(f"templates.{name}: a template name is 1-64 of A-Z a-z 0-9 _ -")
        templates[name] = _template(name, fields, templates.get(name))
    return templates
