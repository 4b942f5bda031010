"""Plausibility bounds on what a platform, exchange or file reports: times, counts, price bars."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

#: Bitcoin's genesis block (2009-01-03): a crypto post dated earlier is a broken timestamp
#: (``0`` is 1970), and accepting it would make the index tick through every hour since.
EARLIEST_POST = datetime(2009, 1, 3, tzinfo=UTC)

#: How far a post may be dated ahead of our wall clock (clocks drift; a year 9999 does not).
MAX_CLOCK_SKEW_S = 600.0

#: The largest engagement count accepted: exact as a float, far inside SQLite's 64-bit
#: integers even as a sum of three, and beyond any real post's likes.
MAX_COUNT = 2**53


def time_problem(
    at: datetime, *, max_clock_skew: float = MAX_CLOCK_SKEW_S, now: datetime | None = None
) -> str | None:
    """Why ``at`` (aware) cannot be a post's time, or None when it is plausible.

    Args:
        at: the post's time, timezone-aware.
        max_clock_skew: seconds ``at`` may lie ahead of ``now``.
        now: the wall clock; default: ``datetime.now(UTC)``.

    Returns:
        ``"timestamp before 2009"``, ``"timestamp in the future"``, or None.
    """
    if at < EARLIEST_POST:
        return "timestamp before 2009"
    latest = (now or datetime.now(UTC)) + timedelta(seconds=max_clock_skew)
    if at > latest:
        return "timestamp in the future"
    return None


def count_ok(value: int) -> bool:
    """Whether ``value`` is a usable count: 0 <= value <= ``MAX_COUNT``."""
    return 0 <= value <= MAX_COUNT


def bar_problem(open_: float, high: float, low: float, close: float, volume: float) -> str | None:
    """Why these values cannot be one price bar (OHLCV), or None when they can.

    Prices must be finite and positive with ``low <= open, close <= high``; the volume finite
    and not negative. NaN would be stored as NULL and infinity as itself: either breaks every
    level, return and correlation computed from the bar.
    """
    prices = (open_, high, low, close)
    if not all(math.isfinite(p) and p > 0 for p in prices):
        return "a price is not finite and positive"
    if not low <= min(open_, close) <= max(open_, close) <= high:
        return "not a bar: low <= open, close <= high expected"
    if not (math.isfinite(volume) and volume >= 0):
        return "volume is not finite and non-negative"
    return None
