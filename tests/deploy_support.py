"""compose.yaml and deploy/ as the tests read them: the compose file with its variables filled
in as `docker compose` fills them, and one service's environment."""

import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import yaml

from services.natsserver import find_binary, free_port

ROOT: Final = Path(__file__).resolve().parents[1]
COMPOSE: Final = ROOT / "compose.yaml"
DEPLOY: Final = ROOT / "deploy"
NATS_CONF: Final = DEPLOY / "nats" / "nats.conf"
# Passwords as the README makes them (hex); one starts with a digit, which nats.conf's
# `$VARIABLE` must still read as a string.
PASSWORDS: Final = {
    "INCIDENTS_NATS_PASSWORD": "9b1e3f0a5c7d2e4f6a8b0c1d3e5f7a9b",
    "PRODUCER_NATS_PASSWORD": "c4e6a8b0d2f4a6c8e0a2c4e6a8b0d2f4",
}

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?error}, ${NAME?error}
_VARIABLE: Final = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")


def interpolate(text: str, env: Mapping[str, str]) -> str:
    def value(found: re.Match[str]) -> str:
        name, op, arg = found["name"], found["op"], found["arg"]
        current = env.get(name)
        missing = current is None or (current == "" and op is not None and op.startswith(":"))
        if not missing:
            assert current is not None
            return current
        if op is not None and op.endswith("?"):
            raise KeyError(f"{name}: {arg}")
        return arg if op is not None else ""

    return _VARIABLE.sub(value, text.replace("$$", "\0")).replace("\0", "$")


def compose(env: Mapping[str, str] = PASSWORDS) -> dict[str, Any]:
    """compose.yaml as `docker compose config` would see it with `env` (anchors merged)."""
    loaded: dict[str, Any] = yaml.safe_load(interpolate(COMPOSE.read_text(), env))
    return loaded


def environment(service: str, env: Mapping[str, str] = PASSWORDS) -> dict[str, str]:
    """The environment compose gives `service`'s containers."""
    given = compose(env)["services"][service].get("environment", {})
    if isinstance(given, list):
        given = dict(item.split("=", 1) for item in given)
    return {str(k): str(v) for k, v in given.items()}


@contextmanager
def deploy_users_server(directory: Path) -> Iterator[str]:
    """One nats-server with JetStream and deploy/nats/nats.conf's `authorization` block (the
    cluster and its ports left out), its users' passwords from `PASSWORDS`: its host:port."""
    deploy = NATS_CONF.read_text()
    port = free_port()
    config = directory / "deploy-nats.conf"
    config.write_text(
        f'listen: "127.0.0.1:{port}"\n'
        f'jetstream {{ store_dir: "{directory / "deploy-store"}" }}\n'
        + deploy[deploy.index("authorization {") :]
    )
    proc = subprocess.Popen(
        [find_binary(), "-c", config],
        env={**os.environ, **PASSWORDS},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
