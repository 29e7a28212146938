"""The scale-out files are valid for the tools that read them (no Docker engine runs here)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def test_compose_file_follows_the_compose_spec() -> None:
    result = subprocess.run(
        [
            BIN / "check-jsonschema",
            "--builtin-schema",
            "vendor.compose-spec",
            ROOT / "compose.yaml",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_cluster_nats_config_is_valid_for_nats_server() -> None:
    env = {
        **os.environ,
        "SERVER_NAME": "nats-1",
        "INCIDENTS_NATS_PASSWORD": "service-secret",
        "PRODUCER_NATS_PASSWORD": "producer-secret",
    }
    result = subprocess.run(
        [BIN / "nats-server", "-t", "-c", ROOT / "deploy" / "nats" / "nats.conf"],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is valid" in result.stdout + result.stderr
