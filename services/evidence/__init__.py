"""Evidence from the log: bundles an auditor verifies offline, and a check of every hash chain.

Both work on the stream's raw records, read without decoding, so damaged bytes are reported
instead of raised. Used by `incidents export|verify` (straight from NATS) and by the admin
routes `GET /v1/incidents/{id}/export` (a tar.gz) and `GET /v1/verify` (a JSON report).

`log` reads the raw records, `chains` checks every hash chain, `bundle` writes bundles,
`verifier` is the stand-alone script shipped in each bundle as verify.py. The CLI verbs live
in `services.cli.evidence`.
"""

from services.evidence.bundle import (
    SUMS_COMMAND,
    Manifest,
    Packed,
    Selection,
    export,
    packed_bundle,
    verifier_source,
)
from services.evidence.chains import Report, describe, verify_log
from services.evidence.log import EvidenceError, Gap, Log, Record, StreamState

__all__ = [
    "SUMS_COMMAND",
    "EvidenceError",
    "Gap",
    "Log",
    "Manifest",
    "Packed",
    "Record",
    "Report",
    "Selection",
    "StreamState",
    "describe",
    "export",
    "packed_bundle",
    "verifier_source",
    "verify_log",
]
