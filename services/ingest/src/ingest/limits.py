"""Per-tenant limits on what a request may hold: one tenant cannot hold every upload slot,
nor, waiting on the OpenAI-compatible routes, every connection the server takes.

Counted per replica, in memory: a slot is held from the moment a submission is
authenticated until its answer is ready (its bytes streamed, decoded, published). A
cluster-wide limit would need shared state (the stack has no Redis); N replicas allow at
most N times the setting.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from ingest.failures import TOO_MANY_UPLOADS, TooManyUploadsError

RETRY_AFTER_SECONDS: Final = 5
"""An upload usually completes within seconds; clients back off this long before retrying."""
WAIT_RETRY_AFTER_SECONDS: Final = 10
"""A waited-on transcription takes about as long as the audio's transcription."""


class UploadSlots:
    """Counts in-flight requests per tenant. Event-loop only, so no lock is needed."""

    def __init__(
        self,
        limit: int,
        *,
        what: str = "submissions in progress",
        code: str = TOO_MANY_UPLOADS,
        retry_after_seconds: int = RETRY_AFTER_SECONDS,
    ) -> None:
        self.limit = limit
        """Slots per tenant (`SCRIBE_INGEST_MAX_CONCURRENT_UPLOADS_PER_TENANT`, ...)."""
        self._what = what
        self._code = code
        self._retry_after = retry_after_seconds
        self._in_flight: dict[str, int] = {}

    def in_flight(self, tenant: str) -> int:
        """Submissions of `tenant` being handled now."""
        return self._in_flight.get(tenant, 0)

    @contextmanager
    def hold(self, tenant: str) -> Iterator[None]:
        """Take a slot for the block's duration; `TooManyUploadsError` when none is free."""
        held, limit = self._in_flight.get(tenant, 0), self.limit
        if held >= limit:
            raise TooManyUploadsError(
                self._code,
                f"this tenant already has {held} {self._what} (limit {limit}); "
                f"retry after {self._retry_after} s",
                retry_after_seconds=self._retry_after,
            )
        self._in_flight[tenant] = held + 1
        try:
            yield
        finally:
            remaining = self._in_flight[tenant] - 1
            if remaining:
                self._in_flight[tenant] = remaining
            else:
                del self._in_flight[tenant]
