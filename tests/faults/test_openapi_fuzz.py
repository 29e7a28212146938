"""schemathesis against a real `incidents serve` and the OpenAPI document it serves (issue 16.6).

Every documented operation, authenticated as admin through a tokens file, with a fixed seed and
a bounded number of cases per operation (the examples and fuzzing phases, positive and negative
modes). Every check but one must pass: no 5xx, every status, content type, header and body as
documented (the `Error` shape included), invalid input refused, auth enforced. Left out:
- `positive_data_acceptance`: schema-valid input is often refused by the lifecycle (409) or
  aimed at an incident that does not exist (404), which is the right answer;
- `allow_header_conformance` (OPTIONS): Litestar 2 answers OPTIONS on a path whose methods
  come from two handlers (`GET` and `POST /v1/incidents`) with the first one's `Allow` only
  (litestar-org/litestar#4169, fixed in Litestar 3);
- the coverage phase, where undeclared methods are tried: with every answer right it runs
  ~15,000 cases (a minute); `test_an_undocumented_method_is_405_with_allow` checks the same;
- `POST /v1/admin/replay`: every accepted case would rebuild the read models (its refusals are
  covered by `tests/e2e/test_no_5xx.py`).
The run's figures (operations, cases, failed cases) are printed; `-s` shows them.
"""

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Final

import httpx
from serve_process import ServeProcess
from tests_support import TOKENS, as_role

from services.auth import Role, token_entry

SCHEMATHESIS = str(Path(sys.executable).parent / "schemathesis")
SEED = 16
CASES_PER_OPERATION = 10
LEFT_OUT_CHECKS = "positive_data_acceptance,allow_header_conformance"
LEFT_OUT_OPERATION = "V1AdminReplayStartReplay"


def _tokens_file(directory: Path) -> Path:
    path = directory / "tokens.toml"
    path.write_text("".join(token_entry(r.value, r, t) for r, t in TOKENS.items()))
    return path


def _figures(report: Path) -> dict[str, int]:
    """Operations tested, cases generated and cases that failed, from schemathesis' report."""
    run = json.loads(report.read_text())
    return {
        "operations": run["operations"]["tested"],
        "cases": run["test_cases"]["generated"],
        "failed": run["test_cases"]["with_failures"],
    }


def test_schemathesis_finds_no_failure_against_the_served_document(
    serve: Callable[..., ServeProcess], tmp_path: Path
) -> None:
    service = serve(INCIDENTS_TOKENS_FILE=str(_tokens_file(tmp_path)))
    service.wait_ready()
    report = tmp_path / "schemathesis.json"
    authorization = as_role(Role.ADMIN)["Authorization"]
    command = [
        SCHEMATHESIS,
        "run",
        f"{service.http_url}/schema/openapi.json",
        f"--header=Authorization: {authorization}",
        "--checks=all",
        f"--exclude-checks={LEFT_OUT_CHECKS}",
        f"--exclude-operation-id={LEFT_OUT_OPERATION}",
        "--phases=examples,fuzzing",
        "--mode=all",
        f"--max-examples={CASES_PER_OPERATION}",
        f"--seed={SEED}",
        "--generation-database=none",
        "--workers=1",
        "--request-timeout=30",
        "--no-color",
        "--report=json",
        f"--report-json-path={report}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    figures = _figures(report)
    print(f"schemathesis (seed {SEED}): {figures}")
    assert done.returncode == 0, done.stdout[-30_000:] + done.stderr[-5_000:]
    assert figures["operations"] > 40, figures
    assert figures["failed"] == 0, figures


# Methods no route of the document uses.
UNDOCUMENTED: Final = ("PUT", "PATCH", "DELETE")


def test_an_undocumented_method_is_405_with_allow(serve: Callable[..., ServeProcess]) -> None:
    """Every path of the document, asked with a method it does not document: 405, the `Error`
    body, and `Allow` naming the documented methods (HEAD and OPTIONS Litestar adds)."""
    service = serve()
    service.wait_ready()
    paths = service.get("/schema/openapi.json").json()["paths"]
    for path, operations in paths.items():
        documented = {method.upper() for method in operations}
        url = service.http_url + path.replace("{incident_id}", "INC-ALLOW001")
        for method in UNDOCUMENTED:
            answer = httpx.request(method, url, timeout=30)
            assert answer.status_code == 405, (method, path, answer.text)
            assert set(answer.json()) == {"error", "field", "detail"}, answer.text
            allowed = {m.strip() for m in answer.headers.get("allow", "").split(",")}
            assert documented <= allowed <= documented | {"HEAD", "OPTIONS"}, (path, allowed)
