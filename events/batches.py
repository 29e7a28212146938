"""JetStream atomic batch publish (ADR-50) over raw headers: nats-py has no helper for it.

All messages of a batch are stored, or none: the server holds them until the last one, which
carries `Nats-Batch-Commit`, and answers that one alone (at most 1,000 messages a batch).
"""

import uuid
from collections.abc import Sequence

import msgspec
import nats.js.errors
from nats.aio.client import Client as NATS

Message = tuple[str, bytes, dict[str, str]]  # subject, data, headers


async def publish_atomic(nc: NATS, messages: Sequence[Message], timeout: float) -> int:
    """Publish `messages` as one batch; the stream sequence of the last, or `APIError`."""
    # Unique per attempt: two writers sending the same events at once (replicas taking the
    # same delivery) must not share a batch, or the stream leader sees their messages
    # interleaved under one id and refuses both as incomplete (10176).
    batch_id = uuid.uuid4().hex
    last = len(messages)
    for index, (subject, data, headers) in enumerate(messages, start=1):
        headers = {**headers, "Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(index)}
        if index < last:
            await nc.publish(subject, data, headers=headers)
            continue
        headers["Nats-Batch-Commit"] = "1"
        reply = await nc.request(subject, data, timeout=timeout, headers=headers)
    answer = msgspec.json.decode(reply.data)
    if "error" in answer:
        error = answer["error"]
        raise nats.js.errors.APIError(
            code=error.get("code"),
            err_code=error.get("err_code"),
            description=error.get("description"),
        )
    return int(answer["seq"])
