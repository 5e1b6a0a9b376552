"""AsyncAPI 3.0 documents of the services, generated from their FastStream brokers.

FastStream documents what a broker knows: its servers, subscribers (queue, bindings) and
publishers. Two things it cannot infer here, so this module supplies them:

- what each subscriber consumes: `subscribe_events` takes the raw `RabbitMessage` and
  decodes it by contract itself (so a violation is dead-lettered with a reason instead of
  being rejected by the framework), which FastStream sees as an empty payload. The
  consumed event classes are recorded at subscription and written in as a `oneOf` of
  the contract's JSON Schemas;
- what each service publishes: `publish_event` publishes through the broker directly,
  so `document_publishers` registers one FastStream publisher per event type, with its
  contract model as the schema. They are never used to publish; they cost nothing per
  message.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from typing import Any, Final

from faststream.rabbit import RabbitBroker
from faststream.specification import AsyncAPI

from contracts.envelope import Event
from scribe_runtime.topology import EVENTS_EXCHANGE

DOCUMENTED_AMQP_URL: Final = "amqp://rabbitmq:5672/"
"""The server the documents name (compose's RabbitMQ), so they don't depend on settings."""

_SCHEMAS: Final = "#/components/schemas/"
_consumed: weakref.WeakKeyDictionary[RabbitBroker, dict[str, tuple[type[Event], ...]]] = (
    weakref.WeakKeyDictionary()
)


def record_consumer(broker: RabbitBroker, queue: str, accepts: tuple[type[Event], ...]) -> None:
    """Remember which events `queue`'s subscriber on `broker` consumes (for its document)."""
    _consumed.setdefault(broker, {})[queue] = accepts


def document_publishers(broker: RabbitBroker, events: Iterable[type[Event]]) -> None:
    """Declare, for the document, each event type this service publishes to `scribe.events`."""
    for cls in events:
        key = cls.routing_key()
        broker.publisher(
            exchange=EVENTS_EXCHANGE,
            routing_key=key,
            persist=True,
            mandatory=True,
            message_type=key,
            content_type="application/json",
            title=key,
            description=(cls.__doc__ or "").strip() or None,
            schema=cls,
        )


def asyncapi_document(broker: RabbitBroker, *, title: str, description: str) -> dict[str, Any]:
    """The broker's AsyncAPI 3.0 document as a JSON-ready dict (nothing connects)."""
    spec = AsyncAPI(
        broker, title=title, version="1", description=description, schema_version="3.0.0"
    )
    document: dict[str, Any] = spec.to_specification().to_jsonable()
    consumed = _consumed.get(broker, {})
    schemas: dict[str, Any] = document.setdefault("components", {}).setdefault("schemas", {})
    messages: dict[str, Any] = document["components"].get("messages", {})
    for channel in document.get("channels", {}).values():
        queue = channel.get("bindings", {}).get("amqp", {}).get("queue", {}).get("name")
        if queue not in consumed or channel.get("bindings", {}).get("amqp", {}).get("is") != (
            "queue"
        ):
            continue
        for reference in channel.get("messages", {}).values():
            name = reference["$ref"].rsplit("/", 1)[-1]
            message = messages[name]
            message["payload"] = {
                "oneOf": [{"$ref": _SCHEMAS + cls.__name__} for cls in consumed[queue]]
            }
            message["contentType"] = "application/json"
            message["description"] = (
                "Any of these events; the AMQP `type` property (= routing key, "
                "`<type>.v<version>`) says which. Malformed or unknown ones are moved to "
                f"`{queue}.dlq` with the reason in `x-scribe-dead-letter-*` headers."
            )
        for cls in consumed[queue]:
            _add_schema(schemas, cls)
    if not any("EmptyPayload" in str(m.get("payload")) for m in messages.values()):
        schemas.pop("EmptyPayload", None)
    return document


def _add_schema(schemas: dict[str, Any], cls: type[Event]) -> None:
    schema = cls.model_json_schema(ref_template=_SCHEMAS + "{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(cls.__name__, schema)
