"""When to publish `transcription.progress`: enough new audio done, or enough time passed."""

from __future__ import annotations

import time
from collections.abc import Callable


class ProgressThrottle:
    """Lets a progress report through every `min_fraction` of the audio or `min_interval` s.

    The first finished segment always reports (the user sees the job move); after that a
    report needs new progress plus either condition. 100 % is never reported: the completed
    event follows at once and says more.
    """

    def __init__(
        self,
        *,
        min_fraction: float,
        min_interval_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._min_fraction = min_fraction
        self._min_interval = min_interval_seconds
        self._clock = clock
        self._last_fraction: float | None = None
        self._last_at = 0.0

    def should_report(self, fraction: float) -> bool:
        """Whether a report at `fraction` (0..1) is due now; records it when it is."""
        if fraction >= 1.0:
            return False
        now = self._clock()
        last = self._last_fraction
        due = last is None or (
            fraction > last
            and (fraction - last >= self._min_fraction or now - self._last_at >= self._min_interval)
        )
        if due:
            self._last_fraction = fraction
            self._last_at = now
        return due
