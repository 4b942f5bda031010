"""Retry timing shared by every connector (and the supervisor): jittered exponential backoff."""

from __future__ import annotations

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
