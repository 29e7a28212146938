"""Change records: deploys and config pushes (PagerDuty change events), outside any incident.

A `change.recorded` record belongs to no incident (DESIGN 6): it lives in the log's stream on
`changes.<sender>.<digest>`, where `sender` stands for whoever sent it (a digest of the PagerDuty
routing key, never the key itself: with tokens on it is a producer's secret) and `digest` for
what was sent. It is evidence like every record of the log (same retention), and the read
models show the changes made shortly before an incident was detected.

Pure, like the event schema: the intake appends records (`services.write.intake`), the
projector folds them into the `changes` table (`projections.changes`).
"""

from typing import Annotated, Any, ClassVar, Final

import msgspec
from msgspec import Meta, Struct

from events.schema import (
    MAX_SHORT,
    EventId,
    Name,
    Principal,
    Short,
    Source,
    Text,
    Uri,
    UtcDatetime,
)
from events.subjects import CHANGES_PREFIX

CHANGE_TYPE: Final = "change.recorded"
Digest = Annotated[str, Meta(pattern=r"^[0-9a-f]{32}\Z")]


class ChangeError(ValueError):
    """A stored record that is not a change record this version reads."""


class ChangeLink(Struct, frozen=True, kw_only=True, gc=False):
    """A link the sender attached (a build, a diff, a deploy log): PagerDuty's `{href, text}`."""

    href: Uri
    text: Text = ""


class ChangeRecorded(
    Struct, frozen=True, kw_only=True, gc=False, tag_field="type", tag=CHANGE_TYPE
):
    """One change as the log holds it. `source` is the channel (`pagerduty`), `host` what the
    sender named as the change's source (PagerDuty's `payload.source`)."""

    SCHEMA_VERSION: ClassVar[int] = 1

    change_id: EventId  # also the message id: a digest of the routing key and what was sent
    sender: Digest  # a digest of the routing key: who sent it, without the key
    occurred_at: UtcDatetime  # payload.timestamp, else when it reached us
    recorded_at: UtcDatetime
    actor: Name
    source: Source
    principal: Principal
    summary: Annotated[str, Meta(min_length=1, max_length=MAX_SHORT)]
    host: Short = ""
    custom_details: Any = None
    links: tuple[ChangeLink, ...] = ()
    schema_version: Annotated[int, Meta(ge=1)] = 1


# Sorted keys, like the events: one byte form per record.
_encoder: Final = msgspec.json.Encoder(order="sorted")
_decoder: Final = msgspec.json.Decoder(ChangeRecorded)


def encode(record: ChangeRecorded) -> bytes:
    return _encoder.encode(record)


def decode(data: bytes | str) -> ChangeRecorded:
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # ValidationError included
        raise ChangeError(str(exc)) from exc


def subject(record: ChangeRecorded) -> str:
    """`changes.<sender>.<digest>`: one subject per change, under its sender's prefix."""
    return f"{CHANGES_PREFIX}.{record.sender}.{record.change_id.rsplit('-', 1)[-1]}"
