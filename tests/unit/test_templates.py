"""Comms templates: the policy file's section (parsed, checked at load) and rendering from an
incident folded from events, in the sandboxed environment."""

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from events.incident import Incident, fold
from events.policy import DEFAULT_POLICY, PolicyError, load_policy, parse_policy
from events.schema import (
    Audience,
    Channel,
    CommsKind,
    Impact,
    IncidentDeclared,
    IncidentResolved,
    IncidentRoleAssigned,
    IncidentStatusChanged,
    Role,
    Severity,
    Source,
    Status,
)
from events.templates import (
    DEFAULT_TEMPLATES,
    CommsTemplate,
    TemplateError,
    parse_templates,
    variables_of,
)
from services.errors import ErrorKind, ServiceError
from services.write.comms import BUILT_IN, impact_summary, render, variables

T0 = datetime(2026, 11, 10, 14, 23, tzinfo=UTC)
NOW = T0 + timedelta(minutes=15)
DUE = T0 + timedelta(minutes=30)


def _envelope(n: int, minutes: int = 0) -> dict[str, Any]:
    return {
        "event_id": f"e{n}",
        "incident_id": "INC-TPL",
        "occurred_at": T0 + timedelta(minutes=minutes),
        "actor": "alice@example.com",
        "source": Source.CLI,
    }


def _incident(*, impact: Impact | None = None, resolved: bool = False) -> Incident:
    events: list[Any] = [
        IncidentDeclared(
            **_envelope(1),
            title="API gateway down",
            severity=Severity.P0,
            services=("api-gateway", "auth"),
            impact=impact,
        ),
        IncidentRoleAssigned(**_envelope(2), role=Role.COMMANDER, person="alice"),
        IncidentStatusChanged(**_envelope(3, 5), status=Status.IDENTIFIED),
    ]
    if resolved:
        events.append(IncidentResolved(**_envelope(4, 29)))
    return fold(events)


def _template(text: str, name: str = "t") -> CommsTemplate:
    return CommsTemplate(name=name, audience=Audience.INTERNAL, kind=CommsKind.UPDATE, text=text)


def _render(text: str, state: Incident | None = None, **extras: str) -> str:
    values = variables(state or _incident(), NOW, DUE, "http://x/incidents/INC-TPL") | extras
    return render(_template(text), values)


def test_the_default_initial_message_reads_like_the_runbooks() -> None:
    impact = Impact(users_affected_pct=100.0, regions=("eu-west-1",), text="All users locked out")
    state = _incident(impact=impact)
    values = variables(state, NOW, DUE, None) | {"bridge": "#incident-001"}
    message = render(DEFAULT_TEMPLATES["initial"], values)
    assert message.splitlines() == [
        "🚨 INCIDENT DETECTED: API gateway down",
        "Severity: P0",
        "Service: api-gateway, auth",
        "Impact: All users locked out (100% of users; regions eu-west-1)",
        "Detected: 2026-11-10 14:23:00Z",
        "Status: IDENTIFIED",
        "Incident Commander: alice",
        "Incident: INC-TPL",
        "War room: #incident-001",
        "",
        "Next update: 2026-11-10 14:53:00Z",
    ]


def test_optional_extras_appear_only_when_given() -> None:
    state = _incident(resolved=True)
    plain = render(DEFAULT_TEMPLATES["resolution"], variables(state, NOW, None, None))
    assert "Root cause" not in plain and "Duration: 29m 00s" in plain
    assert "Resolved: 2026-11-10 14:52:00Z" in plain
    told = variables(state, NOW, None, None) | {"cause": "pool exhausted", "fix": "rollback"}
    full = render(DEFAULT_TEMPLATES["resolution"], told)
    assert "Root cause: pool exhausted\nResolution: rollback\nUser impact:" in full


@pytest.mark.parametrize("name", sorted(DEFAULT_TEMPLATES))
def test_every_default_renders_with_a_promise_and_no_extras(name: str) -> None:
    template = DEFAULT_TEMPLATES[name]
    message = render(template, variables(_incident(), NOW, DUE, None))
    assert message and "None" not in message, message
    assert variables_of(template.text) - BUILT_IN <= {
        "cause",
        "fix",
        "actions",
        "next_steps",
        "eta",
        "workaround",
        "status_url",
        "bridge",
    }


def test_a_missing_promise_names_next_update_at() -> None:
    values = variables(_incident(), NOW, None, None)
    with pytest.raises(ServiceError) as caught:
        render(DEFAULT_TEMPLATES["initial"], values)
    assert (caught.value.kind, caught.value.field) == (ErrorKind.INVALID, "next_update_at")
    assert "template initial uses next_update" in caught.value.detail


def test_a_missing_extra_is_named_with_its_template() -> None:
    with pytest.raises(ServiceError) as caught:
        _render("Workaround: {{ workaround }}")
    assert caught.value.field == "vars.workaround"
    assert caught.value.detail == "template t uses workaround, which is not set: give it in vars"
    assert _render("Workaround: {{ workaround }}", workaround="use v1") == "Workaround: use v1"


@pytest.mark.parametrize(
    "text",
    [
        "{{ title.__class__.__mro__ }}",  # the sandbox refuses, the message says so
        "{{ impact.nope }}",
        "{{ title + 1 }}",
        "{% for i in range(10**7) %}{% endfor %}",
        "{% if false %}x{% endif %}   ",  # nothing to send
    ],
)
def test_template_failures_are_invalid_requests_naming_the_template(text: str) -> None:
    with pytest.raises(ServiceError) as caught:
        _render(text)
    assert (caught.value.kind, caught.value.field) == (ErrorKind.INVALID, "template")
    assert "template t" in caught.value.detail


def test_unknown_facts_print_as_nothing_and_roles_are_variables() -> None:
    assert _render("[{{ scribe }}] [{{ commander }}] [{{ acknowledged_at }}]") == "[] [alice] []"
    assert _render("{{ impact_summary }} / {{ impact.text }}.") == "not stated yet / ."


def test_the_variables_are_the_documented_built_ins() -> None:
    assert set(variables(_incident(), NOW, DUE, None)) == BUILT_IN


def test_impact_summary_lists_what_is_known() -> None:
    impact = Impact(
        customers=("acme",),
        customers_affected=120,
        data_loss=False,
        security=True,
        revenue_at_risk=5000,
    )
    assert impact_summary(impact) == (
        "120 customers; customers acme; no data loss; security impact; revenue at risk 5000"
    )


def test_a_file_overlays_defaults_and_adds_templates() -> None:
    document = {
        "initial": {"channel": "war_room"},
        "exec_brief": {
            "audience": "executives",
            "kind": "update",
            "channel": "email",
            "text": "{{ title }}: {{ status }}",
        },
    }
    templates = parse_templates(document)
    assert templates["initial"].channel is Channel.WAR_ROOM
    assert templates["initial"].text == DEFAULT_TEMPLATES["initial"].text
    assert templates["exec_brief"].audience is Audience.EXECUTIVES
    assert set(DEFAULT_TEMPLATES) < set(templates)
    assert DEFAULT_TEMPLATES["initial"].channel is Channel.SLACK  # the defaults stay as they were


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"x": {"kind": "update", "text": "hi"}}, "templates.x: a new template needs audience"),
        ({"initial": {"audince": "internal"}}, "templates.initial.audince: unknown key"),
        ({"initial": {"channel": "twitter"}}, "templates.initial.channel: not a channel"),
        ({"initial": {"text": "{% if %}"}}, "templates.initial.text: not a valid jinja2"),
        ({"initial": {"text": "{{ title | nosuch }}"}}, "No filter named 'nosuch'"),
        ({"initial": {"text": "  "}}, "templates.initial.text: expected the template's text"),
        ({"bad name": {"text": "x"}}, "templates.bad name: a template name"),
        ({"initial": "text"}, "templates.initial: expected a table"),
    ],
)
def test_a_bad_section_is_refused_naming_the_template(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(TemplateError) as caught:
        parse_templates(document)
    assert message in str(caught.value)


def test_the_policy_file_carries_templates_and_refuses_one_that_does_not_parse(
    tmp_path: Path,
) -> None:
    assert DEFAULT_POLICY.templates == dict(DEFAULT_TEMPLATES)
    good = tmp_path / "policy.toml"
    good.write_text(
        '[templates.status]\naudience = "status_page"\nkind = "update"\n'
        'channel = "status_page"\ntext = """\n{{ title }} is {{ status }}.\n"""\n'
    )
    policy = load_policy(good)
    assert policy.templates["status"].kind is CommsKind.UPDATE
    assert "initial" in policy.templates
    bad = tmp_path / "bad.yaml"
    bad.write_text("templates:\n  initial:\n    text: '{{ title '\n")
    with pytest.raises(PolicyError, match=r"bad.yaml: templates.initial.text: not a valid"):
        load_policy(bad)
    with pytest.raises(PolicyError, match="templates: expected a table"):
        parse_policy({"templates": ["initial"]}, "v")
