"""The CLI over HTTPS with a private CA (issue 14): `INCIDENTS_CA_FILE` names the CA the
verbs trust, against a real `incidents serve` with `INCIDENTS_TLS_CERT` / `INCIDENTS_TLS_KEY`
and a throw-away CA (trustme). Without the CA file the certificate is refused (exit 1); a CA
file that is not one is bad input (exit 2, one line naming the variable).
"""

import json
import os
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import trustme
from serve_process import ServeProcess
from tests_support import INCIDENTS, one_line_error


def cli(url: str | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("INCIDENTS_")}
    environ |= ({"INCIDENTS_URL": url} if url else {}) | env
    return subprocess.run(
        [INCIDENTS, *args], capture_output=True, text=True, env=environ, timeout=60
    )


def test_the_cli_trusts_the_ca_file_it_is_given(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))

    process = serve(INCIDENTS_TLS_CERT=str(chain), INCIDENTS_TLS_KEY=str(key))
    line = process.wait_for("incidents ready")
    found = re.search(r"(https://127\.0\.0\.1:\d+)", line)
    assert found, line
    url = found.group(1)

    declared = cli(
        url, "declare", "Checkout 5xx", "-s", "P2", "--id", "INC-TLS1", "--json",
        INCIDENTS_CA_FILE=str(ca_file),
    )  # fmt: skip
    assert declared.returncode == 0, declared.stderr
    assert json.loads(declared.stdout)["events"][0]["type"] == "incident.declared"
    noted = cli(url, "note", "INC-TLS1", "over TLS", INCIDENTS_CA_FILE=str(ca_file))
    assert noted.returncode == 0, noted.stderr
    shown = cli(url, "timeline", "INC-TLS1", "--json", INCIDENTS_CA_FILE=str(ca_file))
    assert shown.returncode == 0, shown.stderr
    types = [event["type"] for event in json.loads(shown.stdout)["events"]]
    assert types == ["incident.declared", "incident.note_added"]

    # Found through the runtime file of `serve` too, https and all.
    listed = cli(
        None, "list", "--json",
        INCIDENTS_DATA_DIR=str(process.data_dir), INCIDENTS_CA_FILE=str(ca_file),
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr
    assert [i["incident_id"] for i in json.loads(listed.stdout)["incidents"]] == ["INC-TLS1"]

    # The private CA is not among the public ones: without the file the server is not trusted.
    untrusted = cli(url, "list")
    reason = one_line_error(untrusted, 1)
    assert "CERTIFICATE_VERIFY_FAILED" in reason or "certificate verify failed" in reason

    # The CA file alone is trusted: another (public or private) CA does not vouch for it.
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    one_line_error(cli(url, "list", INCIDENTS_CA_FILE=str(other)), 1)

    missing = cli(url, "list", INCIDENTS_CA_FILE=str(tmp_path / "nope.pem"))
    assert "INCIDENTS_CA_FILE=" in one_line_error(missing, 2)
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("not a certificate\n")
    refused = cli(url, "list", INCIDENTS_CA_FILE=str(not_pem))
    assert f"INCIDENTS_CA_FILE={not_pem}: not a readable PEM CA file" in one_line_error(refused, 2)
