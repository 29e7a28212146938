"""The scale-out files are valid for the tools that read them (no Docker engine runs here),
and the services compose starts can start as configured (tests/integration/test_cluster.py
runs them)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from deploy_support import COMPOSE, DEPLOY, NATS_CONF, PASSWORDS, compose, environment

from services.api import intake
from services.auth import Role, Tokens, new_token, token_entry
from services.bootstrap import check_exposure
from services.config import Config, ConfigError, ServiceRole

BIN = Path(sys.executable).parent
AMTOOL = shutil.which("amtool")
PROMTOOL = shutil.which("promtool")


def test_compose_file_follows_the_compose_spec() -> None:
    result = subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cluster_nats_config_is_valid_for_nats_server() -> None:
    env = {**os.environ, "SERVER_NAME": "nats-1", **PASSWORDS}
    result = subprocess.run(
        [BIN / "nats-server", "-t", "-c", NATS_CONF],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout + result.stderr


def test_compose_runs_the_nats_server_version_the_tests_run() -> None:
    version = subprocess.run(
        [BIN / "nats-server", "--version"], capture_output=True, text=True, check=True
    ).stdout.split()[-1]
    for name in ("nats-1", "nats-2", "nats-3"):
        assert compose()["services"][name]["image"] == f"nats:{version.lstrip('v')}-alpine"


def _tokens_file(tmp_path: Path) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(token_entry("ops", Role.ADMIN, new_token()))
    return path


def _secret_path(service: str, variable: str) -> Path:
    """The host file behind the secret that `variable` of `service` names."""
    services, secrets = compose()["services"], compose()["secrets"]
    mounted = environment(service)[variable]
    assert mounted.startswith("/run/secrets/"), mounted
    name = mounted.removeprefix("/run/secrets/")
    assert name in services[service]["secrets"]
    return COMPOSE.parent / str(secrets[name]["file"])


@pytest.mark.parametrize(
    ("service", "role"), [("incidents", ServiceRole.ALL), ("incidents-api", ServiceRole.API)]
)
def test_the_incidents_services_start_as_compose_configures_them(
    service: str, role: ServiceRole, tmp_path: Path
) -> None:
    env = environment(service)
    config = Config.from_env(env)
    assert config.role is role
    assert config.replicas == 3
    assert config.http_host == "0.0.0.0"  # in a container: published through its port
    # Bound to 0.0.0.0, the service starts only with its tokens file: the secret gives it one.
    assert config.tokens_file is not None
    assert _secret_path(service, "INCIDENTS_TOKENS_FILE").parent == DEPLOY / "secrets"
    check_exposure(config, Tokens.load(_tokens_file(tmp_path)))
    with pytest.raises(ConfigError, match="INCIDENTS_TOKENS_FILE"):
        check_exposure(config, Tokens.load(None))


def test_only_the_projector_and_query_replica_keeps_its_duckdb_file() -> None:
    services = compose()["services"]
    query, api = services["incidents"], services["incidents-api"]
    assert [v for v in query["volumes"] if v.endswith(":/data")] == ["incidents-data:/data"]
    assert "volumes" not in api
    assert api["tmpfs"] == ["/data"]
    assert api["deploy"]["replicas"] == 2
    assert query.get("deploy", {}).get("replicas", 1) == 1


def test_alertmanager_feeds_the_webhook_of_the_api_replicas() -> None:
    services = compose()["services"]
    config = yaml.safe_load((DEPLOY / "alertmanager" / "alertmanager.yml").read_text())
    (receiver,) = config["receivers"]
    assert config["route"]["receiver"] == receiver["name"]
    (webhook,) = receiver["webhook_configs"]
    url = urlsplit(webhook["url"])
    assert url.hostname == "incidents-api"
    assert Config.from_env(environment("incidents-api")).http_port == url.port
    assert url.path in {path for route in intake.ROUTES for path in route.paths}
    assert webhook["max_alerts"] <= 1000  # the service refuses bigger deliveries (413)
    # The token comes from a secret mounted into the alertmanager container.
    token_file = webhook["http_config"]["authorization"]["credentials_file"]
    secret = token_file.removeprefix("/run/secrets/")
    assert secret in services["alertmanager"]["secrets"]
    assert services["alertmanager"]["profiles"] == ["monitoring"]


def test_prometheus_scrapes_the_query_replica_and_alerts_through_alertmanager() -> None:
    services = compose()["services"]
    config = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    (target,) = job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert Config.from_env(environment(host)).role is ServiceRole.ALL
    assert Config.from_env(environment(host)).http_port == int(port)
    (alerting,) = config["alerting"]["alertmanagers"]
    assert alerting["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert "alertmanager" in services
    assert services["prometheus"]["profiles"] == ["monitoring"]


@pytest.mark.skipif(AMTOOL is None, reason="no amtool (apt-get install prometheus-alertmanager)")
def test_alertmanager_config_passes_amtool() -> None:
    assert AMTOOL is not None
    config = DEPLOY / "alertmanager" / "alertmanager.yml"
    result = subprocess.run([AMTOOL, "check-config", config], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(PROMTOOL is None, reason="no promtool (apt-get install prometheus)")
def test_prometheus_config_and_rules_pass_promtool() -> None:
    assert PROMTOOL is not None
    config = DEPLOY / "prometheus" / "prometheus.yml"
    result = subprocess.run([PROMTOOL, "check", "config", config], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 rule files found" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("value", "role"), [("api", ServiceRole.API), ("ALL", ServiceRole.ALL), ("", ServiceRole.ALL)]
)
def test_the_role_comes_from_incidents_role(value: str, role: ServiceRole) -> None:
    assert Config.from_env({"INCIDENTS_ROLE": value}).role is role


def test_an_unknown_role_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match=r"INCIDENTS_ROLE='query': expected all or api"):
        Config.from_env({"INCIDENTS_ROLE": "query"})
