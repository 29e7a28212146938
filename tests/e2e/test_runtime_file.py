"""The CLI finds the `incidents serve` running on its data dir (issue 14, DESIGN 11).

`serve` writes its endpoints to `<data dir>/serve.json` (mode 0600, no secret in it), so
`incidents verify`, `incidents export` and the HTTP verbs work right after it with no flags
and no INCIDENTS_NATS_URL / INCIDENTS_URL, even though the embedded nats-server and the HTTP
API listen on ports chosen at start. A clean stop removes the file; one left by a `serve` that
was killed is ignored.
"""

import json
import os
import re
import signal
import stat
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path

import httpx
from serve_process import ServeProcess
from tests_support import INCIDENTS, TOKENS, as_role, one_line_error

from services.auth import Role, token_entry

RUNTIME_FILE = "serve.json"


def ready(process: ServeProcess) -> ServeProcess:
    """Wait for the ready line and take the HTTP URL it logs (http or https)."""
    line = process.wait_for("incidents ready")
    found = re.search(r"incidents ready[^:]*: (https?://[^,\s]+),", line)
    assert found, line
    process.http_url = found.group(1)
    return process


def cli(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`incidents ...` as a person runs it after `serve`: only the data dir is known."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    environ |= {"INCIDENTS_DATA_DIR": str(data_dir), **env}
    return subprocess.run(
        [INCIDENTS, *args], capture_output=True, text=True, env=environ, timeout=60
    )


def declare(process: ServeProcess, incident_id: str, headers: dict[str, str]) -> None:
    body = {"incident_id": incident_id, "title": "Checkout 5xx", "severity": "P2"}
    answer = httpx.post(f"{process.http_url}/v1/incidents", json=body, headers=headers, timeout=10)
    assert answer.status_code == 201, answer.text
    note = {"text": "rolling back"}
    answer = httpx.post(
        f"{process.http_url}/v1/incidents/{incident_id}/notes",
        json=note,
        headers=headers,
        timeout=10,
    )
    assert answer.status_code == 200, answer.text


def verify_and_export(data_dir: Path, incident_id: str, out: Path) -> None:
    verified = cli(data_dir, "verify", "--json")
    assert verified.returncode == 0, verified.stderr
    report = json.loads(verified.stdout)
    assert report["intact"] is True
    assert report["events_checked"] >= 2, report

    exported = cli(data_dir, "export", incident_id, "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    assert "exported 2 events of 1 incidents" in exported.stdout
    lines = (out / "events.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == [
        "incident.declared",
        "incident.note_added",
    ]


def test_verify_export_and_list_work_right_after_serve_with_no_flags(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    process = ready(serve())
    data_dir = process.data_dir
    runtime_file = data_dir / RUNTIME_FILE
    endpoints = json.loads(runtime_file.read_text())
    assert endpoints["http_url"] == process.http_url
    assert endpoints["nats_url"] == f"nats://127.0.0.1:{process.nats_port}"
    assert endpoints["pid"] == process.proc.pid
    assert endpoints["nats_users"] is False
    assert stat.S_IMODE(runtime_file.stat().st_mode) == 0o600

    declare(process, "INC-RUNTIME1", {})
    verify_and_export(data_dir, "INC-RUNTIME1", tmp_path / "bundle")
    # The HTTP verbs find the API on its chosen port (not the default 8080) the same way.
    listed = cli(data_dir, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [i["incident_id"] for i in json.loads(listed.stdout)["incidents"]] == ["INC-RUNTIME1"]

    # A serve killed before it could remove the file: its pid is gone, the file is ignored.
    process.stop()
    assert runtime_file.exists()
    refused = cli(data_dir, "verify")
    reason = one_line_error(refused, 2)
    assert f"no incidents serve is running on data dir {data_dir}" in reason
    assert "INCIDENTS_NATS_URL" in reason


def test_with_tokens_the_verbs_log_in_as_the_service_and_the_file_holds_no_secret(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    tokens_file = tmp_path / "tokens.toml"
    tokens_file.write_text("".join(token_entry(r.value, r, t) for r, t in TOKENS.items()))
    process = ready(serve(INCIDENTS_TOKENS_FILE=str(tokens_file)))
    data_dir = process.data_dir
    runtime_file = data_dir / RUNTIME_FILE
    text = runtime_file.read_text()
    endpoints = json.loads(text)
    assert endpoints["nats_users"] is True
    assert endpoints["nats_url"] == f"nats://127.0.0.1:{process.nats_port}"
    credentials = tomllib.loads((data_dir / "nats-credentials.toml").read_text())
    assert credentials["password"] not in text
    assert credentials["producer_key"] not in text
    assert stat.S_IMODE(runtime_file.stat().st_mode) == 0o600

    declare(process, "INC-RUNTIME2", as_role(Role.RESPONDER))
    verify_and_export(data_dir, "INC-RUNTIME2", tmp_path / "bundle")
    listed = cli(data_dir, "list", "--json", INCIDENTS_TOKEN=TOKENS[Role.AUDITOR])
    assert listed.returncode == 0, listed.stderr
    assert [i["incident_id"] for i in json.loads(listed.stdout)["incidents"]] == ["INC-RUNTIME2"]

    # A clean stop (SIGTERM) removes the file.
    process.proc.send_signal(signal.SIGTERM)
    code, output = process.finish()
    assert code == 0, output
    assert not runtime_file.exists()
    refused = cli(data_dir, "export", "INC-RUNTIME2", "--out", str(tmp_path / "again"))
    assert "no incidents serve is running" in one_line_error(refused, 2)


def test_an_explicit_nats_url_wins_over_the_runtime_file(
    serve: Callable[..., ServeProcess],
) -> None:
    process = ready(serve())
    # Nothing listens there: the verb tried the URL it was given, not the running serve's.
    refused = cli(process.data_dir, "verify", INCIDENTS_NATS_URL="nats://127.0.0.1:1")
    assert refused.returncode == 1, refused.stderr
    assert "cannot reach NATS at nats://127.0.0.1:1" in refused.stderr
