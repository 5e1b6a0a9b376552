"""The events a service publishes, declared once as FastStream publishers.

A service builds one `EventPublisher` on its broker with every event type it publishes.
Each becomes a FastStream publisher with the contract model as its schema, so the same
declaration both sends the events and writes the publish side of the service's AsyncAPI
document: an event the service publishes cannot be missing from the document, and
publishing one it did not declare raises instead of going out undocumented.
"""

from __future__ import annotations

from collections.abc import Iterable

from faststream.rabbit import RabbitBroker
from faststream.rabbit.publisher import RabbitPublisher

from contracts import routing
from contracts.envelope import Event
from scribe_runtime import metrics
from scribe_runtime.failover import channel_renewer, publish_confirmed
from scribe_runtime.messaging import event_properties
from scribe_runtime.topology import EVENTS_EXCHANGE


class UndeclaredEventError(LookupError):
    """A service published an event type its `EventPublisher` was not built with."""


class EventPublisher:
    """Publishes the declared event types to `scribe.events`, persistent and confirmed."""

    def __init__(self, broker: RabbitBroker, events: Iterable[type[Event]]) -> None:
        self._publishers: dict[type[Event], RabbitPublisher] = {}
        self._renewer = channel_renewer(broker)
        for cls in events:
            key = cls.routing_key()
            self._publishers[cls] = broker.publisher(
                exchange=EVENTS_EXCHANGE,
                routing_key=key,
                persist=True,
                mandatory=True,
                message_type=key,
                content_type=routing.CONTENT_TYPE,
                title=key,
                description=(cls.__doc__ or "").strip() or None,
                schema=cls,
            )

    @property
    def routing_keys(self) -> frozenset[str]:
        """The routing keys of the declared events."""
        return frozenset(cls.routing_key() for cls in self._publishers)

    async def publish(self, event: Event, *, routing_key: str | None = None) -> None:
        """Publish `event`; returns once the broker confirmed it, sent again on the restored
        connection when the connection was lost before the confirm, and on a new channel
        when the broker nacked it (`failover.publish_confirmed`).

        `routing_key`: another key than the event's own (a work item routed to a pool).
        """
        try:
            publisher = self._publishers[type(event)]
        except KeyError:
            raise UndeclaredEventError(
                f"{event.routing_key()} is not among the declared events "
                f"{sorted(self.routing_keys)}"
            ) from None
        try:
            body = event.model_dump_json().encode()
            properties = event_properties(event)
            # "" (FastStream's default) is the publisher's own key.
            key = routing_key or ""
            await publish_confirmed(
                lambda: publisher.publish(body, routing_key=key, **properties),
                renewer=self._renewer,
            )
        except BaseException:
            metrics.EVENT_PUBLISH_FAILURES.labels(event.message_type).inc()
            raise
        metrics.EVENTS_PUBLISHED.labels(event.message_type).inc()
