"""compose.yaml's NATS cluster without Docker: three real nats-servers on loopback.

deploy/nats/nats.conf runs as three nats-server processes; only the addresses (free ports, the
routes pointing at them) and the store dirs (tmp) are rewritten, so users, permissions,
`sync_interval: always` and the cluster are the file's own. The incidents services get the
environment compose gives them (`compose_env`). Who leads a stream is read from each node's
monitoring endpoint, as an operator would (`/jsz`).
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import httpx
from deploy_support import NATS_CONF, PASSWORDS, environment
from tests_support import TOKENS

from services.auth import token_entry
from services.natsserver import die_with_parent, free_port

BIN: Final = Path(sys.executable).parent
NODES: Final = ("nats-1", "nats-2", "nats-3")
SERVICE_PASSWORD: Final = PASSWORDS["INCIDENTS_NATS_PASSWORD"]
PRODUCER_PASSWORD: Final = PASSWORDS["PRODUCER_NATS_PASSWORD"]
FORMED_WITHIN_S: Final = 30.0  # a deadline for waiting, never an assertion on speed
STREAM: Final = "INCIDENTS"  # compose leaves INCIDENTS_STREAM at its default
START_ATTEMPTS: Final = 3


class Node:
    """One node of the cluster: deploy/nats/nats.conf with SERVER_NAME=`name`."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.client, self.routes, self.monitor = free_port(), free_port(), free_port()
        self.store = directory / name
        self.config_file = directory / f"{name}.conf"
        self.log_file = directory / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.client}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        with self.log_file.open("ab") as log:
            self.proc = subprocess.Popen(
                [BIN / "nats-server", "-c", self.config_file],
                env={**os.environ, "SERVER_NAME": self.name, **PASSWORDS},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent(),  # no node outlives a killed test run
            )

    def kill(self) -> None:
        """SIGKILL: no goodbye to the cluster, no flush beyond what was fsynced."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def monitoring(self, path: str) -> dict[str, Any] | None:
        """A monitoring endpoint's JSON; None while the node does not answer."""
        try:
            answer = httpx.get(f"http://127.0.0.1:{self.monitor}{path}", timeout=2)
        except httpx.TransportError:
            return None
        body: dict[str, Any] = answer.json()
        return body if answer.status_code == 200 else None

    def stream_state(self, stream: str = STREAM) -> dict[str, Any] | None:
        """This node's view of `stream` (its `cluster` and `state`), None if it has none."""
        jsz = self.monitoring("/jsz?streams=true&config=true") if self.running else None
        for account in (jsz or {}).get("account_details") or []:
            for detail in account.get("stream_detail") or []:
                if detail.get("name") == stream:
                    found: dict[str, Any] = detail
                    return found
        return None


def node_config(text: str, node: Node, nodes: Mapping[str, Node]) -> str:
    """The deploy config of `node` on loopback: addresses and store only."""
    rewrites = {
        "listen: 0.0.0.0:4222": f"listen: 127.0.0.1:{node.client}",
        "http: 0.0.0.0:8222": f"http: 127.0.0.1:{node.monitor}",
        "listen: 0.0.0.0:6222": f"listen: 127.0.0.1:{node.routes}",
        "store_dir: /data": f"store_dir: {json.dumps(str(node.store))}",
        **{
            f"nats-route://{name}:6222": f"nats-route://127.0.0.1:{other.routes}"
            for name, other in nodes.items()
        },
    }
    for old, new in rewrites.items():
        assert text.count(old) == 1, f"{old!r} is not once in {NATS_CONF}"
        text = text.replace(old, new)
    return text


def _formed(nodes: Mapping[str, Node]) -> bool:
    leaders = set()
    for node in nodes.values():
        if node.monitoring("/healthz") is None:
            return False
        jsz = node.monitoring("/jsz") or {}
        leaders.add(jsz.get("meta_cluster", {}).get("leader"))
    return len(leaders) == 1 and leaders <= set(NODES)


def _logs(nodes: Mapping[str, Node]) -> dict[str, str]:
    return {n.name: n.log_file.read_text()[-2000:] for n in nodes.values()}


class NodeExitedError(AssertionError):
    """A node's process ended while the cluster was forming."""


def wait_formed(nodes: Mapping[str, Node]) -> None:
    deadline = time.monotonic() + FORMED_WITHIN_S
    while not _formed(nodes):
        if exited := [n.name for n in nodes.values() if not n.running]:
            raise NodeExitedError(f"{exited} exited; logs: {_logs(nodes)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no JetStream meta leader agreed on; logs: {_logs(nodes)}")
        time.sleep(0.2)


def _started(directory: Path) -> dict[str, Node]:
    """Three nodes started and formed. A port `free_port` found free may be taken by another
    process before a node binds it (the node exits): then all three start again elsewhere
    (the failed attempt's logs stay in its folder)."""
    for attempt in range(1, START_ATTEMPTS):
        try:
            return _start(directory / f"start-{attempt}")
        except NodeExitedError:
            continue
    return _start(directory / f"start-{START_ATTEMPTS}")


def _start(place: Path) -> dict[str, Node]:
    place.mkdir()
    nodes = {name: Node(name, place) for name in NODES}
    for node in nodes.values():
        node.config_file.write_text(node_config(NATS_CONF.read_text(), node, nodes))
    try:
        for node in nodes.values():
            node.start()
        wait_formed(nodes)
    except BaseException:
        for node in nodes.values():
            node.stop()
        raise
    return nodes


@contextmanager
def running_cluster(directory: Path) -> Iterator[dict[str, Node]]:
    """The three nodes started on `directory` and formed; stopped on the way out."""
    nodes = _started(directory)
    try:
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


def stream_leader(nodes: Mapping[str, Node], stream: str = STREAM) -> str | None:
    """The node the running nodes agree leads `stream`, None while they do not agree."""
    seen = set()
    for node in nodes.values():
        if node.running:
            state = node.stream_state(stream)
            seen.add(((state or {}).get("cluster") or {}).get("leader"))
    return seen.pop() if len(seen) == 1 and seen <= set(nodes) else None


def wait_stream_leader(nodes: Mapping[str, Node], stream: str = STREAM) -> str:
    deadline = time.monotonic() + FORMED_WITHIN_S
    while (leader := stream_leader(nodes, stream)) is None:
        if time.monotonic() > deadline:
            raise AssertionError(f"no leader of {stream} agreed on; logs: {_logs(nodes)}")
        time.sleep(0.2)
    return leader


def last_seqs(nodes: Mapping[str, Node], stream: str = STREAM) -> dict[str, int | None]:
    """Each node's last stored sequence of `stream` (None: the node has no copy or is down)."""
    states = {name: node.stream_state(stream) for name, node in nodes.items()}
    return {n: None if s is None else int(s["state"]["last_seq"]) for n, s in states.items()}


def service_url(node: Node) -> str:
    """The service user's URL on one node (for tools reading the log: `check_log`)."""
    return f"nats://incidents:{SERVICE_PASSWORD}@{node.address}"


def compose_env(
    service: str, nodes: Mapping[str, Node], data_dir: Path, **overrides: str
) -> dict[str, str]:
    """`service`'s compose environment, its NATS host names pointing at the loopback nodes."""
    env = environment(service)
    url = env["INCIDENTS_NATS_URL"]
    for name, node in nodes.items():
        assert url.count(f"{name}:4222") == 1, url
        url = url.replace(f"{name}:4222", node.address)
    tokens_file = data_dir.parent / f"{data_dir.name}-tokens.toml"
    tokens_file.write_text("".join(token_entry(r.value, r, t) for r, t in TOKENS.items()))
    return {
        **env,
        "INCIDENTS_NATS_URL": url,
        "INCIDENTS_DATA_DIR": str(data_dir),
        "INCIDENTS_TOKENS_FILE": str(tokens_file),  # in place of the `tokens` secret
        "INCIDENTS_HTTP": "127.0.0.1:0",
        **overrides,
    }
