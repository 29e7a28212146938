"""Evidence end to end: the admin export and verify routes, and `incidents export|verify`."""

import asyncio
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
from tests_support import as_role, one_line_error, run_cli

from services.auth import Role
from services.bootstrap import Service


async def _seed(
    http: httpx.AsyncClient, title: str, notes: int = 2, headers: dict[str, str] | None = None
) -> tuple[str, int]:
    """An incident with `notes` notes; returns its id and the last sequence written."""
    headers = headers or as_role(Role.RESPONDER)
    body = {"title": title, "severity": "P2"}
    declared = await http.post("/v1/incidents", json=body, headers=headers)
    assert declared.status_code == 201, declared.text
    incident_id: str = declared.json()["incident_id"]
    seq = declared.json()["events"][-1]["seq"]
    for n in range(notes):
        added = await http.post(
            f"/v1/incidents/{incident_id}/notes", json={"text": f"note {n} “ü”"}, headers=headers
        )
        assert added.status_code == 200, added.text
        seq = added.json()["events"][-1]["seq"]
    return incident_id, seq


def _verifier(bundle: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "verify.py", "."], cwd=bundle, capture_output=True, text=True
    )


async def test_export_route_answers_a_bundle_that_verifies_offline(
    guarded: Service, tmp_path: Path
) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url, timeout=30) as http:
        incident_id, _ = await _seed(http, "Evidence over HTTP")
        await _seed(http, "Another one", notes=1)
        path = f"/v1/incidents/{incident_id}/export"
        assert (await http.get(path)).status_code == 401
        for role in (Role.PRODUCER, Role.RESPONDER, Role.AUDITOR):
            assert (await http.get(path, headers=as_role(role))).status_code == 403, role
        answer = await http.get(path, headers=as_role(Role.ADMIN))
        missing = await http.get("/v1/incidents/INC-NOSUCH1/export", headers=as_role(Role.ADMIN))
        bad = await http.get("/v1/incidents/not.an.id/export", headers=as_role(Role.ADMIN))

    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/gzip"
    name = f"evidence-{incident_id}"
    assert answer.headers["content-disposition"] == f'attachment; filename="{name}.tar.gz"'
    with tarfile.open(fileobj=io.BytesIO(answer.content), mode="r:gz") as tar:
        assert sorted(tar.getnames()) == sorted(
            [name, *(f"{name}/{f}" for f in _FILES), f"{name}/manifest.json"]
        )
        tar.extractall(tmp_path, filter="data")
    bundle = tmp_path / name
    manifest = json.loads((bundle / "manifest.json").read_bytes())
    digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
    assert answer.headers["x-manifest-sha256"] == digest
    assert manifest["exported_by"] == Role.ADMIN.value
    assert list(manifest["incidents"]) == [incident_id]
    assert manifest["incidents"][incident_id]["events"] == 3
    done = await asyncio.to_thread(_verifier, bundle)
    assert done.returncode == 0 and done.stdout.endswith("intact\n"), done

    assert missing.status_code == 404 and "INC-NOSUCH1" in missing.json()["detail"]
    assert bad.status_code == 422 and bad.json()["field"] == "incident_id", bad.text


_FILES = ("events.jsonl", "sequences.txt", "verify.py", "README.txt")


async def test_verify_route_reports_every_chain(guarded: Service) -> None:
    async with httpx.AsyncClient(base_url=guarded.http_url, timeout=30) as http:
        await _seed(http, "One", notes=3)
        _, last = await _seed(http, "Two", notes=1)
        await guarded.projector.wait(last, timeout=10)
        for role in (Role.PRODUCER, Role.RESPONDER, Role.AUDITOR):
            assert (await http.get("/v1/verify", headers=as_role(role))).status_code == 403, role
        answer = await http.get("/v1/verify", headers=as_role(Role.ADMIN))
        strict = await http.get(
            "/v1/verify", params={"strict": "true"}, headers=as_role(Role.ADMIN)
        )

    assert answer.status_code == 200, answer.text
    report = answer.json()
    assert report["intact"] is True and report["strict"] is False
    assert strict.status_code == 200 and strict.json()["strict"] is True
    assert strict.json()["intact"] is True  # nothing expired: every chain starts at GENESIS
    assert (report["events_checked"], report["incidents_checked"]) == (6, 2)
    assert (report["first_seq"], report["last_seq"]) == (1, last)
    assert report["first_time"] is not None
    assert report["breaks"] == [] and report["missing"] == [] == report["starts_after_expiry"]


async def _cli(service: Service, *args: str, nats: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    if nats:
        env["INCIDENTS_NATS_URL"] = service.nats_url
    return await run_cli(env, *args)


async def test_cli_exports_and_verifies_straight_from_nats(
    service: Service, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    first, _ = await _seed(http, "CLI evidence")
    second, _ = await _seed(http, "CLI evidence 2", notes=0)
    one, everything = tmp_path / "one", tmp_path / "all"

    exported = await _cli(service, "export", first, "--out", str(one))
    assert exported.returncode == 0, exported.stderr
    assert "exported 3 events of 1 incidents" in exported.stdout
    digest = hashlib.sha256((one / "manifest.json").read_bytes()).hexdigest()
    assert digest in exported.stdout
    by_time = await _cli(
        service, "export", "--since", "2000-01-01T00:00:00Z", "--out", str(everything), "--json"
    )
    assert by_time.returncode == 0, by_time.stderr
    assert set(json.loads(by_time.stdout)["manifest"]["incidents"]) == {first, second}

    verified, as_json = await asyncio.gather(
        _cli(service, "verify"), _cli(service, "verify", "--strict", "--json")
    )
    offline = await _cli(service, "verify", "--bundle", str(one), nats=False)
    assert verified.returncode == 0 and "checked 4 events of 2 incidents" in verified.stdout
    assert verified.stdout.splitlines()[-1] == "intact", verified.stdout
    assert json.loads(as_json.stdout)["intact"] is True
    assert json.loads(as_json.stdout)["strict"] is True
    assert offline.returncode == 0 and offline.stdout.endswith("intact\n"), offline

    # One changed byte in the exported bundle: the offline check names the event.
    events = (one / "events.jsonl").read_bytes()
    (one / "events.jsonl").write_bytes(events.replace(b"note 1", b"note 7", 1))
    tampered = await _cli(service, "verify", "--bundle", str(one), nats=False)
    assert tampered.returncode == 1, tampered
    assert f"{first}: first break at line 3, seq" in tampered.stdout, tampered.stdout
    assert "hash does not match the stored bytes" in tampered.stdout


async def test_cli_refusals_cost_one_line(service: Service, tmp_path: Path) -> None:
    no_nats = await _cli(service, "verify", nats=False)
    assert "INCIDENTS_NATS_URL" in one_line_error(no_nats, 2)
    unreachable = await _cli(service, "verify", "--nats-url", "nats://127.0.0.1:9")
    assert "cannot reach NATS" in one_line_error(unreachable, 1)
    both = await _cli(service, "export", "INC-X1", "--since", "2026-01-01T00:00Z", "--out", "x")
    assert "--since" in one_line_error(both, 2)
    neither = await _cli(service, "export", "--out", str(tmp_path / "x"))
    assert "incident ID" in one_line_error(neither, 2)
    no_out = await _cli(service, "export", "INC-X1")
    assert "--out" in one_line_error(no_out, 2)
    unknown = await _cli(service, "export", "INC-NOSUCH1", "--out", str(tmp_path / "u"))
    assert "no events to export" in one_line_error(unknown, 2)
    assert not (tmp_path / "u").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    full = await _cli(service, "export", "INC-X1", "--out", str(tmp_path / "full"))
    assert "not an empty directory" in one_line_error(full, 2)
    not_bundle = await _cli(service, "verify", "--bundle", str(tmp_path), nats=False)
    assert "not an evidence bundle" in one_line_error(not_bundle, 2)
