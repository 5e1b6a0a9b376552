"""glibc's allocator, set for a worker that runs one large job after another.

A job allocates and frees hundreds of MiB: the decoded audio, the features, and CTranslate2's
buffers, many of them 1 to 12 MiB, at every decoding step. Two ways of returning that
memory were measured side by side (tiny.en int8, beam 5, 2 threads, four 2-minute files in
one process, per job: CPU seconds, minor page faults, peak RSS):

- glibc's defaults: 8.8-11.0 CPU s, 276-334k faults, peak 415, 428, 447, 447 MiB (it grows:
  freed blocks stay in each thread's arena, and the first large free raises the mmap
  threshold so later arrays come from those arenas too);
- the mmap threshold fixed at 1 MiB (what this worker did before): flat peaks (318-343
  MiB), but every buffer over 1 MiB became an mmap/munmap with fresh page faults,
  2.1-2.5M a job, 15.5-17.6 CPU s, half of it in the kernel: the stack's 1.26-1.51x
  slowdown against plain faster-whisper.

What this module does instead: one arena for every thread (`M_ARENA_MAX` 1), so a block
freed by one thread is reused by the next allocation of any other, and `malloc_trim(0)`
after each job and each chunk, which hands the free pages of that arena back to the OS.
glibc's dynamic threshold is left alone. Measured the same way: 8.7-10.6 CPU s, 296-348k
faults (the defaults' cost), peaks 359, 363, 367, 370 MiB, 222 MiB held between jobs. The
other candidates (a threshold fixed at 8 or 32 MiB, a trim or one arena alone) are in
bench/README.md, "overhead, re-run".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Final

M_ARENA_MAX: Final = -8
"""glibc's `mallopt` parameter number (malloc.h)."""


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # Both are glibc's: another C library (musl) has neither, and nothing is changed.
        _ = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError):
        return None
    return libc


def share_one_arena() -> bool:
    """Make every thread allocate from one arena (`MALLOC_ARENA_MAX=1`), at process start.

    Before the model loads and its threads start: an arena made before stays in use. False
    where the C library is not glibc.
    """
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(M_ARENA_MAX, 1))


def release_freed_memory() -> bool:
    """Hand the pages of freed blocks back to the OS (`malloc_trim(0)`), after a job.

    Costs a walk of the free blocks and the page faults of reusing that memory next job
    (a few per cent of a job's); blocks the arena for that long, so run it on the thread
    that did the work, never the event loop. False where nothing was released or the C
    library is not glibc.
    """
    libc = _glibc()
    return libc is not None and bool(libc.malloc_trim(0))
