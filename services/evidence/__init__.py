"""Evidence from the log: bundles an auditor verifies offline, and a check of every hash chain.

Both work on the stream's raw records, read without decoding, so damaged bytes are reported
instead of raised. Used by `incidents export|verify` (straight from NATS) and by the admin
routes `GET /v1/incidents/{id}/export` (a tar.gz) and `GET /v1/verify` (a JSON report).

`log` reads the raw records, `verify` checks the chains, `bundle` writes bundles, `verifier` is
the stand-alone script shipped in each bundle, `cli` holds the two verbs.
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
from services.evidence.cli import export_command, verify_command
from services.evidence.log import EvidenceError, Gap, Log, Record, StreamState
from services.evidence.verify import Report, describe, verify_log

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
    "export_command",
    "packed_bundle",
    "verifier_source",
    "verify_command",
    "verify_log",
]
