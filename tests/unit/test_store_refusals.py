"""What each JetStream refusal of an append means to the writer (events.store.refused).

A clustered stream answers 10158 while another writer's message with the same id is staged and
not yet committed (nats-server's JSStreamDuplicateMessageConflict: it may still land), and 10176
when a replica did not see a whole atomic batch (JSAtomicPublishIncompleteBatchErr: nothing
stored). Neither is a fault of the request: the first is decided again (the reload finds the
stored original), the second is a 503 with Retry-After. Both were 500s before, and so was a
clustered leader's form of "wrong last sequence" (10164, where a single server says 10071).
"""

import nats.js.errors
import pytest

from events.store import ConcurrencyError, StoreUnavailableError, refused


def _api_error(code: int, err_code: int, description: str) -> nats.js.errors.APIError:
    return nats.js.errors.APIError(code=code, err_code=err_code, description=description)


@pytest.mark.parametrize(
    ("code", "err_code", "description"),
    [
        (400, 10071, "wrong last sequence: 7"),
        (400, 10164, "wrong last sequence"),
        (400, 10201, "atomic publish batch has a duplicate message id"),
        (409, 10158, "duplicate message id is in process"),
    ],
)
def test_decide_again(code: int, err_code: int, description: str) -> None:
    with pytest.raises(ConcurrencyError) as info:
        refused(_api_error(code, err_code, description), "INC-1", 7)
    assert info.value.expected_seq == 7
    assert description in str(info.value)


def test_an_incomplete_batch_is_unavailable() -> None:
    with pytest.raises(StoreUnavailableError, match="whole batch"):
        refused(_api_error(400, 10176, "atomic publish batch is incomplete"), "INC-1", 7)


def test_anything_else_is_the_error_itself() -> None:
    error = _api_error(400, 10077, "maximum messages exceeded")
    with pytest.raises(nats.js.errors.APIError) as info:
        refused(error, "INC-1", 7)
    assert info.value is error
