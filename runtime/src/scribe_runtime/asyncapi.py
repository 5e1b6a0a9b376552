"""AsyncAPI 3.0 documents of the services, generated from their FastStream brokers.

FastStream documents what a broker knows: its servers, subscribers (queue, bindings) and
publishers. What each service publishes is declared once, as FastStream publishers, by
`scribe_runtime.publishing.EventPublisher`, which is also what publishes: the document
cannot miss an event the service sends. One thing FastStream cannot infer here, so this
module supplies it: what each subscriber consumes. `subscribe_events` takes the raw
delivery and decodes it by contract itself (so a violation is dead-lettered with a reason
instead of being rejected by the framework), which FastStream sees as an empty payload.
The consumed event classes are recorded at subscription and written in as a `oneOf` of
the contract's JSON Schemas.
"""

from __future__ import annotations

import weakref
from typing import Any, Final

from faststream.rabbit import RabbitBroker
from faststream.specification import AsyncAPI

from contracts.envelope import Event
from scribe_runtime.amqp import HEADER_DEAD_LETTER_CODE, HEADER_DEAD_LETTER_REASON

DOCUMENTED_AMQP_URL: Final = "amqp://rabbitmq:5672/"
"""The server the documents name (compose's RabbitMQ), so they don't depend on settings."""

_SCHEMAS: Final = "#/components/schemas/"
_consumed: weakref.WeakKeyDictionary[RabbitBroker, dict[str, tuple[type[Event], ...]]] = (
    weakref.WeakKeyDictionary()
)


def record_consumer(broker: RabbitBroker, queue: str, accepts: tuple[type[Event], ...]) -> None:
    """Remember which events `queue`'s subscriber on `broker` consumes (for its document)."""
    _consumed.setdefault(broker, {})[queue] = accepts


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
                f"`{queue}.dlq` with the reason in `{HEADER_DEAD_LETTER_CODE}` and "
                f"`{HEADER_DEAD_LETTER_REASON}` headers."
            )
        for cls in consumed[queue]:
            _add_schema(schemas, cls)
    _drop_unreferenced(document)
    # FastStream keeps publishers in a WeakSet: sorted, the committed files stay stable.
    for section in (document.get("channels", {}), document.get("operations", {}), messages):
        ordered = sorted(section.items())
        section.clear()
        section.update(ordered)
    return document


def _drop_unreferenced(document: dict[str, Any]) -> None:
    """Drop the schemas nothing refers to (FastStream's guesses that were replaced)."""
    schemas: dict[str, Any] = document["components"]["schemas"]
    rest = {k: v for k, v in document.items() if k != "components"} | {
        "messages": document["components"].get("messages", {})
    }
    wanted: set[str] = set()
    pending = _references(rest)
    while pending:
        name = pending.pop()
        if name not in wanted and name in schemas:
            wanted.add(name)
            pending |= _references(schemas[name])
    for name in set(schemas) - wanted:
        del schemas[name]


def _references(node: Any) -> set[str]:
    """Names of the component schemas `node` refers to (`$ref`), at any depth."""
    if isinstance(node, list):
        return set().union(*(_references(item) for item in node))
    if not isinstance(node, dict):
        return set()
    ref = node.get("$ref")
    found = (
        {ref.removeprefix(_SCHEMAS)} if isinstance(ref, str) and ref.startswith(_SCHEMAS) else set()
    )
    return found.union(*(_references(value) for value in node.values()))


def _add_schema(schemas: dict[str, Any], cls: type[Event]) -> None:
    schema = cls.model_json_schema(ref_template=_SCHEMAS + "{model}")
    for name, definition in schema.pop("$defs", {}).items():
        schemas.setdefault(name, definition)
    schemas.setdefault(cls.__name__, schema)
