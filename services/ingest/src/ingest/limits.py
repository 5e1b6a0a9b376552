"""Per-tenant limit on submissions in flight: one tenant cannot hold every upload slot.

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


class UploadSlots:
    """Counts in-flight submissions per tenant. Event-loop only, so no lock is needed."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        """Slots per tenant (`SCRIBE_INGEST_MAX_CONCURRENT_UPLOADS_PER_TENANT`)."""
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
                TOO_MANY_UPLOADS,
                f"this tenant already has {held} submissions in progress (limit {limit}); "
                f"retry after {RETRY_AFTER_SECONDS} s",
                retry_after_seconds=RETRY_AFTER_SECONDS,
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
