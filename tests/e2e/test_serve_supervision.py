"""`incidents serve` outlives its nats-server, fails /healthz when it cannot, and owns its data dir.

Real processes: `incidents serve` children with their embedded nats-servers, killed with SIGKILL,
a port held by a real socket so the restart fails for real.
"""

import re
from collections.abc import Callable

from serve_process import ServeProcess, eventually, hold_port

DECLARE = {"title": "Checkout 5xx", "severity": "P2"}
# A log record starts a line (either of the two formats `serve` logs in); anything else is a
# continuation: a traceback or a multi-line message.
RECORD = re.compile(r"^(\d{4}-\d\d-\d\d |[A-Z]+ - )")


def assert_one_line_per_record(lines: list[str], at_most: int) -> None:
    text = "".join(lines)
    assert "Traceback" not in text, text
    assert all(RECORD.match(line) for line in lines), text
    assert len(lines) <= at_most, text


def test_killed_nats_server_is_restarted_on_the_same_store(
    serve: Callable[..., ServeProcess],
) -> None:
    process = serve(INCIDENTS_UNHEALTHY_AFTER="20s")
    process.wait_ready()
    first = process.post("/v1/incidents", DECLARE)
    assert first.status_code == 201, first.text
    incident_id = first.json()["incident_id"]
    [server] = process.nats_servers()
    process.drain()

    server.kill()
    server.wait(10)
    answers = []

    def write() -> bool:
        answer = process.post("/v1/incidents", DECLARE)
        answers.append(answer)
        return answer.status_code == 201

    eventually(write, timeout=20, what="a write after the nats-server was killed", every=0.2)
    assert {a.status_code for a in answers[:-1]} <= {503}
    # Same store: the log goes on after the first event, which is still there.
    seq = answers[-1].json()["events"][0]["seq"]
    assert seq >= 2
    assert process.get(f"/v1/incidents/{incident_id}?wait_for=1").status_code == 200
    # The read models follow the restarted log too (the projector's ordered consumer notices
    # the server's restart by its missed heartbeats, which takes some seconds).
    second_id = answers[-1].json()["incident_id"]
    eventually(
        lambda: process.get(f"/v1/incidents/{second_id}").status_code == 200,
        timeout=60,
        what="the read models after the restart",
        every=0.5,
    )
    [restarted] = process.nats_servers()
    assert restarted.pid != server.pid
    assert process.get("/healthz").status_code == 200
    lines = process.drain()
    assert sum("nats-server restarted" in line for line in lines) == 1, lines
    assert_one_line_per_record(lines, at_most=20)


def test_healthz_fails_while_the_nats_server_cannot_come_back(
    serve: Callable[..., ServeProcess],
) -> None:
    process = serve(INCIDENTS_UNHEALTHY_AFTER="2s")
    process.wait_ready()
    assert process.get("/healthz").status_code == 200
    [server] = process.nats_servers()
    process.drain()

    server.kill()
    # The port of the dead server is taken at once: every restart fails, for real.
    with hold_port(process.nats_port):
        took = eventually(
            lambda: process.get("/healthz").status_code == 503, timeout=15, what="/healthz 503"
        )
        assert took >= 1.5  # not before the log has been out of reach for a while
        body = process.get("/healthz").json()
        assert body["status"] == "unavailable"
        assert body["nats"]["connected"] is False
        eventually(
            lambda: process.get("/healthz").json()["nats"]["server"]["failed_attempts"] >= 2,
            timeout=15,
            what="two failed restarts",
        )
        failure = process.get("/healthz").json()["nats"]["server"]["last_failure"]
        assert "address already in use" in failure
        assert process.post("/v1/incidents", DECLARE).status_code == 503
        lines = process.drain()
    # A handful of lines for the whole outage: one per failure, none a traceback.
    assert_one_line_per_record(lines, at_most=20)
    assert sum("restart failed" in line for line in lines) >= 2

    # The port is free again: the next attempt brings the log back, and health with it.
    eventually(lambda: process.get("/healthz").status_code == 200, timeout=45, what="healthy")
    eventually(
        lambda: process.post("/v1/incidents", DECLARE).status_code == 201,
        timeout=15,
        what="writes after recovery",
    )
    assert process.proc.poll() is None
    assert_one_line_per_record(process.drain(), at_most=10)


def test_second_serve_on_the_same_data_dir_exits_2_naming_the_first(
    serve: Callable[..., ServeProcess],
) -> None:
    first = serve()
    first.wait_ready()
    config = first.data_dir / "nats" / "nats-server.conf"
    before = (config.read_bytes(), config.stat().st_mtime_ns)
    [server] = first.nats_servers()

    second = serve()  # same data dir, its own ports
    code, output = second.finish()

    assert code == 2, output
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ")
    assert f"pid {first.proc.pid}" in lines[0]
    assert str(first.data_dir) in lines[0]
    # Nothing of the first was touched: its nats config, its nats-server, its service.
    assert (config.read_bytes(), config.stat().st_mtime_ns) == before
    assert [p.pid for p in first.nats_servers()] == [server.pid]
    assert first.post("/v1/incidents", DECLARE).status_code == 201
    assert first.get("/healthz").status_code == 200
