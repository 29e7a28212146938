"""The postmortem's retrospective: the sections of the runbooks' templates that people fill in
(root cause, five whys, what went well or wrong, where we got lucky, lessons, preventive
measures), action items, the review meeting, and the document's own status for its header.

Notes feed the sections by their kind; a section keeps its placeholder only while no note of
its kind exists. Pure over `chronicle` entries not retracted (`live`, in effective-time order),
like the rest of the draft (`projections.postmortem`).
"""

from collections.abc import Iterable, Sequence
from typing import Final

from projections import wording
from projections.chronicle import Entry
from projections.markdown import because, bullet, cell, table, utc, when
from projections.wording import TO_BE_WRITTEN

# Each section people write: (heading, note kind), in the runbooks' order (runbook 001's
# template, with runbook 003's "Where we got lucky").
ANALYSIS: Final = (("Root cause", "root_cause"), ("Five whys", "five_whys"))
LESSONS: Final = (
    ("What went well", "went_well"),
    ("What went wrong", "went_wrong"),
    ("Where we got lucky", "lucky"),
    ("Lessons", "lesson"),
)


def notes(live: Iterable[Entry], kind: str, empty: str, numbered: bool = False) -> list[str]:
    """The notes of `kind` as a list, each with who wrote it and when; `empty` without any."""
    found = [
        e for e in live if e.type == "incident.note_added" and e.body.get("kind", "note") == kind
    ]
    return [
        bullet(
            str(e.body.get("text")),
            f"{wording.by(e)}, {when(e.at)}" + " (corrected)" * e.corrected,
            f"{n}." if numbered else "-",
        )
        for n, e in enumerate(found, start=1)
    ] or [empty]


def _subsections(live: Sequence[Entry], sections: Iterable[tuple[str, str]]) -> list[str]:
    lines: list[str] = []
    for title, kind in sections:
        found = notes(live, kind, TO_BE_WRITTEN, numbered=kind == "five_whys")
        lines += ["", f"### {title}", "", *found]
    return lines


def analysis(live: Sequence[Entry]) -> list[str]:
    """Root cause, the five whys (numbered, in order), and the decisions taken."""
    decisions = ["", "### Decisions", "", *notes(live, "decision", "_None recorded._")]
    return ["## Root cause and decisions", *_subsections(live, ANALYSIS), *decisions]


def lessons(live: Sequence[Entry]) -> list[str]:
    return ["## Lessons learned", *_subsections(live, LESSONS)]


def prevention(live: Sequence[Entry]) -> list[str]:
    return ["## Preventive measures", "", *notes(live, "prevention", TO_BE_WRITTEN)]


def _status(item_id: str, live: Sequence[Entry]) -> str:
    """The item's status by its latest event: todo, in progress since, done when."""
    moves = [
        e
        for e in live
        if e.type in ("action_item.started", "action_item.completed")
        and str(e.body.get("item_id")) == item_id
    ]
    done = next((e for e in moves if e.type == "action_item.completed"), None)
    if done is not None:
        return f"done ({when(done.at)})"
    if moves:
        return f"in progress (since {when(moves[0].at)})"
    return "todo"


def action_items(live: Sequence[Entry]) -> list[str]:
    """Each item as the runbooks' tables have it: owner, priority, due date, status, ticket."""
    rows = [
        [
            cell(e.body.get("item_id")),
            cell(e.body.get("title")),
            cell(e.body.get("owner")) or "_unassigned_",
            cell(e.body.get("priority")),
            cell(e.body.get("due")),
            _status(str(e.body.get("item_id")), live),
            cell(e.body.get("ticket_url")),
        ]
        for e in live
        if e.type == "action_item.added"
    ]
    headers = ["Id", "Action", "Owner", "Priority", "Due", "Status", "Ticket"]
    return ["## Action items", "", *(table(headers, rows) if rows else ["_None yet._"])]


def _reviews(live: Sequence[Entry]) -> list[Entry]:
    """Review meetings, the earliest held first."""
    found = [e for e in live if e.type == "postmortem.reviewed"]
    return sorted(found, key=lambda e: (utc(e.body["held_at"]), e.seq))


def _attendees(e: Entry) -> str:
    return cell(", ".join(e.body.get("attendees") or []))


def review(live: Sequence[Entry]) -> list[str]:
    """The review meetings held: when, who attended, what they concluded."""
    rows = [
        [
            when(e.body["held_at"]),
            _attendees(e) or "_none named_",
            cell(e.body.get("summary")),
            cell(wording.by(e)),
        ]
        for e in _reviews(live)
    ]
    headers = ["Held (UTC)", "Attendees", "Summary", "Recorded by"]
    body = table(headers, rows) if rows else ["_No review meeting recorded yet._"]
    return ["## Review", "", *body]


def header(live: Sequence[Entry]) -> list[tuple[str, str]]:
    """The document's own rows for the header table: its status and authors as the latest
    publication says (a publication naming no authors keeps the earlier ones, as the fold
    does), where it is published, and its first review."""
    published = sorted((e for e in live if e.type == "postmortem.published"), key=lambda e: e.seq)
    reviews = _reviews(live)
    if reviews:
        who, more = _attendees(reviews[0]), len(reviews) - 1
        held = when(reviews[0].body["held_at"]) + (f" with {who}" if who else "")
        held += f" (and {more} more, see Review)" if more else ""
    else:
        held = "_not held_"
    if not published:
        return [("Postmortem status", "_not published_"), ("Postmortem review", held)]
    latest = published[-1]
    # A record from before statuses was a published, final document.
    status = str(latest.body.get("status") or "final")
    authors: list[str] = next(
        (e.body["authors"] for e in reversed(published) if e.body.get("authors")), []
    )
    where = str(latest.body.get("uri") or "inline Markdown")
    return [
        ("Postmortem status", f"{cell(status)} (published {when(latest.at)})"),
        ("Postmortem authors", cell(", ".join(authors)) or "_none named_"),
        ("Published postmortem", cell(because(where, latest.body.get("summary")))),
        ("Postmortem review", held),
    ]
