"""NATS URLs: credentials become connect options (so announced servers get them too) and
never reach a log line or an error message."""

import pytest

from services.config import Config, ConfigError
from services.natsurl import NatsTarget, redacted, target

SECRET = "9b1e3f0a5c7d"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            f"nats://incidents:{SECRET}@nats-1:4222,nats://nats-2:4222,nats://nats-3:4222",
            NatsTarget(
                servers=("nats://nats-1:4222", "nats://nats-2:4222", "nats://nats-3:4222"),
                user="incidents",
                password=SECRET,
            ),
        ),
        (  # the same credentials written into every URL
            f"nats://u:{SECRET}@a:4222, nats://u:{SECRET}@b:4222",
            NatsTarget(servers=("nats://a:4222", "nats://b:4222"), user="u", password=SECRET),
        ),
        (  # escaped characters are the password's own
            "tls://u:p%40ss%2Fword@[::1]:4443",
            NatsTarget(servers=("tls://[::1]:4443",), user="u", password="p@ss/word"),
        ),
        (f"nats://{SECRET}@a:4222", NatsTarget(servers=("nats://a:4222",), token=SECRET)),
        ("nats://127.0.0.1:4222", NatsTarget(servers=("nats://127.0.0.1:4222",))),
    ],
)
def test_credentials_leave_the_urls_for_the_connect_options(url: str, expected: NatsTarget) -> None:
    assert target(url) == expected
    options = target(url).options()
    assert all(SECRET not in server and "@" not in server for server in options["servers"])


def test_user_and_password_are_connect_options() -> None:
    options = target(f"nats://incidents:{SECRET}@a:4222").options()
    assert options == {"servers": ["nats://a:4222"], "user": "incidents", "password": SECRET}
    assert target(f"nats://{SECRET}@a:4222").options()["token"] == SECRET


def test_different_credentials_in_one_list_are_refused() -> None:
    with pytest.raises(ValueError, match="different credentials"):
        target("nats://a:one@x:4222,nats://a:two@y:4222")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"nats://incidents:{SECRET}@nats-1:4222", "nats://incidents:***@nats-1:4222"),
        (
            f"nats://incidents:{SECRET}@nats-1:4222,nats://nats-2:4222",
            "nats://incidents:***@nats-1:4222,nats://nats-2:4222",
        ),
        (f"nats://{SECRET}@a:4222", "nats://***@a:4222"),
        (f"nats://u:{SECRET}@with@at@a:4222", "nats://u:***@a:4222"),
        ("nats://127.0.0.1:4222", "nats://127.0.0.1:4222"),
        ("not a url", "not a url"),
    ],
)
def test_redacted_urls_keep_the_user_and_hide_the_secret(url: str, shown: str) -> None:
    assert redacted(url) == shown


def test_a_malformed_url_is_refused_without_showing_its_password() -> None:
    with pytest.raises(ConfigError) as refused:
        Config.from_env({"INCIDENTS_NATS_URL": f"nats://incidents:{SECRET}@nats-1:99999"})
    assert SECRET not in str(refused.value)
    assert "INCIDENTS_NATS_URL='nats://incidents:***@nats-1:99999'" in str(refused.value)
