"""NATS credentials: the data dir's service credentials, producers from the tokens file, the
users and permissions written into the embedded server's config, the data dir lock."""

import re
from pathlib import Path

import pytest

from services.auth import Role, Tokens, TokensError, digest, token_entry
from services.config import Config
from services.datadir import DataDirBusyError, holding
from services.natsauth import (
    CREDENTIALS_FILE,
    ServiceCredentials,
    embedded_auth,
    producer_of,
    producer_subjects,
)
from services.natsserver import EmbeddedNatsServer


def tokens_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    return path


def test_service_credentials_are_created_once_and_private(tmp_path: Path) -> None:
    first = ServiceCredentials.load_or_create(tmp_path / "var")
    path = tmp_path / "var" / CREDENTIALS_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert ServiceCredentials.load_or_create(tmp_path / "var") == first
    path.chmod(0o644)
    assert ServiceCredentials.load_or_create(tmp_path / "var") == first
    assert path.stat().st_mode & 0o777 == 0o600
    assert first.user == "incidents"
    assert re.fullmatch(r"[0-9a-f]{48}", first.password)


def test_producer_password_is_bound_to_name_and_token(tmp_path: Path) -> None:
    credentials = ServiceCredentials.load_or_create(tmp_path)
    one = credentials.producer_password("am", digest("token-1"))
    assert one == credentials.producer_password("am", digest("token-1").upper())
    assert one != credentials.producer_password("am", digest("token-2"))
    assert one != credentials.producer_password("pd", digest("token-1"))


def test_only_producer_entries_with_nats_become_users(tmp_path: Path) -> None:
    text = (
        token_entry("am", Role.PRODUCER, "t1", nats=True)
        + token_entry("plain", Role.PRODUCER, "t2")
        + token_entry("ops", Role.ADMIN, "t3")
    )
    tokens = Tokens.load(tokens_file(tmp_path, text))
    assert tokens.nats_producers() == [("am", digest("t1"))]
    credentials = ServiceCredentials.load_or_create(tmp_path / "var")
    auth = embedded_auth(credentials, tokens)
    [producer] = auth.users
    assert producer.name == "am"
    assert producer.publish == ("intake.am.>",)
    assert producer.subscribe == ("_INBOX_am.>",)  # its own inboxes, not the shared _INBOX
    assert auth.service.publish is None


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        (token_entry("a.b", Role.PRODUCER, "t", nats=True), "NATS producer name"),
        (token_entry("incidents", Role.PRODUCER, "t", nats=True), "service's own"),
        (token_entry("ops", Role.ADMIN, "t", nats=True), "only producer"),
        (
            token_entry("am", Role.PRODUCER, "t", nats=True)
            + token_entry("am", Role.PRODUCER, "u", nats=True),
            "same name",
        ),
    ],
)
def test_bad_nats_entries_are_refused(tmp_path: Path, entry: str, problem: str) -> None:
    with pytest.raises(TokensError, match=problem):
        Tokens.load(tokens_file(tmp_path, entry))


def test_config_holds_users_and_permissions(tmp_path: Path) -> None:
    tokens = Tokens.load(tokens_file(tmp_path, token_entry("am", Role.PRODUCER, "t", nats=True)))
    credentials = ServiceCredentials.load_or_create(tmp_path / "var")
    server = EmbeddedNatsServer(tmp_path / "nats", auth=embedded_auth(credentials, tokens))
    text = server._config_text()
    assert f'{{ user: "incidents", password: "{credentials.password}" }}' in text
    assert 'publish: { allow: ["intake.am.>"] }' in text
    assert 'subscribe: { allow: ["_INBOX_am.>"] }' in text
    assert server.client_url == server.url.replace(
        "nats://", f"nats://incidents:{credentials.password}@"
    )
    assert "authorization" not in EmbeddedNatsServer(tmp_path / "open")._config_text()


def test_subjects_name_their_producer() -> None:
    assert producer_subjects("am") == ("intake.am.events", "intake.am.alertmanager")
    assert producer_of("intake.am.events") == "am"
    assert producer_of("intake.am.alertmanager") == "am"
    assert producer_of("intake.events") is None
    assert producer_of("intake.alertmanager") is None


def test_unhealthy_after_is_a_duration() -> None:
    assert Config.from_env({"INCIDENTS_UNHEALTHY_AFTER": "45s"}).unhealthy_after_s == 45.0
    assert Config.from_env({}).unhealthy_after_s == 30.0


def test_data_dir_lock_names_its_holder(tmp_path: Path) -> None:
    busy = pytest.raises(DataDirBusyError, match=r"in use by incidents serve \(pid \d+\)")
    with holding(tmp_path / "var", "serve"), busy, holding(tmp_path / "var", "project"):
        pass  # pragma: no cover
    with holding(tmp_path / "var", "project"):
        pass  # released on exit
