"""The market side of the fear & greed index ("market-v1"): daily BTC candles as 0-100 components.

Formulas, parameters and the reasons for them are written out in docs/INDEX.md ("Market
composite"); keep the two in step, and bump ``MARKET_VERSION`` when the numbers would change.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bot.types import band_of
from connectors.types import Candle

MARKET_VERSION: Final = "market-v1"

#: The components a reading can carry, in the order they are reported.
COMPONENTS: Final = ("volatility", "momentum", "volume", "drawdown", "funding", "social")

#: Components computed from prices alone: always present once history is long enough.
_PRICE_COMPONENTS: Final = ("volatility", "momentum", "drawdown")

DAY: Final = timedelta(days=1)
#: Days of realised volatility (stdev of daily log returns).
VOL_WINDOW: Final = 14
#: The realised volatility is compared to its own average over these many days.
VOL_BASELINES: Final = (30, 90)
#: k in ``100 / (1 + R**k)``: R = 2 reads 15, R = 1/2 reads 85.
VOL_GAIN: Final = 2.5
#: Price is compared to its (geometric) average over these many days.
MOMENTUM_WINDOWS: Final = (30, 90)
#: Days of daily returns whose stdev is "the typical daily move" that scales momentum and drawdown.
SIGMA_WINDOW: Final = 365
#: Days of signed volume that make the volume flow.
VOLUME_WINDOW: Final = 7
#: Volume is compared to its average over these many days.
VOLUME_BASELINES: Final = (30, 90)
#: Drawdown is measured from the highest close of this many days.
DRAWDOWN_WINDOW: Final = 365
#: The funding rate (per 8 h period) that reads 50: the usual interest-rate baseline of 0.01 %.
FUNDING_CENTER: Final = 0.0001
#: Funding rate above the centre that counts as one standard unit (0.03 % reads 84).
FUNDING_SCALE: Final = 0.0002
#: Closed daily candles needed before every component is defined.
HISTORY_DAYS: Final = SIGMA_WINDOW + 1
#: A reading needs a candle that closed at most this long before ``t``.
STALE_AFTER: Final = timedelta(days=2)


@dataclass(frozen=True, slots=True)
class MarketWeights:
    """Each component's share of the composite, before renormalising over the ones present.

    The defaults follow alternative.me's Fear & Greed split (volatility 25 %, momentum/volume
    25 %, social 15 %, ...) with our own components in place of the ones we do not have; see
    docs/INDEX.md.
    """

    volatility: float = 0.25
    momentum: float = 0.20
    volume: float = 0.10
    drawdown: float = 0.15
    funding: float = 0.10
    social: float = 0.20

    def __post_init__(self) -> None:
        values = [getattr(self, f.name) for f in fields(self)]
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise ValueError(f"MarketWeights must be finite and >= 0, got {self}")
        if math.fsum(values) <= 0:
            raise ValueError("MarketWeights must not all be zero")

    def of(self, name: str) -> float:
        """The weight of component ``name``.

        Raises:
            ValueError: if there is no such component.
        """
        if name not in COMPONENTS:
            raise ValueError(f"unknown component {name!r} (known: {', '.join(COMPONENTS)})")
        return float(getattr(self, name))


@dataclass(frozen=True, slots=True)
class MarketReading:
    """The market composite as of ``at``: a 0-100 value, its band and what made it.

    ``weights`` are the weights actually used, renormalised over the components present (they
    sum to 1). ``components`` includes "social" when the social mood joined in.
    """

    at: datetime
    value: float
    band: str
    components: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    version: str = MARKET_VERSION
    #: What stood in for what (market-v2: realised for implied volatility, ...).
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Divergence:
    """Price and mood moving apart over a window.

    ``kind`` is "bearish" (price at a new high while the mood falls) or "bullish" (price at a
    new low while the mood rises).
    """

    kind: str
    at: datetime
    window_days: int
    price_start: float
    price_end: float
    price_change_pct: float
    mood_start: float
    mood_end: float
    mood_change: float
    explanation: str


def market_components(
    candles: Sequence[Candle], t: datetime, funding: float | None = None
) -> dict[str, float] | None:
    """The market components (each 0-100, 50 = normal) as of ``t``.

    Only candles that had closed by ``t`` (``ts + 1 day <= t``) are used, so a reading never
    sees the future.

    Args:
        candles: daily ("1d") candles of one asset, consecutive days, in any order.
        t: as of when, timezone-aware.
        funding: the perpetual swap's current funding rate per 8 h period (0.0001 = 0.01 %),
            when known.

    Returns:
        ``{"volatility", "momentum", "volume", "drawdown"[, "funding"]}`` → 0-100, or ``None``
        when fewer than ``HISTORY_DAYS`` candles had closed by ``t`` or the newest of them
        closed more than ``STALE_AFTER`` before ``t``. "volume" is left out when the candles
        carry no volume.

    Raises:
        ValueError: if ``t`` is naive, the candles are not consecutive daily candles of one
            asset, or a price, volume or the funding rate is not a usable number.
    """
    _check_aware(t, "t")
    closed = [c for c in _checked(candles) if c.ts + DAY <= t]
    if len(closed) < HISTORY_DAYS or t - (closed[-1].ts + DAY) > STALE_AFTER:
        return None
    # Every window has a fixed length, so the last HISTORY_DAYS candles give exactly the
    # numbers the whole history would.
    recent = closed[-HISTORY_DAYS:]
    arrays = _component_arrays(
        np.array([c.close for c in recent], dtype=float),
        np.array([c.volume for c in recent], dtype=float),
    )
    out = {name: float(values[-1]) for name, values in arrays.items() if np.isfinite(values[-1])}
    if funding is not None:
        out["funding"] = funding_component(funding)
    return out


def funding_component(rate: float) -> float:
    """The funding component: ``100 · Φ((rate − 0.0001) / 0.0002)``.

    Args:
        rate: funding rate per 8 h period (0.0001 = 0.01 %). Exchanges that settle more often
            should be scaled to 8 h first.

    Raises:
        ValueError: if ``rate`` is not finite.
    """
    if not math.isfinite(rate):
        raise ValueError(f"funding rate must be finite, got {rate!r}")
    return 100.0 * _phi((rate - FUNDING_CENTER) / FUNDING_SCALE)


def composite(
    components: Mapping[str, float],
    social: float | None = None,
    weights: MarketWeights = MarketWeights(),
    *,
    at: datetime,
) -> MarketReading:
    """Combine components (and the social mood, when known) into one reading.

    The weights are renormalised over the components present, so a missing funding rate or
    social reading shifts its share onto the others instead of pulling the value to 0 or 50.

    Args:
        components: component name → 0-100 (as from ``market_components``).
        social: the social mood index (0-100), or ``None`` when there is none.
        weights: the components' weights.
        at: the reading's time, timezone-aware.

    Returns:
        The reading, its components including "social" when given.

    Raises:
        ValueError: on an unknown component, a value outside 0-100, a naive ``at``, or when no
            component with a positive weight is present.
    """
    _check_aware(at, "at")
    present = dict(components)
    if social is not None:
        if "social" in present:
            raise ValueError("social given twice (in components and as an argument)")
        present["social"] = social
    for name, value in present.items():
        weights.of(name)  # raises on an unknown name
        if not (isinstance(value, int | float) and math.isfinite(value) and 0 <= value <= 100):
            raise ValueError(f"component {name!r} must be a number within 0-100, got {value!r}")
    raw: dict[str, float] = {name: weights.of(name) for name in COMPONENTS if name in present}
    total = math.fsum(raw.values())
    if total <= 0:
        raise ValueError(f"no weighted component to combine (got {sorted(present)})")
    used: dict[str, float] = {name: w / total for name, w in raw.items()}
    value = math.fsum(used[name] * present[name] for name in used)
    value = min(100.0, max(0.0, value))
    ordered: dict[str, float] = {
        name: float(present[name]) for name in COMPONENTS if name in present
    }
    return MarketReading(at=at, value=value, band=band_of(value), components=ordered, weights=used)


def market_reading(
    candles: Sequence[Candle],
    t: datetime,
    funding: float | None = None,
    social: float | None = None,
    weights: MarketWeights = MarketWeights(),
) -> MarketReading | None:
    """``market_components`` and ``composite`` in one call; ``None`` while history is too short.

    Args:
        candles: daily candles of one asset (see ``market_components``).
        t: as of when, timezone-aware.
        funding: funding rate per 8 h period, when known.
        social: the social mood index (0-100), when known.
        weights: the components' weights.

    Raises:
        ValueError: as ``market_components`` and ``composite`` do.
    """
    components = market_components(candles, t, funding)
    if components is None:
        return None
    return composite(components, social, weights, at=t)


def daily_series(
    candles: Sequence[Candle],
    start: datetime | None = None,
    end: datetime | None = None,
    weights: MarketWeights = MarketWeights(),
) -> list[MarketReading]:
    """One market reading per day, each as of the close of a daily candle.

    The reading at ``at`` equals ``market_reading(candles, at)``: it uses the candles that
    closed by ``at`` only. The whole history is computed in one vectorised pass (2014-2026 in
    well under a second). There is no funding or social data in the past, so the weights are
    renormalised over the market components.

    Args:
        candles: daily candles of one asset, consecutive days, in any order.
        start: first reading time to return (inclusive), timezone-aware; ``None``: from the
            first day with enough history.
        end: last reading time to return (inclusive), timezone-aware; ``None``: to the end.
        weights: the components' weights.

    Returns:
        Readings in time order, ``at`` = each candle's close (``ts + 1 day``).

    Raises:
        ValueError: as ``market_components`` does, or on a naive ``start``/``end``.
    """
    for name, value in (("start", start), ("end", end)):
        if value is not None:
            _check_aware(value, name)
    ordered = _checked(candles)
    if not ordered:
        return []
    arrays = _component_arrays(
        np.array([c.close for c in ordered], dtype=float),
        np.array([c.volume for c in ordered], dtype=float),
    )
    names = list(arrays)
    table = np.column_stack([arrays[name] for name in names])
    readings = []
    for i, candle in enumerate(ordered):
        at = candle.ts + DAY
        if (start is not None and at < start) or (end is not None and at > end):
            continue
        row = {name: float(v) for name, v in zip(names, table[i], strict=True) if np.isfinite(v)}
        if not all(name in row for name in _PRICE_COMPONENTS):
            continue  # not enough history yet
        readings.append(composite(row, None, weights, at=at))
    return readings


def divergence(
    closes: Sequence[tuple[datetime, float]],
    moods: Sequence[tuple[datetime, float]],
    now: datetime,
    window_days: int = 7,
    min_mood_change: float = 10.0,
) -> Divergence | None:
    """Price and mood disagreeing over the last ``window_days``.

    Bearish: the latest close is above every close since the window began while the mood fell
    by at least ``min_mood_change`` points. Bullish: the latest close is below every close
    since the window began while the mood rose by at least that much. Each series' change is
    measured from its last point at or before the window's start (``now - window_days``) to
    its last point at or before ``now``; a series that does not reach back to the start, or
    has no point inside the window, gives ``None``. Points after ``now`` are ignored.

    Args:
        closes: ``(time, price)`` pairs, e.g. daily closes at their close time; any order.
        moods: ``(time, mood 0-100)`` pairs; any order.
        now: as of when, timezone-aware.
        window_days: the window's length in days.
        min_mood_change: the mood move (points) that counts.

    Returns:
        The divergence, or ``None`` when there is none.

    Raises:
        ValueError: on naive times, non-finite values, a non-positive price, or a
            non-positive ``window_days``.
    """
    _check_aware(now, "now")
    if window_days <= 0:
        raise ValueError(f"window_days must be positive, got {window_days}")
    start = now - timedelta(days=window_days)
    prices = _window_points(closes, start, now, "closes")
    mood_points = _window_points(moods, start, now, "moods")
    if prices is None or mood_points is None:
        return None
    if any(p <= 0 for p in prices):
        raise ValueError("prices must be positive")
    latest, earlier = prices[-1], prices[:-1]
    mood_start, mood_end = mood_points[0], mood_points[-1]
    mood_change = mood_end - mood_start
    price_change_pct = (latest / prices[0] - 1.0) * 100.0
    if latest > max(earlier) and mood_change <= -min_mood_change:
        kind = "bearish"
        text = (
            f"Price made a new {window_days}-day high ({price_change_pct:+.1f} %) while the mood"
            f" fell {-mood_change:.0f} points ({mood_start:.0f} → {mood_end:.0f}): bearish"
            " divergence, the rally is not carrying the crowd with it."
        )
    elif latest < min(earlier) and mood_change >= min_mood_change:
        kind = "bullish"
        text = (
            f"Price made a new {window_days}-day low ({price_change_pct:+.1f} %) while the mood"
            f" rose {mood_change:.0f} points ({mood_start:.0f} → {mood_end:.0f}): bullish"
            " divergence, the crowd is not following the price down."
        )
    else:
        return None
    return Divergence(
        kind=kind,
        at=now,
        window_days=window_days,
        price_start=prices[0],
        price_end=latest,
        price_change_pct=price_change_pct,
        mood_start=mood_start,
        mood_end=mood_end,
        mood_change=mood_change,
        explanation=text,
    )


# --- helpers -------------------------------------------------------------------------------


def _check_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def _checked(candles: Sequence[Candle]) -> list[Candle]:
    """The candles sorted by time, after checking they are one asset's consecutive daily bars."""
    ordered = sorted(candles, key=lambda c: c.ts)
    if not ordered:
        return ordered
    asset = ordered[0].asset
    for c in ordered:
        if c.interval != "1d":
            raise ValueError(f"daily candles needed, got interval {c.interval!r} at {c.ts}")
        if c.asset != asset:
            raise ValueError(f"candles of one asset needed, got {asset!r} and {c.asset!r}")
        if not (math.isfinite(c.close) and c.close > 0):
            raise ValueError(f"close must be a positive number, got {c.close!r} at {c.ts}")
        if not (math.isfinite(c.volume) and c.volume >= 0):
            raise ValueError(f"volume must be a number >= 0, got {c.volume!r} at {c.ts}")
    for prev, cur in itertools.pairwise(ordered):
        if cur.ts - prev.ts != DAY:
            # Fixed-length windows count days by position: a gap would silently stretch them.
            what = "duplicate candle" if cur.ts == prev.ts else "gap after"
            raise ValueError(f"daily candles must be consecutive: {what} {prev.ts.isoformat()}")
    return ordered


def _rolling(x: np.ndarray, window: int, reduce: str) -> np.ndarray:
    """``reduce`` ("mean", "std", "max", "sum") over each trailing window; NaN before it fills."""
    out = np.full(x.shape, np.nan)
    if len(x) >= window:
        view = sliding_window_view(x, window)
        if reduce == "std":
            out[window - 1 :] = view.std(axis=-1, ddof=1)
        else:
            out[window - 1 :] = getattr(view, reduce)(axis=-1)
    return out


def _phi(z: float) -> float:
    """The standard normal CDF."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def _normal_cdf(z: np.ndarray) -> np.ndarray:
    """``_phi`` elementwise, NaN where ``z`` is not finite (numpy has no erf of its own)."""
    out = np.full(z.shape, np.nan)
    ok = np.isfinite(z)
    out[ok] = np.frompyfunc(_phi, 1, 1)(z[ok]).astype(float)
    return out


def _component_arrays(close: np.ndarray, volume: np.ndarray) -> dict[str, np.ndarray]:
    """Every market component for every day, each from that day's and earlier values only.

    Entries are NaN until the day has enough history. See docs/INDEX.md for the formulas.
    """
    log_close = np.log(close)
    returns = np.concatenate([[np.nan], np.diff(log_close)])
    sigma = _rolling(returns, SIGMA_WINDOW, "std")  # the year's typical daily move
    with np.errstate(divide="ignore", invalid="ignore"):
        # Volatility: recent realised volatility against its own 30- and 90-day averages
        # (geometric mean of the two), R = 1 reads 50, a rise reads fear.
        realised = _rolling(returns, VOL_WINDOW, "std")
        baseline = np.sqrt(np.prod([_rolling(realised, w, "mean") for w in VOL_BASELINES], axis=0))
        ratio = realised / baseline
        ratio[baseline == 0] = 1.0  # a perfectly flat price: nothing unusual
        volatility = 100.0 / (1.0 + ratio**VOL_GAIN)

        # Momentum: log price above its 30/90-day mean of log prices, in units of the spread
        # that gap would have under a driftless random walk with the year's volatility.
        zs = []
        for w in MOMENTUM_WINDOWS:
            gap = log_close - _rolling(log_close, w, "mean")
            spread = sigma * math.sqrt((w - 1) * (2 * w - 1) / (6 * w))
            z = gap / spread
            z[spread == 0] = 0.0
            zs.append(z)
        momentum = 100.0 * _normal_cdf(np.mean(zs, axis=0))

        # Volume: each of the last 7 days' volume against the 30/90-day average, signed by the
        # day's direction. With coin-flip directions and ordinary volume the sum / sqrt(7) is
        # about N(0, 1).
        avg_volume = np.sqrt(np.prod([_rolling(volume, w, "mean") for w in VOLUME_BASELINES], 0))
        signed = np.sign(np.nan_to_num(returns)) * volume
        flow = _rolling(signed, VOLUME_WINDOW, "sum") / avg_volume
        flow[~(avg_volume > 0)] = np.nan  # no volume data: leave the component out
        volume_component = 100.0 * _normal_cdf(flow / math.sqrt(VOLUME_WINDOW))

        # Drawdown: under a driftless random walk, the fall from a T-day high is distributed
        # like |N(0, sigma^2 T)|, so 200 * (1 - Phi(u)) is the chance of a fall at least this
        # deep: 100 at the high, 50 at the typical drawdown, near 0 in a crash.
        peak = _rolling(close, DRAWDOWN_WINDOW, "max")
        depth = -np.log(close / peak)
        u = depth / (sigma * math.sqrt(DRAWDOWN_WINDOW))
        u[sigma == 0] = 0.0
        drawdown = 200.0 * (1.0 - _normal_cdf(u))
    return {
        "volatility": volatility,
        "momentum": momentum,
        "volume": volume_component,
        "drawdown": drawdown,
    }


def _window_points(
    points: Sequence[tuple[datetime, float]], start: datetime, now: datetime, name: str
) -> list[float] | None:
    """The value at or before ``start``, then every value in ``(start, now]``, in time order.

    ``None`` when the series does not reach back to ``start`` or has nothing inside the window.
    """
    for ts, value in points:
        _check_aware(ts, f"{name} time")
        if not math.isfinite(value):
            raise ValueError(f"{name} values must be finite, got {value!r} at {ts}")
    ordered = sorted((p for p in points if p[0] <= now), key=lambda p: p[0])
    before = [v for ts, v in ordered if ts <= start]
    inside = [v for ts, v in ordered if ts > start]
    if not before or not inside:
        return None
    return [before[-1], *inside]
