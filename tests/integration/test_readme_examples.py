"""The README's AMQP producer example works as printed."""

from __future__ import annotations

import re
from pathlib import Path

import aio_pika
import pytest

from contracts import AudioUploadedV1
from scribe_runtime.topology import TRANSCRIBER_QUEUE, declare_topology

pytestmark = pytest.mark.integration

README = Path(__file__).resolve().parents[2] / "README.md"


def _producer_example() -> str:
    section = README.read_text().split("## Publishing audio from any AMQP client", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "the README lost its producer example"
    return match.group(1)


async def test_readme_producer_example_publishes_a_valid_upload(amqp_url: str) -> None:
    await declare_topology(amqp_url)
    code = _producer_example()
    code = code.replace('"amqp://guest:guest@127.0.0.1/"', repr(amqp_url))
    code = code.replace("asyncio.run(main())", "")
    namespace: dict[str, object] = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own docs
    await namespace["main"]()  # type: ignore[operator]

    connection = await aio_pika.connect(amqp_url)
    async with connection:
        channel = await connection.channel()
        queue = await channel.get_queue(TRANSCRIBER_QUEUE.name, ensure=False)
        message = await queue.get(no_ack=True, fail=True, timeout=10)
        assert message is not None
        assert message.type == "audio.uploaded.v1"
        event = AudioUploadedV1.model_validate_json(message.body)
        assert message.message_id == str(event.event_id)
        assert event.tenant_id == "default"
