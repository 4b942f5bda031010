"""Retry timing shared by every connector (and the supervisor): jittered exponential backoff,
and a wait that a stop cuts short."""

from __future__ import annotations

import asyncio
import contextlib
import random


def backoff_delay(
    failures: int, base: float, cap: float, rng: random.Random, factor: float = 2.0
) -> float:
    """Seconds to wait before retry number ``failures`` (1 = the first).

    Exponential steps ``base * factor**(failures-1)`` up to ``cap``, with "equal jitter": half
    of the step is fixed and half random, so clients that failed together come back spread
    out instead of in lockstep.
    """
    step = min(cap, base * factor ** max(failures - 1, 0))
    return step / 2 + rng.uniform(0.0, step / 2)


async def wait_or_stop(stopping: asyncio.Event, seconds: float) -> bool:
    """Wait ``seconds`` or until ``stopping`` is set, whichever comes first.

    Returns:
        Whether ``stopping`` is set: the caller should stop rather than go round again.
    """
    with contextlib.suppress(TimeoutError):  # the usual end of the wait
        await asyncio.wait_for(stopping.wait(), seconds)
    return stopping.is_set()


def retry_after_s(value: object) -> float | None:
    """A ``Retry-After`` value in seconds (never below 0), or None when absent or unreadable
    (an HTTP date, say: the caller's exponential backoff applies instead)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
