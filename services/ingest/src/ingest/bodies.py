"""A request body as it streams in, bounded in time: a stalled, a crawling or a vanished
client becomes a failure class, not a slot held forever nor a traceback.

A slow client holds one of its tenant's upload slots, a temp file and a task for as long
as it keeps the body coming; without a bound, eight clients sending a byte every ten
seconds keep a tenant at 429 indefinitely. Two bounds free them: no gap between chunks
longer than `idle_seconds`, and after `grace_seconds` at least `min_bytes_per_second` on
average. A client that disconnects mid-body is an expected outcome (`upload_abandoned`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from starlette.requests import ClientDisconnect

from ingest.failures import ClientGoneError, TooSlowError


@dataclass(frozen=True, slots=True)
class BodyPace:
    """How slowly a body may arrive (`SCRIBE_INGEST_UPLOAD_*`)."""

    idle_seconds: float
    min_bytes_per_second: int
    grace_seconds: float


async def paced(chunks: AsyncIterator[bytes], pace: BodyPace) -> AsyncIterator[bytes]:
    """`chunks` as they come, raising `TooSlowError` or `ClientGoneError` per the bounds."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    received = 0
    iterator = aiter(chunks)
    while True:
        try:
            async with asyncio.timeout(pace.idle_seconds):
                chunk = await anext(iterator)
        except StopAsyncIteration:
            return
        except TimeoutError:
            raise TooSlowError(
                f"no body bytes for {pace.idle_seconds:g} s; send the body without pauses"
            ) from None
        except ClientDisconnect:
            raise ClientGoneError(received) from None
        received += len(chunk)
        elapsed = loop.time() - started
        if elapsed > pace.grace_seconds and received < pace.min_bytes_per_second * elapsed:
            raise TooSlowError(
                f"the body arrives at {received / elapsed:.0f} bytes/s, under the minimum of "
                f"{pace.min_bytes_per_second} bytes/s"
            )
        yield chunk
