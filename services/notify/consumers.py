"""The notifier's positions in the log: one durable JetStream pull consumer per route.

`notify-<route>` is filtered on the event types the route is told about
(`incidents.*.<type>`), acknowledges each message explicitly, and starts, when first created,
at the log's end (`DeliverPolicy.NEW`: a route added to a long-running service is not flooded
with history). From then on it is the route's position: it survives restarts of the service
and of nats-server, and moves only when a message is acknowledged. A route that is down does
not hold the others back. The consumer of a route removed from the policy is deleted at start.
"""

import logging
from typing import Any, Final

from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from events.notifications import Route
from events.subjects import INCIDENTS_PREFIX

log = logging.getLogger("incidents")

PREFIX: Final = "notify-"
# Redelivered only if not acknowledged nor kept alive (`deliver.KEEPALIVE_EVERY_S`) this long.
ACK_WAIT_S: Final = 60.0


def name(route: Route) -> str:
    return PREFIX + route.name


def config(route: Route, after_seq: int | None = None) -> ConsumerConfig:
    """`after_seq`: where to start a consumer created again (a nats-server that restarted
    lost it), the last stream sequence this route acknowledged; None: at the log's end."""
    return ConsumerConfig(
        name=name(route),
        durable_name=name(route),
        description=f"incident-timeline notifier, route {route.name}",
        deliver_policy=DeliverPolicy.NEW if after_seq is None else DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=None if after_seq is None else after_seq + 1,
        ack_policy=AckPolicy.EXPLICIT,
        ack_wait=ACK_WAIT_S,
        max_deliver=-1,  # at least once: a message is never given up
        max_ack_pending=1,  # one at a time, in log order
        filter_subjects=[f"{INCIDENTS_PREFIX}.*.{kind}" for kind in sorted(route.events)],
    )


async def ensure(js: JetStreamContext, stream: str, route: Route) -> None:
    """Create the route's consumer, or bring an existing one's filter up to date (its
    position is kept)."""
    await js.add_consumer(stream, config(route))


async def subscribe(
    js: JetStreamContext, stream: str, route: Route, after_seq: int | None = None
) -> Any:
    """Bind to the route's consumer; one that is gone or behind what this route acknowledged
    (a killed nats-server may lose either) is created again from just after `after_seq`."""
    try:
        info = await js.consumer_info(stream, name(route))
    except NotFoundError:
        await js.add_consumer(stream, config(route, after_seq))
    else:
        floor = info.ack_floor.stream_seq if info.ack_floor else 0
        if after_seq is not None and (floor or 0) < after_seq:
            # A killed nats-server lost acknowledgements this route made: with one message in
            # flight at a time, the consumer would wait out `ACK_WAIT_S` on a message already
            # told. Start it again just after what was acknowledged (all recorded).
            await js.delete_consumer(stream, name(route))
            await js.add_consumer(stream, config(route, after_seq))
        else:
            await ensure(js, stream, route)
    return await js.pull_subscribe_bind(durable=name(route), stream=stream)


async def forget_removed(js: JetStreamContext, stream: str, routes: tuple[Route, ...]) -> None:
    """Delete the consumers of routes no longer in the policy (or told of no event type)."""
    kept = {name(route) for route in routes if route.events}
    for info in await js.consumers_info(stream):
        consumer = info.name or ""
        if consumer.startswith(PREFIX) and consumer not in kept:
            await js.delete_consumer(stream, consumer)
            log.warning(
                "notifier: consumer %s deleted (its route is gone from the policy or is told "
                "of no event); added again, it starts at the end of the log",
                consumer,
            )
