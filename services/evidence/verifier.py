"""Verify an incident-timeline evidence bundle with nothing but Python 3's standard library.

    python3 verify.py BUNDLE_DIR     (exit 0: intact; 1: a check failed, each failure printed)

Checks the SHA-256 of every file the manifest lists; each event's hash over its stored bytes
with `"hash":"<h>"` emptied; each incident's links from the manifest's `prev_hash` on; and each
incident's event count and chain head against the manifest. Ships inside every bundle.
"""

import hashlib
import json
import re
import sys
from pathlib import Path


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.is_file() else b""  # a missing file fails its hash


def _shown(value: object) -> str:
    """Tampered text printed safely: control characters escaped, one line."""
    return repr(str(value))[1:-1]


def check(bundle: Path) -> list[str]:
    """What does not hold, one line each; the first break per incident names seq and event."""
    try:
        manifest = json.loads((bundle / "manifest.json").read_bytes())
        files = dict(manifest["files"])
        # per incident: (the hash its first event links to, event count, chain head)
        wanted = {
            i: (e["prev_hash"], e["events"], e["head"]) for i, e in manifest["incidents"].items()
        }
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [f"manifest.json: unreadable ({exc})"]
    problems = []
    for name, expected in files.items():
        path = bundle / Path(name).name
        actual = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"
        if actual != expected:
            problems.append(f"{name}: sha256 {actual}, the manifest says {expected}")
    lines = _read(bundle / "events.jsonl").splitlines()
    seqs = _read(bundle / "sequences.txt").split()
    if len(lines) != len(seqs):
        problems.append(f"events.jsonl has {len(lines)} lines, sequences.txt {len(seqs)}")
    heads = {incident: prev_hash for incident, (prev_hash, _, _) in wanted.items()}
    counts = dict.fromkeys(wanted, 0)
    broken: set[str] = set()
    for n, raw in enumerate(lines):
        at = f"line {n + 1}, seq {seqs[n].decode() if n < len(seqs) else '?'}"
        try:
            event = json.loads(raw)
            incident, event_id, claimed = event["incident_id"], event["event_id"], event["hash"]
            needle = b'"hash":"' + claimed.encode() + b'"'
        except (ValueError, KeyError, TypeError, AttributeError):
            named = re.search(rb'"event_id":"([^"]*)"', raw)
            label = f", event {_shown(named[1].decode(errors='replace'))}" if named else ""
            problems.append(f"{at}{label}: not a JSON event")
            continue
        if incident in broken:
            continue
        if incident not in heads:
            reason = "incident not in the manifest"
        elif event.get("prev_hash") != heads[incident]:
            reason = "prev_hash does not link to the previous event"
        elif raw.count(needle) != 1 or (
            hashlib.sha256(raw.replace(needle, b'"hash":""')).hexdigest() != claimed
        ):
            reason = "hash does not match the stored bytes"
        else:
            heads[incident], counts[incident] = claimed, counts[incident] + 1
            continue
        broken.add(incident)
        problems.append(
            f"{_shown(incident)}: first break at {at}, event {_shown(event_id)}: {reason}"
        )
    for incident, (_, events, head) in wanted.items():
        if incident not in broken and (counts[incident], heads[incident]) != (events, head):
            problems.append(
                f"{incident}: {counts[incident]} events, head {heads[incident]}; "
                f"the manifest says {events}, head {head}"
            )
    return problems


def main(argv: list[str]) -> int:
    bundle = Path(argv[1] if len(argv) > 1 else ".")
    problems = check(bundle)
    for problem in problems:
        print(problem)
    print(f"{bundle}: {'FAILED' if problems else 'intact'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
