"""compose.yaml without Docker: its NATS cluster and its incidents services, run for real.

deploy/nats/nats.conf runs as three nats-server processes on loopback (`cluster_support`); the
incidents services get the environment compose gives them (compose.yaml, variables filled in),
with the NATS host names pointing at those ports, a data dir in tmp and a tokens file in place
of the secret. The failover under load belongs to the fault suite (tests/faults/
test_failover.py); here one node is killed once, to show that the service's credentials hold on
the servers the cluster announced.
"""

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import nats
import nats.errors
import pytest
from cluster_support import (
    FORMED_WITHIN_S,
    NODES,
    PRODUCER_PASSWORD,
    SERVICE_PASSWORD,
    Node,
    compose_env,
    node_config,
    running_cluster,
    wait_formed,
)
from deploy_support import NATS_CONF
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from serve_process import ServeProcess
from tests_support import as_role, fixture_bytes

from events.store import EventStore
from services.auth import Role
from services.bootstrap import running
from services.config import Config, ServiceRole
from services.natsserver import free_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Node]]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as nodes:
        yield nodes


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


@asynccontextmanager
async def two_api_replicas(
    cluster: dict[str, Node], directory: Path
) -> AsyncIterator[tuple[EventStore, httpx.AsyncClient, httpx.AsyncClient]]:
    """Two `incidents-api` replicas as compose runs them: the log, and a client of each."""
    a_config, b_config = (
        Config.from_env(compose_env("incidents-api", cluster, directory / name))
        for name in ("a", "b")
    )
    async with (
        running(a_config) as a,
        running(b_config) as b,
        httpx.AsyncClient(base_url=a.http_url, timeout=20) as first,
        httpx.AsyncClient(base_url=b.http_url, timeout=20) as second,
    ):
        yield a.store, first, second


async def test_two_replicas_writing_the_same_events_at_once_store_each_once(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    """Two API replicas take the same notes (same ids) at the same moment, as two intakes
    behind a load balancer do with a producer's retry: on a 3-replica stream JetStream may
    answer that the other's message is still in process (10158). Each request is answered 2xx
    with the one stored event, never 500, and each id is stored once."""
    async with two_api_replicas(cluster, tmp_path) as (store, first, second):
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
        stored = [s.event.event_id for s in (await store.load(incident_id)).events]
    races = [i for i in stored if i.startswith("race-")]
    assert sorted(races) == sorted(f"race-{n}" for n in range(30))


async def test_two_replicas_taking_the_same_alertmanager_group_at_once_open_one_incident(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    """Alertmanager in HA pairs sends each notification from both instances: two API replicas
    take the same group at once. Their correlation claims race on a 3-replica stream; every
    answer is 2xx and each group opens one incident."""
    firing = json.loads(fixture_bytes("alertmanager_firing.json"))
    async with two_api_replicas(cluster, tmp_path) as (_, first, second):
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


async def test_two_replicas_writing_one_event_id_to_two_incidents_at_once_store_it_once(
    cluster: dict[str, Node], tmp_path: Path
) -> None:
    """The same event id sent to two incidents through two API replicas at the same moment:
    one is stored, the other answered 409, and the id's claim names the incident that holds
    it. The loser reads the winner's claim after the refusal; a replica that has not applied
    it yet must not make it look unclaimed (events.ids reads the claim from the leader)."""
    async with two_api_replicas(cluster, tmp_path) as (store, first, second):
        incidents = []
        for client in (first, second):
            declared = await client.post(
                "/v1/incidents",
                json={"title": "Id race", "severity": "P3"},
                headers=as_role(Role.RESPONDER),
            )
            assert declared.status_code == 201, declared.text
            incidents.append(declared.json()["incident_id"])
        for n in range(30):
            event_id = f"contested-{n}"
            answers = await asyncio.gather(
                *(
                    client.post(
                        f"/v1/incidents/{incident}/notes",
                        json={"text": f"note {n}", "event_id": event_id},
                        headers=as_role(Role.RESPONDER),
                    )
                    for client, incident in zip((first, second), incidents, strict=True)
                )
            )
            statuses = sorted(r.status_code for r in answers)
            assert statuses == [200, 409], [r.text for r in answers]
            [winner] = [i for i, r in zip(incidents, answers, strict=True) if r.status_code == 200]
            assert await store.ids.holder(event_id) == winner
        for incident in incidents:
            stored = [s.event for s in (await store.load(incident)).events]
            for event in stored:
                if event.event_id.startswith("contested-"):
                    assert await store.ids.holder(event.event_id) == incident


def test_serve_started_before_the_cluster_has_a_leader_waits_for_jetstream(
    tmp_path: Path,
) -> None:
    """compose starts everything at once: `serve` may connect while the cluster has no meta
    leader yet. It waits for JetStream (one line per attempt) instead of exiting."""
    place = tmp_path / "nodes"
    place.mkdir()
    nodes = {name: Node(name, place) for name in NODES}
    for node in nodes.values():
        node.config_file.write_text(node_config(NATS_CONF.read_text(), node, nodes))
    data_dir = tmp_path / "incidents"
    try:
        nodes["nats-1"].start()  # alone: no quorum, no meta leader, JetStream does not answer
        serve = ServeProcess(data_dir, **compose_env("incidents", nodes, data_dir))
        try:
            serve.wait_for("JetStream does not answer yet", timeout=60)
            for name in ("nats-2", "nats-3"):
                nodes[name].start()
            serve.wait_ready(timeout=90)
            assert serve.get("/readyz").status_code == 200
        finally:
            serve.stop()
    finally:
        for node in nodes.values():
            node.stop()
