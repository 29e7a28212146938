"""compose.yaml without Docker: its NATS cluster and its incidents services, run for real.

deploy/nats/nats.conf runs as three nats-server processes on loopback; only the addresses
(free ports, the routes pointing at them) and the store dirs (tmp) are rewritten, so users,
permissions, `sync_interval: always` and the cluster are the file's own. The incidents services
get the environment compose gives them (compose.yaml, variables filled in), with the NATS host
names pointing at those ports, a data dir in tmp and a tokens file in place of the secret. The
failover under load belongs to the fault suite; here one node is killed once, to show that the
service's credentials hold on the servers the cluster announced.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Final

import httpx
import msgspec
import nats
import nats.errors
import pytest
from deploy_support import NATS_CONF, PASSWORDS, environment
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from serve_process import ServeProcess
from tests_support import TOKENS, as_role, fixture_bytes

from events.store import EventStore
from services.auth import Role, token_entry
from services.bootstrap import running
from services.config import Config, ServiceRole
from services.natsserver import die_with_parent, free_port

BIN: Final = Path(sys.executable).parent
NODES: Final = ("nats-1", "nats-2", "nats-3")
SERVICE_PASSWORD: Final = PASSWORDS["INCIDENTS_NATS_PASSWORD"]
PRODUCER_PASSWORD: Final = PASSWORDS["PRODUCER_NATS_PASSWORD"]
FORMED_WITHIN_S: Final = 30.0  # a deadline for waiting, never an assertion on speed


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


def wait_formed(nodes: Mapping[str, Node]) -> None:
    deadline = time.monotonic() + FORMED_WITHIN_S
    while not _formed(nodes):
        if time.monotonic() > deadline:
            tails = {n.name: n.log_file.read_text()[-2000:] for n in nodes.values()}
            raise AssertionError(f"no JetStream meta leader agreed on; logs: {tails}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    directory = tmp_path_factory.mktemp("cluster")
    nodes = {name: Node(name, directory) for name in NODES}
    for node in nodes.values():
        node.config_file.write_text(node_config(NATS_CONF.read_text(), node, nodes))
    try:
        for node in nodes.values():
            node.start()
        wait_formed(nodes)
        yield nodes
    finally:
        for node in nodes.values():
            node.stop()


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


def event(incident_id: str) -> bytes:
    return msgspec.json.encode(
        {
            "type": "incident.declared",
            "event_id": f"declared-{incident_id}",
            "incident_id": incident_id,
            "occurred_at": "2026-11-20T10:00:00Z",
            "actor": "probe",
            "source": "synthetic",
            "title": "over NATS",
            "severity": "P3",
        }
    )


async def producer(node: Node, errors: list[str]) -> NATS:
    """The compose `producer` user, with the inbox prefix its permissions allow."""

    async def remember(exc: Exception) -> None:
        errors.append(str(exc).lower())

    return await nats.connect(
        f"nats://producer:{PRODUCER_PASSWORD}@{node.address}",
        inbox_prefix="_INBOX_producer",
        error_cb=remember,
        allow_reconnect=False,
    )


async def request_answered(nc: NATS, subject: str, body: bytes) -> dict[str, Any]:
    """A request, retried while the intake's interest has not reached this node yet."""
    deadline = time.monotonic() + FORMED_WITHIN_S
    while True:
        try:
            reply = await nc.request(subject, body, timeout=5)
            answer: dict[str, Any] = msgspec.json.decode(reply.data)
            return answer
        except nats.errors.NoRespondersError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


def test_the_three_nodes_form_a_cluster_with_a_jetstream_meta_leader(
    cluster: dict[str, Node],
) -> None:
    leaders = set()
    for node in cluster.values():
        jsz = node.monitoring("/jsz")
        assert jsz is not None
        assert jsz["meta_cluster"]["cluster_size"] == 3
        leaders.add(jsz["meta_cluster"]["leader"])
        varz = node.monitoring("/varz")
        assert varz is not None
        assert varz["server_name"] == node.name
        assert varz["cluster"]["name"] == "incidents"
        assert len(varz["cluster"]["urls"]) == 3
        assert jsz["config"]["sync_always"] is True  # `sync_interval: always`
    assert len(leaders) == 1 and leaders <= set(NODES)
    assert "sync_interval: always" in cluster["nats-1"].config_file.read_text()


async def test_the_compose_services_write_and_project_with_three_replicas(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    query_config = Config.from_env(compose_env("incidents", cluster, tmp_path / "query"))
    api_config = Config.from_env(compose_env("incidents-api", cluster, tmp_path / "api"))
    assert (query_config.role, api_config.role) == (ServiceRole.ALL, ServiceRole.API)
    async with (
        running(query_config) as query,
        running(api_config) as api,
        httpx.AsyncClient(base_url=query.http_url, timeout=10) as reads,
        httpx.AsyncClient(base_url=api.http_url, timeout=10) as writes,
    ):
        info = await api.nc.jetstream().stream_info(api_config.stream)
        assert info.config.num_replicas == 3
        assert info.cluster is not None and info.cluster.leader in NODES
        assert {r.name for r in info.cluster.replicas or []} | {info.cluster.leader} == set(NODES)

        # A command through an API replica, read from the projector+query replica.
        declared = await writes.post(
            "/v1/incidents",
            json={"title": "Checkout 5xx", "severity": "P2"},
            headers=as_role(Role.RESPONDER),
        )
        assert declared.status_code == 201, declared.text
        incident_id, seq = declared.json()["incident_id"], declared.json()["events"][0]["seq"]
        shown = await reads.get(
            f"/v1/incidents/{incident_id}",
            params={"wait_for": seq},
            headers=as_role(Role.AUDITOR),
        )
        assert shown.status_code == 200, shown.text
        assert shown.json()["incident"]["title"] == "Checkout 5xx"

        # The API replica has no read models, and says where to read.
        refused = await writes.get(f"/v1/incidents/{incident_id}", headers=as_role(Role.AUDITOR))
        assert refused.status_code == 503
        assert "INCIDENTS_ROLE=api" in refused.json()["detail"]
        ready = await writes.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["role"] == "api" and ready.json()["stream"]["last_seq"] >= seq
        assert (await reads.get("/readyz")).json()["projector"]["checkpoint"] >= seq

        # A producer over NATS, on another node than the services' first one: answered on
        # its own inbox, stored with three replicas, projected.
        errors: list[str] = []
        nc = await producer(cluster["nats-3"], errors)
        try:
            answer = await request_answered(nc, "intake.producer.events", event("INC-CLUSTER1"))
        finally:
            await nc.close()
        [stored] = answer["events"]
        assert stored["incident_id"] == "INC-CLUSTER1", answer
        await query.projector.wait(stored["seq"], timeout=10)
        timeline = await reads.get(
            "/v1/incidents/INC-CLUSTER1/timeline", headers=as_role(Role.AUDITOR)
        )
        assert [e["type"] for e in timeline.json()["events"]] == ["incident.declared"]
        [stored_record] = (await query.store.load("INC-CLUSTER1")).events
        declared_over_nats = stored_record.event
        assert declared_over_nats.principal is not None
        assert declared_over_nats.principal.name == "producer"  # named by its subject
        assert errors == []


async def test_the_producer_user_reaches_only_its_intake_and_its_own_inbox(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    config = Config.from_env(compose_env("incidents", cluster, tmp_path / "query"))
    errors: list[str] = []
    seen: list[Msg] = []

    async def spy(msg: Msg) -> None:
        seen.append(msg)

    async with running(config) as service:
        nc = await producer(cluster["nats-2"], errors)
        # A tool of the service user with the default inbox prefix, as `incidents verify
        # --nats-url` is: the stored events it reads arrive on `_INBOX.…`.
        tool = await nats.connect(
            f"nats://incidents:{SERVICE_PASSWORD}@{cluster['nats-2'].address}"
        )
        try:
            for inbox in ("_INBOX.>", "_INCIDENTS_INBOX.>", "_INBOX_other.>"):
                await nc.subscribe(inbox, cb=spy)
            await nc.publish("incidents.INC-FORGED1.incident.declared", event("INC-FORGED1"))
            await nc.flush()

            answer = await request_answered(nc, "intake.producer.events", event("INC-CLUSTER2"))
            [stored] = answer["events"]
            await service.projector.wait(stored["seq"], timeout=10)  # the projector's replies
            records = await EventStore(tool, config.stream).records("incidents.INC-CLUSTER2.>")
            assert [seq for seq, _ in records] == [stored["seq"]]

            deadline = time.monotonic() + FORMED_WITHIN_S
            expected = [
                'publish to "incidents.inc-forged1.incident.declared"',
                'subscription to "_inbox.>"',
                'subscription to "_incidents_inbox.>"',
                'subscription to "_inbox_other.>"',
            ]
            while not all(any(e in error for error in errors) for e in expected):
                assert time.monotonic() < deadline, errors  # the -ERRs arrive asynchronously
                await asyncio.sleep(0.05)
        finally:
            await tool.close()
            await nc.close()
        assert seen == []
        assert await service.store.records("incidents.INC-FORGED1.>") == []


def test_serve_starts_as_compose_runs_it_and_logs_no_password(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    # As compose runs it: on 0.0.0.0 (its tokens file lets it), as an API replica.
    env = compose_env(
        "incidents-api", cluster, tmp_path / "api", INCIDENTS_HTTP=f"0.0.0.0:{free_port()}"
    )
    serve = ServeProcess(tmp_path / "api", **env)
    try:
        serve.wait_ready()
        ready = next(line for line in serve.lines if "incidents ready" in line)
        assert "role api" in ready
        assert f"nats://incidents:***@{cluster['nats-1'].address}" in ready
        answer = serve.get("/readyz")
        assert answer.status_code == 200 and answer.json()["role"] == "api", answer.text
        serve.proc.send_signal(signal.SIGTERM)
        code, output = serve.finish()
    finally:
        serve.stop()
    assert code == 0, output
    assert SERVICE_PASSWORD not in output


async def test_discovered_servers_are_dialled_with_the_credentials(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    """Only nats-1 in the URL; nats-1 dies; the connection and the NATS intake go on with the
    servers nats-1 had announced, and the service still writes."""
    first = cluster["nats-1"]
    single = f"nats://incidents:{SERVICE_PASSWORD}@{first.address}"
    env = compose_env("incidents-api", cluster, tmp_path / "api", INCIDENTS_NATS_URL=single)
    async with (
        running(Config.from_env(env)) as service,
        httpx.AsyncClient(base_url=service.http_url, timeout=10) as http,
    ):
        announced = {s.port for s in service.nc.discovered_servers}
        assert {cluster[n].client for n in ("nats-2", "nats-3")} <= announced
        first.kill()
        try:
            deadline = time.monotonic() + FORMED_WITHIN_S
            body = {"title": "after failover", "severity": "P3", "event_id": "failover-1"}
            while (
                written := await http.post(
                    "/v1/incidents", json=body, headers=as_role(Role.RESPONDER)
                )
            ).status_code == 503:
                assert time.monotonic() < deadline, written.text  # stream leader re-elected
                await asyncio.sleep(0.2)
            assert written.status_code == 201, written.text
            assert service.nc.connected_url is not None
            assert service.nc.connected_url.port != first.client

            errors: list[str] = []
            nc = await producer(cluster["nats-3"], errors)
            try:
                answer = await request_answered(nc, "intake.producer.events", event("INC-CLUSTER3"))
            finally:
                await nc.close()
            assert answer["events"][0]["incident_id"] == "INC-CLUSTER3", answer
        finally:
            first.start()  # back for whatever runs next on this cluster
            wait_formed(cluster)


async def test_two_replicas_writing_the_same_events_at_once_store_each_once(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    """Two API replicas take the same notes (same ids) at the same moment, as two intakes
    behind a load balancer do with a producer's retry: on a 3-replica stream JetStream may
    answer that the other's message is still in process (10158). Each request is answered 2xx
    with the one stored event, never 500, and each id is stored once."""
    configs = [
        Config.from_env(compose_env("incidents-api", cluster, tmp_path / name))
        for name in ("a", "b")
    ]
    async with (
        running(configs[0]) as a,
        running(configs[1]) as b,
        httpx.AsyncClient(base_url=a.http_url, timeout=20) as first,
        httpx.AsyncClient(base_url=b.http_url, timeout=20) as second,
    ):
        declared = await first.post(
            "/v1/incidents",
            json={"title": "Race", "severity": "P3"},
            headers=as_role(Role.RESPONDER),
        )
        assert declared.status_code == 201, declared.text
        incident_id = declared.json()["incident_id"]
        path = f"/v1/incidents/{incident_id}/notes"
        for n in range(30):
            body = {"text": f"note {n}", "event_id": f"race-{n}"}
            answers = await asyncio.gather(
                first.post(path, json=body, headers=as_role(Role.RESPONDER)),
                second.post(path, json=body, headers=as_role(Role.RESPONDER)),
            )
            assert [r.status_code // 100 for r in answers] == [2, 2], [r.text for r in answers]
            seqs = {r.json()["events"][0]["seq"] for r in answers}
            assert len(seqs) == 1, [r.text for r in answers]
        stored = [s.event.event_id for s in (await a.store.load(incident_id)).events]
    races = [i for i in stored if i.startswith("race-")]
    assert sorted(races) == sorted(f"race-{n}" for n in range(30))


async def test_two_replicas_taking_the_same_alertmanager_group_at_once_open_one_incident(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    """Alertmanager in HA pairs sends each notification from both instances: two API replicas
    take the same group at once. Their correlation claims race on a 3-replica stream; every
    answer is 2xx and each group opens one incident."""
    configs = [
        Config.from_env(compose_env("incidents-api", cluster, tmp_path / name))
        for name in ("a", "b")
    ]
    firing = json.loads(fixture_bytes("alertmanager_firing.json"))
    async with (
        running(configs[0]) as a,
        running(configs[1]) as b,
        httpx.AsyncClient(base_url=a.http_url, timeout=20) as first,
        httpx.AsyncClient(base_url=b.http_url, timeout=20) as second,
    ):
        opened = []
        for n in range(10):
            body = {**firing, "groupKey": f'{{}}:{{alertname="Race{n}"}}'}
            answers = await asyncio.gather(
                *(
                    client.post(
                        "/v1/webhooks/alertmanager", json=body, headers=as_role(Role.PRODUCER)
                    )
                    for client in (first, second)
                )
            )
            assert [r.status_code // 100 for r in answers] == [2, 2], [r.text for r in answers]
            incidents = {e["incident_id"] for r in answers for e in r.json()["events"]}
            assert len(incidents) == 1, [r.text for r in answers]
            opened.append(incidents.pop())
    assert len(set(opened)) == 10
