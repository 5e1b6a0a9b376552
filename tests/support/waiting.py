"""Wait for a condition, not for a number of seconds.

A fixed sleep before an assertion is either too short on a loaded machine (a flaky test)
or too long everywhere else (a slow one); polling the condition is neither.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Describe = str | Callable[[], str]


def _failure(what: Describe, within: float, last: object, error: BaseException | None) -> str:
    detail = what() if callable(what) else what
    seen = f"last error: {error!r}" if error is not None else f"last value: {last!r}"
    return f"not true after {within:g} s: {detail} ({seen})"


def eventually(
    condition: Callable[[], T | None],
    *,
    within: float,
    what: Describe,
    interval: float = 0.2,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Poll `condition` until it returns something truthy (not None, False, 0, empty); return it.

    Raises AssertionError naming `what` (a string, or a callable for details such as logs
    gathered only on failure) after `within` seconds. Exceptions of the `ignoring` types
    count as "not yet"; any other exception propagates at once.
    """
    deadline = time.monotonic() + within
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            value = condition()
        except ignoring as exc:
            error = exc
        else:
            if value:
                return value
            last, error = value, None
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(what, within, last, error))
        time.sleep(interval)


async def eventually_async(
    condition: Callable[[], Awaitable[T | None]],
    *,
    within: float,
    what: Describe,
    interval: float = 0.2,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """`eventually` for a coroutine condition, sleeping without blocking the event loop."""
    deadline = time.monotonic() + within
    last: object = None
    error: BaseException | None = None
    while True:
        try:
            value = await condition()
        except ignoring as exc:
            error = exc
        else:
            if value:
                return value
            last, error = value, None
        if time.monotonic() >= deadline:
            raise AssertionError(_failure(what, within, last, error))
        await asyncio.sleep(interval)
