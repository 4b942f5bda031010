"""Correlation of daily series: rolling return correlation between assets, and lead/lag tests.

Series are ``(date, value)`` pairs. Assets that trade on different days (BTC every day,
equities on trading days) are aligned by an inner join on dates before returns are taken, so
each return spans the same interval in both series.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True, slots=True)
class CorrResult:
    """Pearson correlation of two assets' daily returns over ``window_days`` calendar days.

    ``n`` is the number of aligned returns used; ``start`` and ``end`` are the dates of the
    first and last of them.
    """

    r: float
    n: int
    start: date
    end: date
    window_days: int


@dataclass(frozen=True, slots=True)
class LagCorr:
    """Pearson r of x(t) with y(t + lag days), with a Fisher-z confidence interval.

    ``r``, ``ci_low``, ``ci_high`` and ``p_value`` are ``None`` when fewer than 4 pairs match
    or either side is constant. ``p_value`` is two-sided, for r = 0, from the same Fisher-z
    normal approximation as the interval.
    """

    lag: int
    n: int
    r: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float | None


def daily_returns(closes: Sequence[tuple[date, float]]) -> list[tuple[date, float]]:
    """Simple returns ``close[i] / close[i-1] - 1``, each dated by the later close.

    Args:
        closes: ``(date, close)`` pairs, any order.

    Returns:
        One return per close after the first, in date order. The gap between two closes may be
        longer than a day (a weekend, a holiday): the return spans it.

    Raises:
        ValueError: on a repeated date or a close that is not a positive number.
    """
    ordered = _sorted_series(closes, "closes")
    for day, value in ordered:
        if value <= 0:
            raise ValueError(f"closes must be positive, got {value!r} on {day}")
    return [(cur[0], cur[1] / prev[1] - 1.0) for prev, cur in itertools.pairwise(ordered)]


def rolling_correlation(
    a: Sequence[tuple[date, float]],
    b: Sequence[tuple[date, float]],
    window_days: int,
    end: date | None = None,
    min_n: int = 5,
) -> CorrResult | None:
    """Correlation of two assets' daily returns over the ``window_days`` calendar days to ``end``.

    The closes are inner-joined on date first (days where only one asset has a close are
    dropped), then returns are taken on the aligned series, so each pair of returns spans the
    same interval. The window holds the returns dated ``end - window_days < d <= end``: a
    30-day window of BTC against an equity holds about 21 returns.

    Args:
        a: ``(date, close)`` of the first asset.
        b: ``(date, close)`` of the second asset.
        window_days: the window's length in calendar days.
        end: the window's last day; ``None``: the last date both have.
        min_n: fewer aligned returns than this give ``None``.

    Returns:
        The correlation, or ``None`` with fewer than ``min_n`` returns or a constant series.

    Raises:
        ValueError: on a non-positive ``window_days``, a repeated date or a bad close.
    """
    if window_days <= 0:
        raise ValueError(f"window_days must be positive, got {window_days}")
    left, right = dict(_sorted_series(a, "a")), dict(_sorted_series(b, "b"))
    common = sorted(left.keys() & right.keys())
    if not common:
        return None
    ra = daily_returns([(d, left[d]) for d in common])
    rb = daily_returns([(d, right[d]) for d in common])
    last = end if end is not None else common[-1]
    first = last - timedelta(days=window_days)
    picked = [(da, x, y) for (da, x), (_, y) in zip(ra, rb, strict=True) if first < da <= last]
    if len(picked) < max(min_n, 2):
        return None
    r = _pearson([x for _, x, _ in picked], [y for _, _, y in picked])
    if r is None:
        return None
    return CorrResult(
        r=r, n=len(picked), start=picked[0][0], end=picked[-1][0], window_days=window_days
    )


def lead_lag(
    x: Sequence[tuple[date, float]],
    y: Sequence[tuple[date, float]],
    lags: Sequence[int],
    confidence: float = 0.95,
) -> list[LagCorr]:
    """Does x lead y? Pearson r of x(t) with y(t + lag) for each lag, in calendar days.

    For "does social mood lead the next day's return?", ``x`` is the daily mood, ``y`` the
    daily return (or absolute return, for volatility) and ``lags`` e.g. ``[-1, 0, 1, 2]``: a
    positive lag pairs today's mood with a later return. Only dates where both values exist
    are paired.

    The interval is the Fisher z-transform's: ``tanh(atanh(r) ± z_c / sqrt(n - 3))``. The
    p-value uses the same normal approximation; it assumes independent pairs, which
    overlapping or autocorrelated series are not, so read it as optimistic.

    Args:
        x: ``(date, value)`` of the leading candidate.
        y: ``(date, value)`` of the series it might lead.
        lags: the lags to test, in days.
        confidence: the interval's coverage, e.g. 0.95.

    Returns:
        One ``LagCorr`` per lag, in the order given.

    Raises:
        ValueError: on a repeated date, a non-finite value, or ``confidence`` outside (0, 1).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be within (0, 1), got {confidence}")
    xs = _sorted_series(x, "x")
    ys = dict(_sorted_series(y, "y"))
    z_crit = NormalDist().inv_cdf(0.5 + confidence / 2)
    out = []
    for lag in lags:
        shift = timedelta(days=lag)
        pairs = [(v, ys[d + shift]) for d, v in xs if d + shift in ys]
        n = len(pairs)
        r = _pearson([p for p, _ in pairs], [q for _, q in pairs]) if n >= 4 else None
        if r is None:
            out.append(LagCorr(lag=lag, n=n, r=None, ci_low=None, ci_high=None, p_value=None))
            continue
        if abs(r) >= 1.0:
            low = high = r
            p_value = 0.0
        else:
            z, se = math.atanh(r), 1.0 / math.sqrt(n - 3)
            low, high = math.tanh(z - z_crit * se), math.tanh(z + z_crit * se)
            p_value = 2.0 * (1.0 - NormalDist().cdf(abs(z) / se))
        out.append(LagCorr(lag=lag, n=n, r=r, ci_low=low, ci_high=high, p_value=p_value))
    return out


# --- helpers -------------------------------------------------------------------------------


def _sorted_series(series: Sequence[tuple[date, float]], name: str) -> list[tuple[date, float]]:
    """The pairs in date order, after checking dates are unique and values finite."""
    ordered = sorted(series, key=lambda p: p[0])
    for i, (day, value) in enumerate(ordered):
        if not math.isfinite(value):
            raise ValueError(f"{name}: value on {day} is not finite ({value!r})")
        if i and ordered[i - 1][0] == day:
            raise ValueError(f"{name}: date {day} appears twice")
    return ordered


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Pearson r, or ``None`` when either side is constant."""
    ax, ay = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if ax.min() == ax.max() or ay.min() == ay.max():
        return None
    dx, dy = ax - ax.mean(), ay - ay.mean()
    r = float(dx @ dy) / math.sqrt(float(dx @ dx) * float(dy @ dy))
    return max(-1.0, min(1.0, r))  # rounding can step just past ±1
