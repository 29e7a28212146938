"""What routes take from the running app: intake, clock, live read models, the log.

Set once by `create_app`; read per request. The reader is looked up on every request because a
replay may swap in a new generation at any moment: a request sees one generation, whole.
"""

from datetime import datetime
from typing import Any

from litestar import Request

from events.store import EventStore
from services.clock import Clock
from services.readmodels import LiveModels, Reader
from services.write.intake import Intake

AnyRequest = Request[Any, Any, Any]


def intake_of(request: AnyRequest) -> Intake:
    intake: Intake = request.app.state.intake
    return intake


def now(request: AnyRequest) -> datetime:
    clock: Clock = request.app.state.clock
    return clock()


def models_of(request: AnyRequest) -> LiveModels:
    models: LiveModels = request.app.state.models
    return models


def reader_of(request: AnyRequest) -> Reader:
    return models_of(request).reader


def store_of(request: AnyRequest) -> EventStore:
    store: EventStore = request.app.state.store
    return store
