"""Outcomes after each daily close and the statistics of a kind's cases against random days
(medians, hit rates, a moving-block bootstrap)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from bot.track.hypotheses import (
    MIN_CASES,
    RETURN,
    Hypothesis,
)
from connectors.types import Candle

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)

#: Bootstrap replicates and the seed that makes every interval reproducible.
N_BOOT = 1000
SEED = 17
#: An interval needs at least this many blocks of history; fewer would resample one stretch.
MIN_BLOCKS = 5
#: The most days an alert may wait for its entry close, or a horizon for its exit close, beyond
#: the plain count: weekends and holidays of assets that do not trade daily (SPY).
MAX_GAP_DAYS = 4

_DAY = timedelta(days=1)
_DAY_S = 86_400.0


@dataclass(frozen=True, slots=True, eq=False)
class Prices:
    """Daily closes by close time (epoch seconds), ascending."""

    times: np.ndarray
    closes: np.ndarray

    @classmethod
    def of(cls, candles: Sequence[Candle]) -> Prices:
        """From daily candles (a bar closes a day after it opens).

        Raises:
            ValueError: a close that is not a positive number, or two bars at one time.
        """
        ordered = sorted(candles, key=lambda c: c.ts)
        times = np.array([(c.ts + _DAY).timestamp() for c in ordered], dtype=float)
        closes = np.array([c.close for c in ordered], dtype=float)
        if not np.all(np.isfinite(closes) & (closes > 0)):
            raise ValueError("closes must be positive numbers")
        if np.any(np.diff(times) <= 0):
            raise ValueError("two daily candles at one time")
        return cls(times, closes)


@dataclass(frozen=True, slots=True, eq=False)
class Outcomes:
    """For every close ``i`` over one horizon: when its horizon closes (``exits``, epoch
    seconds; NaN where the data end or a gap breaks it), the return and the realised
    volatility from close ``i`` to the first close at least ``horizon`` days later."""

    horizon: int
    exits: np.ndarray
    returns: np.ndarray
    volatility: np.ndarray

    def of(self, metric: str) -> np.ndarray:
        return self.returns if metric == RETURN else self.volatility


def outcomes(prices: Prices, horizon: int) -> Outcomes:
    """What followed each close over ``horizon`` days: the simple return, and the realised
    volatility (annualised root mean square of the daily log returns, ``√(365 · Σr² / days)``,
    which counts a weekend's move in Monday's return for assets that do not trade daily)."""
    t, c = prices.times, prices.closes
    n = len(t)
    exits = np.full(n, np.nan)
    rets = np.full(n, np.nan)
    vols = np.full(n, np.nan)
    if n < 2:
        return Outcomes(horizon, exits, rets, vols)
    j = np.searchsorted(t, t + horizon * _DAY_S, side="left")
    ok = j < n
    i = np.flatnonzero(ok)
    j = j[ok]
    span = t[j] - t[i]
    good = span <= (horizon + MAX_GAP_DAYS) * _DAY_S  # a longer gap is missing data
    i, j, span = i[good], j[good], span[good]
    squares = np.concatenate([[0.0], np.cumsum(np.diff(np.log(c)) ** 2)])
    exits[i] = t[j]
    rets[i] = c[j] / c[i] - 1.0
    vols[i] = np.sqrt(365.0 * (squares[j] - squares[i]) / (span / _DAY_S))
    return Outcomes(horizon, exits, rets, vols)


# --- statistics ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Spread:
    """A median with its interquartile range."""

    median: float
    q1: float
    q3: float

    @classmethod
    def of(cls, values: np.ndarray) -> Spread | None:
        if values.size == 0:
            return None
        q1, median, q3 = np.percentile(values, [25, 50, 75])
        return cls(float(median), float(q1), float(q3))


@dataclass(frozen=True, slots=True)
class Measure:
    """One kind over one horizon: its cases against random days of the same span.

    ``hit`` is the share of cases that moved the hypothesis' way (a return of its sign, or a
    volatility above the random days' median), ``base_hit`` the same share of random days;
    ``ci`` the block-bootstrap 95 % interval of ``diff``, the cases' median of the hypothesis'
    metric minus the random days' (``None`` below ``MIN_CASES`` or on too short a history).
    """

    horizon: int
    n: int
    days: int
    ret: Spread | None
    vol: Spread | None
    base_ret: Spread | None
    base_vol: Spread | None
    hit: float | None
    base_hit: float | None
    diff: float | None
    ci: tuple[float, float] | None


def block_bootstrap(
    values: np.ndarray,
    cases: np.ndarray,
    block: int,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> tuple[float, float] | None:
    """The 95 % interval of ``median(values[cases]) − median(values)`` by a moving-block
    bootstrap: each replicate strings together blocks of ``block`` consecutive days picked at
    random (days and case marks together) to the series' length. Overlapping horizons make
    neighbouring days' outcomes alike and alerts come in clusters; blocks keep both, so the
    interval is as wide as that dependence makes it (an i.i.d. bootstrap is too narrow).

    Args:
        values: the outcome of every day, in time order (no NaN).
        cases: a boolean mark per day: a case on that day.
        block: the block length in days (at least the horizon).
        n_boot: replicates.
        seed: the random generator's seed: the same input gives the same interval.

    Returns:
        ``(low, high)``, or ``None`` when the series is shorter than ``MIN_BLOCKS`` blocks or
        too many replicates hold no case.
    """
    n = len(values)
    block = max(1, block)
    if n < MIN_BLOCKS * block or not cases.any():
        return None
    rng = np.random.default_rng(seed)
    k = -(-n // block)
    starts = rng.integers(0, n - block + 1, size=(n_boot, k))
    idx = (starts[:, :, None] + np.arange(block)).reshape(n_boot, -1)[:, :n]
    v, m = values[idx], cases[idx]
    keep = m.any(axis=1)
    if keep.sum() < 0.9 * n_boot:  # cases so sparse that many replicates miss them all
        return None
    v, m = v[keep], m[keep]
    diff = np.nanmedian(np.where(m, v, np.nan), axis=1) - np.median(v, axis=1)
    low, high = np.percentile(diff, [2.5, 97.5])
    return float(low), float(high)


def block_length(days: int, horizon: int) -> int:
    """At least the horizon (outcomes overlap that long), and at least ∛days (the usual rate
    for a moving-block bootstrap of a weakly dependent series)."""
    return max(horizon, math.ceil(days ** (1 / 3)))


def measure(
    prices: Prices,
    out: Outcomes,
    case_times: Sequence[datetime],
    start: datetime,
    end: datetime,
    now: datetime,
    hypothesis: Hypothesis,
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> Measure:
    """The cases (alerts at ``case_times``) against random days, over ``out.horizon``.

    A case enters at the first close at or after its alert (an intraday alert's own day is
    not counted). Days and cases count only with an entry in ``[start, end]`` and a horizon
    closed by ``now``: nothing after ``now`` is read, so past results never change.
    Several alerts entering at the same close are one case.
    """
    t = prices.times
    closed = np.isfinite(out.exits) & (np.nan_to_num(out.exits, nan=np.inf) <= now.timestamp())
    span = closed & (t >= start.timestamp()) & (t <= end.timestamp())
    marks = np.zeros(len(t), dtype=bool)
    for at in case_times:
        s = at.timestamp()
        if s >= now.timestamp():
            continue
        i = int(np.searchsorted(t, s, side="left"))
        if i < len(t) and t[i] - s <= (1 + MAX_GAP_DAYS) * _DAY_S:
            marks[i] = True
    marks &= span
    days = np.flatnonzero(span)
    rets, vols = out.returns, out.volatility
    base_vol = Spread.of(vols[days])
    metric = out.of(hypothesis.metric)
    if hypothesis.metric == RETURN:
        hits = hypothesis.sign * metric > 0
    else:  # more (or less) volatile than a typical day of the span
        usual = base_vol.median if base_vol is not None else 0.0
        hits = hypothesis.sign * (metric - usual) > 0
    n = int(marks.sum())
    diff = ci = None
    if n:
        diff = float(np.median(metric[marks]) - np.median(metric[days]))
    if n >= MIN_CASES:
        # Days in time order; those without a closed outcome (a data gap) are left out.
        ci = block_bootstrap(
            metric[days],
            marks[days],
            block_length(len(days), out.horizon),
            n_boot,
            seed,
        )
    return Measure(
        horizon=out.horizon,
        n=n,
        days=len(days),
        ret=Spread.of(rets[marks]),
        vol=Spread.of(vols[marks]),
        base_ret=Spread.of(rets[days]),
        base_vol=base_vol,
        hit=float(hits[marks].mean()) if n else None,
        base_hit=float(hits[days].mean()) if len(days) else None,
        diff=diff,
        ci=ci,
    )


def verdict(m: Measure, hypothesis: Hypothesis) -> str:
    """'no edge', 'edge, as hypothesised', 'edge against the hypothesis', or why none."""
    if m.n == 0:
        return hypothesis.pending or "no cases"
    if m.n < MIN_CASES:
        return "too few cases"
    if m.ci is None:
        return "no interval (too short a history)"
    low, high = m.ci
    if low <= 0 <= high:
        return "no edge"
    return (
        "edge, as hypothesised"
        if (low > 0) == (hypothesis.sign > 0)
        else ("edge against the hypothesis")
    )
