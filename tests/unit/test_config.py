"""Config.from_env and parse_duration: defaults, accepted forms, and errors naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.durations import parse_duration
from services.api.server import check_tls
from services.config import Config, ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90d", 90 * 86400.0),
        ("12h", 12 * 3600.0),
        ("30m", 1800.0),
        ("45s", 45.0),
        ("500ms", 0.5),
        ("2w", 14 * 86400.0),
        ("1h30m", 5400.0),
        ("1.5h", 5400.0),
        ("120", 120.0),
        ("0.25", 0.25),
        (" 2M ", 120.0),
        ("0", 0.0),
    ],
)
def test_parse_duration_accepts(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "d", "-5s", "5x", "5 m", "1e3", "h1", "1h 30m", "nan", "inf", "9" * 400]
)
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_defaults_when_nothing_is_set() -> None:
    assert Config.from_env({}) == Config(
        nats_url=None,
        data_dir=Path("var"),
        http_host="127.0.0.1",
        http_port=8080,
        stream="INCIDENTS",
        retention_s=90 * 86400.0,
        replicas=1,
        duplicate_window_s=120.0,
        nats_port=0,
        tokens_file=None,
        policy_file=None,
    )


def test_derived_paths_and_embedded_flag() -> None:
    config = Config.from_env({"INCIDENTS_DATA_DIR": "/srv/incidents"})
    assert config.embedded_nats
    assert config.nats_store_dir == Path("/srv/incidents/nats")
    assert config.duckdb_path == Path("/srv/incidents/incidents.duckdb")


@pytest.mark.parametrize(
    ("env", "field", "value"),
    [
        ({"INCIDENTS_NATS_URL": "nats://10.0.0.1:4222"}, "nats_url", "nats://10.0.0.1:4222"),
        (
            {"INCIDENTS_NATS_URL": "nats://a:4222,nats://b:4222"},
            "nats_url",
            "nats://a:4222,nats://b:4222",
        ),
        ({"INCIDENTS_NATS_URL": "tls://nats.example:4222"}, "nats_url", "tls://nats.example:4222"),
        ({"INCIDENTS_NATS_URL": ""}, "nats_url", None),
        ({"INCIDENTS_DATA_DIR": "/tmp/x"}, "data_dir", Path("/tmp/x")),
        ({"INCIDENTS_HTTP": "0.0.0.0:9000"}, "http_host", "0.0.0.0"),
        ({"INCIDENTS_HTTP": "0.0.0.0:9000"}, "http_port", 9000),
        ({"INCIDENTS_HTTP": "[::1]:8081"}, "http_host", "::1"),
        ({"INCIDENTS_HTTP": "localhost:0"}, "http_port", 0),
        ({"INCIDENTS_STREAM": "INCIDENTS_TEST-1"}, "stream", "INCIDENTS_TEST-1"),
        ({"INCIDENTS_RETENTION": "30d"}, "retention_s", 30 * 86400.0),
        ({"INCIDENTS_RETENTION": "3600"}, "retention_s", 3600.0),
        ({"INCIDENTS_REPLICAS": "3"}, "replicas", 3),
        ({"INCIDENTS_DUPLICATE_WINDOW": "5m"}, "duplicate_window_s", 300.0),
        ({"INCIDENTS_NATS_PORT": "4222"}, "nats_port", 4222),
        ({"INCIDENTS_TOKENS_FILE": "tokens.toml"}, "tokens_file", Path("tokens.toml")),
        ({"INCIDENTS_POLICY_FILE": "/etc/policy.toml"}, "policy_file", Path("/etc/policy.toml")),
        ({"INCIDENTS_REPLICAS": "  "}, "replicas", 1),
    ],
)
def test_from_env_reads(env: dict[str, str], field: str, value: object) -> None:
    assert getattr(Config.from_env(env), field) == value


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("INCIDENTS_NATS_URL", "http://x:4222", "expected nats://"),
        ("INCIDENTS_NATS_URL", "nats://", "expected nats://"),
        ("INCIDENTS_NATS_URL", "nats://x:99999", "malformed URL"),
        ("INCIDENTS_HTTP", "8080", "expected host:port"),
        ("INCIDENTS_HTTP", ":8080", "expected host:port"),
        ("INCIDENTS_HTTP", "[]:8080", "expected host:port"),
        ("INCIDENTS_HTTP", "localhost:http", "not an integer"),
        ("INCIDENTS_HTTP", "localhost:70000", "between 0 and 65535"),
        ("INCIDENTS_STREAM", "INC.IDENTS", "letters, digits"),
        ("INCIDENTS_STREAM", "INC>", "letters, digits"),
        ("INCIDENTS_RETENTION", "ninety days", "not a duration"),
        ("INCIDENTS_RETENTION", "0d", "greater than zero"),
        ("INCIDENTS_REPLICAS", "two", "not an integer"),
        ("INCIDENTS_REPLICAS", "0", "between 1 and 5"),
        ("INCIDENTS_REPLICAS", "7", "between 1 and 5"),
        ("INCIDENTS_DUPLICATE_WINDOW", "-2m", "not a duration"),
        ("INCIDENTS_DUPLICATE_WINDOW", "0", "greater than zero"),
        ("INCIDENTS_NATS_PORT", "-1", "between 0 and 65535"),
        ("INCIDENTS_NATS_PORT", "4222.0", "not an integer"),
    ],
)
def test_from_env_rejects_naming_the_variable(name: str, value: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason) as caught:
        Config.from_env({name: value})
    assert str(caught.value).startswith(f"{name}={value!r}: ")
    assert isinstance(caught.value, ValueError)


def test_config_is_frozen() -> None:
    config = Config.from_env({})
    with pytest.raises(AttributeError):
        config.stream = "OTHER"  # type: ignore[misc]


def test_duplicate_window_longer_than_retention_is_refused() -> None:
    with pytest.raises(ConfigError, match="INCIDENTS_DUPLICATE_WINDOW"):
        Config.from_env({"INCIDENTS_RETENTION": "1m", "INCIDENTS_DUPLICATE_WINDOW": "2m"})


def test_tls_needs_both_files() -> None:
    both = Config.from_env({"INCIDENTS_TLS_CERT": "c.pem", "INCIDENTS_TLS_KEY": "k.pem"})
    assert (both.tls_cert, both.tls_key) == (Path("c.pem"), Path("k.pem"))
    with pytest.raises(ConfigError, match="INCIDENTS_TLS_CERT and INCIDENTS_TLS_KEY"):
        Config.from_env({"INCIDENTS_TLS_CERT": "c.pem"})


def test_unloadable_tls_files_are_a_configuration_error(tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("not a certificate")
    key.write_text("not a key")
    with pytest.raises(ConfigError, match=r"INCIDENTS_TLS_CERT=.*cannot load"):
        check_tls(cert, key)
