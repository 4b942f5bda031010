"""Support and resistance levels from candles (swings, round numbers, recent range) and breaks."""

from __future__ import annotations

import math
import re
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from bot.render import money
from connectors.types import Candle

SWING = "swing"
ROUND = "round"
RANGE = "range"
MANUAL = "manual"

SUPPORT = "support"
RESISTANCE = "resistance"
DOWN = "down"
UP = "up"

_DAY_S = 86_400.0
_INTERVAL = re.compile(r"^(\d+)([mhdw])$")
_UNIT_S = {"m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
#: Of two coinciding levels the one first in this order is kept (see _merge).
_SOURCE_RANK = {MANUAL: 0, SWING: 1, RANGE: 2, ROUND: 3}


@dataclass(frozen=True, slots=True)
class Level:
    """One support/resistance price and how it was found.

    ``first_at`` and ``last_touch`` are bar open times (a daily bar's date); ``first_at`` is the
    first swing or bar that made the level, or the time asked about where none did (a manual
    level, an untested round number). ``touches`` counts the swing highs/lows that turned at this
    price within the lookback; ``last_touch`` is the latest bar whose range came within the touch
    tolerance (``None``: none did). ``strength`` is 0..1, growing with touches and fading with
    their age (see ``LevelConfig``).
    """

    price: float
    source: str  # "swing" | "round" | "range" | "manual"
    touches: int
    first_at: datetime
    last_touch: datetime | None
    strength: float
    note: str


@dataclass(frozen=True, slots=True)
class LevelView:
    """A level seen from a price: support below it, resistance above, ``distance_pct`` away."""

    level: Level
    kind: str  # "support" | "resistance"
    distance_pct: float  # always >= 0: how far the level is from the price, in % of the price


@dataclass(frozen=True, slots=True)
class LevelBreak:
    """A confirmed close through a level: ``direction`` "down" through a support, "up" through a
    resistance, by the bar that closed at ``at``. ``next_level`` is the next level beyond the close
    (the next support below for "down", resistance above for "up"), or ``None``."""

    asset: str
    at: datetime
    direction: str  # "down" | "up"
    level: Level
    close: float
    next_level: Level | None


@dataclass(frozen=True, slots=True)
class LevelConfig:
    """Every number the level finder uses.

    Strength is ``1 - (1 - base) * 0.5 ** w`` where ``w`` sums, over the level's touches,
    ``0.5 ** (age_days / half_life_days)``: each fresh touch halves what doubt is left, and a touch
    counts half as much every half-life. ``base`` is 0 for swing levels, ``round_base`` and
    ``range_base`` for the others; manual levels are always 1.
    """

    #: Swings, touches and the range are looked for in this many days before ``t``.
    lookback_days: float = 365.0
    #: A bar is a swing high (low) if its high (low) is the extreme of the ``swing_bars`` bars on
    #: each side: strictly beyond those before it, at least level with those after (so a flat top
    #: gives one swing, its first bar). It is known once the ``swing_bars``-th bar after it closed.
    swing_bars: int = 5
    #: Swing prices are merged into one level while the cluster spans at most this % of its low end.
    cluster_pct: float = 1.5
    #: A bar "touches" a level when its high-low range comes within this % of the price.
    touch_pct: float = 0.75
    half_life_days: float = 90.0
    #: ``(price at least, step)``: round numbers are multiples of the first step whose threshold the
    #: current price reaches. $5,000 above $20k, $1,000 above $2k, ... down to 0.001.
    round_steps: tuple[tuple[float, float], ...] = (
        (20_000.0, 5_000.0),
        (2_000.0, 1_000.0),
        (200.0, 100.0),
        (20.0, 10.0),
        (2.0, 1.0),
        (0.2, 0.1),
        (0.02, 0.01),
        (0.0, 0.001),
    )
    #: How many round numbers to keep on each side of the current price.
    round_count: int = 2
    #: The recent range: the highest high and lowest low of the bars that opened in these days
    #: (strength ``range_base`` until swings confirm it).
    range_days: float = 30.0
    #: At most this many computed levels, those nearest the last close; manual levels come on top.
    max_levels: int = 16
    round_base: float = 0.2
    range_base: float = 0.4

    def __post_init__(self) -> None:
        if self.swing_bars < 1:
            raise ValueError("LevelConfig.swing_bars must be at least 1")
        if not 0 < self.range_days <= self.lookback_days:
            raise ValueError("LevelConfig needs 0 < range_days <= lookback_days")
        for name in ("cluster_pct", "touch_pct", "half_life_days"):
            if not getattr(self, name) > 0:
                raise ValueError(f"LevelConfig.{name} must be positive")
        if self.round_count < 0 or self.max_levels < 0:
            raise ValueError("LevelConfig.round_count and max_levels must not be negative")
        for name in ("round_base", "range_base"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"LevelConfig.{name} must be within 0..1")
        if not self.round_steps or any(step <= 0 for _, step in self.round_steps):
            raise ValueError("LevelConfig.round_steps must be non-empty with positive steps")


@dataclass(frozen=True, slots=True)
class _Series:
    """Candles as arrays, with every swing of the whole history found once (each swing also says
    when it became known, so callers filter by that and never look ahead)."""

    asset: str
    step_s: float
    candles: Sequence[Candle]
    ts: np.ndarray  # open times, epoch seconds
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    piv_idx: np.ndarray  # bar indices of swings, ascending
    piv_price: np.ndarray
    piv_is_high: np.ndarray


@dataclass(slots=True)
class _Candidate:
    """A level under construction (mutable while duplicates are merged into it)."""

    price: float
    source: str
    touches: int
    first_at: datetime
    strength: float
    head: str  # what it is: "swing low", "30-day high", "round number $60,000", ...
    describe: Callable[[], str]  # the whole note; a call so only kept levels pay for dates
    last_touch: datetime | None = None
    also: list[str] = field(default_factory=list)

    def freeze(self) -> Level:
        note = self.describe()
        if self.also:
            note += f"; also {', '.join(self.also)}"
        return Level(
            price=self.price,
            source=self.source,
            touches=self.touches,
            first_at=self.first_at,
            last_touch=self.last_touch,
            strength=self.strength,
            note=note,
        )


def interval_seconds(interval: str) -> int:
    """The length of a candle interval such as "1h" or "1d", in seconds.

    Raises:
        ValueError: for anything but ``<n>m``, ``<n>h``, ``<n>d`` or ``<n>w`` with n >= 1.
    """
    m = _INTERVAL.match(interval)
    if m is None or int(m.group(1)) < 1:
        raise ValueError(f"unknown candle interval {interval!r} (expected e.g. '1h' or '1d')")
    return int(m.group(1)) * _UNIT_S[m.group(2)]


def levels_at(
    candles: Sequence[Candle],
    t: datetime,
    *,
    manual: Sequence[float] = (),
    config: LevelConfig = LevelConfig(),
) -> list[Level]:
    """The support/resistance levels known at ``t``, sorted by price.

    Only candles that had closed by ``t`` (``ts + interval <= t``) are used, so the answer at
    ``t`` is the same whatever comes after it. Levels are: clusters of swing highs/lows in the
    lookback (price = mean of the swings, touches = their number), the ``round_count`` round numbers
    on each side of the last close, the high and low of the last ``range_days``, and the
    ``manual`` prices (strength 1). Levels within ``cluster_pct`` of each other are one level:
    manual before swing before range before round number, with the highest strength of them,
    and its note says what it also is. At most ``max_levels`` computed levels are returned,
    those nearest the last close.

    Args:
        candles: one asset's bars of one interval, ascending by ``ts``, without duplicates.
        t: the moment asked about, timezone-aware.
        manual: prices set by hand; always returned.
        config: the numbers used.

    Raises:
        ValueError: unsorted or mixed candles, a naive ``t``, or a manual price that is not a
            positive number.
    """
    series = _series(candles, config)
    _require_aware(t)
    manual_prices = _manual_prices(manual)
    if series is None:
        return [_manual_level(p, t) for p in manual_prices]
    end = int(np.searchsorted(series.ts + series.step_s, t.timestamp(), side="right"))
    return _levels_from(series, end, t, manual_prices, config)


def nearest(
    levels: Sequence[Level], price: float, n: int = 3
) -> tuple[list[LevelView], list[LevelView]]:
    """The ``n`` nearest supports below ``price`` and resistances above it, nearest first.

    A level exactly at the price counts as support (price sits on it).

    Returns:
        ``(supports, resistances)``; each view's ``distance_pct`` is the non-negative distance
        from ``price`` in % of ``price``.

    Raises:
        ValueError: if ``price`` is not a positive number or ``n`` is negative.
    """
    if not (math.isfinite(price) and price > 0):
        raise ValueError(f"price must be a positive number, got {price!r}")
    if n < 0:
        raise ValueError("n must not be negative")
    below = sorted((lv for lv in levels if lv.price <= price), key=lambda lv: -lv.price)
    above = sorted((lv for lv in levels if lv.price > price), key=lambda lv: lv.price)
    supports = [LevelView(lv, SUPPORT, (price - lv.price) / price * 100.0) for lv in below[:n]]
    resistances = [
        LevelView(lv, RESISTANCE, (lv.price - price) / price * 100.0) for lv in above[:n]
    ]
    return supports, resistances


def detect_breaks(
    candles: Sequence[Candle],
    start: datetime,
    end: datetime,
    *,
    manual: Sequence[float] = (),
    config: LevelConfig = LevelConfig(),
    confirm_pct: float = 1.0,
    rearm_pct: float = 2.0,
    min_strength: float = 0.5,
) -> list[LevelBreak]:
    """Confirmed breaks of levels by the bars that closed in ``(start, end]``, oldest first.

    Each bar is judged against the levels known when it opened (``levels_at`` at its open time)
    whose strength is at least ``min_strength``. The rule is one confirmed close, not two closes:

    * down: the bar closes at least ``confirm_pct`` % below a level, and the level was support
      coming in: the latest earlier close that was either above the level or already confirmed
      below it was above it. A slow grind through a level therefore counts, and a resistance that
      price never got above cannot "break down".
    * up: the mirror image, through a resistance.

    Hysteresis: after a level breaks down, no level within ``cluster_pct`` of it breaks down again
    until a close at least ``rearm_pct`` % above it (and the mirror for up), so a price hovering
    on a level fires at most once. The state is warmed up over the lookback before ``start``, so
    asking day by day gives the same breaks as one long run.

    Several levels can break in one bar; each is reported (the nearest first). ``next_level`` is
    the nearest level of any strength beyond the close.

    Args:
        candles: one asset's bars of one interval, ascending by ``ts``, without duplicates.
        start: breaks by bars closing after this...
        end: ...and at or before this (both timezone-aware).
        manual: prices set by hand, levels of strength 1.
        config: the numbers of ``levels_at``.
        confirm_pct: how far beyond a level a close must be to confirm a break, in %.
        rearm_pct: how far back on the other side price must close before the level can fire
            again in the same direction, in %.
        min_strength: weaker levels do not fire.

    Raises:
        ValueError: bad candles or arguments (as ``levels_at``; ``confirm_pct`` must be
            positive and ``rearm_pct`` not negative).
    """
    _require_aware(start)
    _require_aware(end)
    if not confirm_pct > 0 or not rearm_pct >= 0:
        raise ValueError("confirm_pct must be positive and rearm_pct not negative")
    manual_prices = _manual_prices(manual)
    series = _series(candles, config)
    if series is None or start >= end:
        return []
    close_times = series.ts + series.step_s
    first = int(np.searchsorted(close_times, start.timestamp(), side="right"))
    last = int(np.searchsorted(close_times, end.timestamp(), side="right"))
    if first >= last:
        return []
    warm_s = start.timestamp() - config.lookback_days * _DAY_S
    warm = max(1, int(np.searchsorted(close_times, warm_s, side="right")))
    confirm = confirm_pct / 100.0
    rearm = rearm_pct / 100.0
    tol = config.cluster_pct / 100.0
    lookback_s = config.lookback_days * _DAY_S
    closes = series.close
    blocked: list[tuple[str, float]] = []  # (direction, price) of breaks not yet re-armed
    found: list[LevelBreak] = []
    for j in range(warm, last):
        c, prev = float(closes[j]), float(closes[j - 1])
        opened = series.candles[j].ts
        levels = _levels_from(series, j, opened, manual_prices, config)
        since = int(np.searchsorted(series.ts, opened.timestamp() - lookback_s, side="left"))
        history = closes[since:j]
        fired: list[tuple[str, Level]] = []
        for level in reversed(levels):  # downward breaks: the highest (nearest) first
            p = level.price
            if level.strength < min_strength or not (c <= p * (1 - confirm) < prev):
                continue
            if _came_from(history, p, above=True, confirm=confirm) and not _is_blocked(
                blocked, DOWN, p, tol
            ):
                fired.append((DOWN, level))
        for level in levels:
            p = level.price
            if level.strength < min_strength or not (prev < p * (1 + confirm) <= c):
                continue
            if _came_from(history, p, above=False, confirm=confirm) and not _is_blocked(
                blocked, UP, p, tol
            ):
                fired.append((UP, level))
        for direction, level in fired:
            blocked.append((direction, level.price))
            if j >= first:
                found.append(
                    LevelBreak(
                        asset=series.asset,
                        at=opened + timedelta(seconds=series.step_s),
                        direction=direction,
                        level=level,
                        close=c,
                        next_level=_beyond(levels, c, direction),
                    )
                )
        blocked = [
            (d, p)
            for d, p in blocked
            if not (d == DOWN and c >= p * (1 + rearm)) and not (d == UP and c <= p * (1 - rearm))
        ]
    return found


def _came_from(history: np.ndarray, price: float, *, above: bool, confirm: float) -> bool:
    """Whether ``price`` was support (``above``) or resistance coming into the next bar.

    The latest close that was beyond the level on the near side, or confirmed through it on the
    far side, decides; closes in the dead band between the level and its confirmation line are
    skipped, so a slow grind still counts as coming from where it started.
    """
    if above:
        decisive = (history > price) | (history <= price * (1 - confirm))
    else:
        decisive = (history < price) | (history >= price * (1 + confirm))
    hits = np.flatnonzero(decisive)
    if hits.size == 0:
        return False
    latest = float(history[hits[-1]])
    return latest > price if above else latest < price


def _is_blocked(blocked: list[tuple[str, float]], direction: str, price: float, tol: float) -> bool:
    return any(d == direction and abs(p - price) <= tol * min(p, price) for d, p in blocked)


def _beyond(levels: Sequence[Level], close: float, direction: str) -> Level | None:
    if direction == DOWN:
        below = [lv for lv in levels if lv.price < close]
        return max(below, key=lambda lv: lv.price) if below else None
    above = [lv for lv in levels if lv.price > close]
    return min(above, key=lambda lv: lv.price) if above else None


def _require_aware(t: datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError("times must be timezone-aware")


def _manual_prices(manual: Sequence[float]) -> list[float]:
    prices = []
    for p in manual:
        number = isinstance(p, int | float) and not isinstance(p, bool)
        if not (number and math.isfinite(p) and p > 0):
            raise ValueError(f"manual level must be a positive number, got {p!r}")
        prices.append(float(p))
    return sorted(set(prices))


def _series(candles: Sequence[Candle], config: LevelConfig) -> _Series | None:
    """Arrays of the candles and their swings; ``None`` for no candles."""
    if not candles:
        return None
    asset, interval = candles[0].asset, candles[0].interval
    step_s = interval_seconds(interval)
    previous = None
    for i, c in enumerate(candles):
        if c.asset != asset or c.interval != interval:
            raise ValueError(
                f"candle {i} is {c.asset} {c.interval}, expected {asset} {interval} like the first"
            )
        if previous is not None and c.ts <= previous:
            raise ValueError(f"candles must be ascending by ts without duplicates (at index {i})")
        previous = c.ts
    ts = np.array([c.ts.timestamp() for c in candles], dtype=np.float64)
    high = np.array([c.high for c in candles], dtype=np.float64)
    low = np.array([c.low for c in candles], dtype=np.float64)
    close = np.array([c.close for c in candles], dtype=np.float64)
    k = config.swing_bars
    highs = _swings(high, k, highs=True)
    lows = _swings(low, k, highs=False)
    idx = np.concatenate([highs, lows])
    is_high = np.concatenate([np.ones(highs.size, bool), np.zeros(lows.size, bool)])
    order = np.lexsort((~is_high, idx))  # by bar, a high before a low on the same (outside) bar
    idx, is_high = idx[order], is_high[order]
    price = np.where(is_high, high[idx], low[idx])
    return _Series(asset, float(step_s), candles, ts, high, low, close, idx, price, is_high)


def _swings(values: np.ndarray, k: int, *, highs: bool) -> np.ndarray:
    """Indices of bars whose value is the extreme of the k bars on each side (see LevelConfig)."""
    n = values.size
    if n < 2 * k + 1:
        return np.zeros(0, dtype=np.int64)
    window = sliding_window_view(values, 2 * k + 1)
    center = values[k : n - k]
    if highs:
        mask = (center > window[:, :k].max(axis=1)) & (center >= window[:, k + 1 :].max(axis=1))
    else:
        mask = (center < window[:, :k].min(axis=1)) & (center <= window[:, k + 1 :].min(axis=1))
    return (np.flatnonzero(mask) + k).astype(np.int64)


def _levels_from(
    s: _Series, end: int, t: datetime, manual: list[float], config: LevelConfig
) -> list[Level]:
    """The levels from bars ``[0, end)`` (those closed by ``t``), as ``levels_at`` describes."""
    if end == 0:
        return [_manual_level(p, t) for p in manual]
    t_s = t.timestamp()
    start = int(np.searchsorted(s.ts[:end], t_s - config.lookback_days * _DAY_S, side="left"))
    if start >= end:  # nothing closed within the lookback
        return [_manual_level(p, t) for p in manual]
    k = config.swing_bars
    lo = int(np.searchsorted(s.piv_idx, start, side="left"))
    hi = int(np.searchsorted(s.piv_idx, end - 1 - k, side="right"))  # known: i + k <= end - 1
    piv_idx, piv_price, piv_high = s.piv_idx[lo:hi], s.piv_price[lo:hi], s.piv_is_high[lo:hi]
    weights = 0.5 ** ((t_s - s.ts[piv_idx]) / _DAY_S / config.half_life_days)
    bar_high, bar_low = s.high[start:end], s.low[start:end]
    daily = s.step_s >= _DAY_S

    def when(i: int) -> datetime:
        return s.candles[i].ts

    def last_touch(price: float) -> datetime | None:
        near = (bar_low <= price * (1 + config.touch_pct / 100.0)) & (
            bar_high >= price * (1 - config.touch_pct / 100.0)
        )
        hits = np.flatnonzero(near)
        return when(start + int(hits[-1])) if hits.size else None

    def strength(base: float, w: float) -> float:
        return round(1.0 - (1.0 - base) * 0.5 ** float(w), 4)

    def touching(price: float) -> np.ndarray:
        """Positions (in the pivot slice) of swings within the touch tolerance of ``price``."""
        return np.flatnonzero(np.abs(piv_price - price) <= price * config.touch_pct / 100.0)

    candidates: list[_Candidate] = []

    # Swing clusters: sorted by price, a swing joins the cluster while the cluster spans at most
    # cluster_pct of its lowest price (so no cluster is wider than that, whatever the chain).
    idx_l, price_l, high_l = piv_idx.tolist(), piv_price.tolist(), piv_high.tolist()
    weight_l = weights.tolist()
    groups: list[list[int]] = []
    for pos in sorted(range(len(price_l)), key=lambda q: (price_l[q], q)):
        if groups and price_l[pos] <= price_l[groups[-1][0]] * (1 + config.cluster_pct / 100):
            groups[-1].append(pos)
        else:
            groups.append([pos])
    for group in groups:
        members = sorted(group)  # the swing arrays are in bar order
        price = sum(price_l[q] for q in members) / len(members)
        n_high = sum(1 for q in members if high_l[q])
        n_low = len(members) - n_high
        kind = "high" if n_low == 0 else "low" if n_high == 0 else "high/low"
        first = when(idx_l[members[0]])
        latest = when(idx_l[members[-1]])
        candidates.append(
            _Candidate(
                price=price,
                source=SWING,
                touches=len(members),
                first_at=first,
                strength=strength(0.0, sum(weight_l[q] for q in members)),
                head=f"swing {kind}",
                describe=partial(_swing_note, kind, n_low, n_high, first, latest, daily),
            )
        )

    # The recent range. Its touches are the swings at its price: an extreme still being made
    # (yesterday's low in a falling market) is where price is, not yet a level it turned at, so
    # until it is confirmed as a swing it has only the base strength.
    r_start = int(np.searchsorted(s.ts[:end], t_s - config.range_days * _DAY_S, side="left"))
    if r_start < end:
        for is_high in (True, False):
            values = s.high if is_high else s.low
            seg = values[r_start:end]
            at = r_start + int(np.argmax(seg) if is_high else np.argmin(seg))
            price = float(values[at])
            near = touching(price)
            touches = int(near.size)
            first_i = min(int(piv_idx[near[0]]), at) if touches else at
            head = f"{config.range_days:g}-day {'high' if is_high else 'low'}"
            candidates.append(
                _Candidate(
                    price=price,
                    source=RANGE,
                    touches=touches,
                    first_at=when(first_i),
                    strength=strength(config.range_base, float(weights[near].sum())),
                    head=head,
                    describe=partial(_range_note, head, when(at), daily),
                )
            )

    # Round numbers nearest the last close, round_count on each side.
    now = float(s.close[end - 1])
    step = next((st for floor, st in config.round_steps if now >= floor), config.round_steps[-1][1])
    base_n = math.floor(now / step)
    rounds = [(base_n - i) * step for i in range(config.round_count)]
    rounds += [(base_n + 1 + i) * step for i in range(config.round_count)]
    for price in sorted(r for r in rounds if r > 0):
        near = touching(price)
        touches = int(near.size)
        head = f"round number {money(price)}"
        candidates.append(
            _Candidate(
                price=float(price),
                source=ROUND,
                touches=touches,
                first_at=when(int(piv_idx[near[0]])) if touches else t,
                strength=strength(config.round_base, float(weights[near].sum())),
                head=head,
                describe=partial(_round_note, head, touches),
            )
        )

    manual_levels = [_manual_candidate(p, t) for p in manual]
    kept = _merge(manual_levels, candidates, now, config)
    for c in kept:  # only now, for the few kept: the costliest part of a level
        c.last_touch = last_touch(c.price)
    return [c.freeze() for c in kept]


def _merge(
    manual: list[_Candidate], computed: list[_Candidate], now: float, config: LevelConfig
) -> list[_Candidate]:
    """One level per price zone, then the ``max_levels`` computed ones nearest ``now``.

    Within ``cluster_pct`` of each other one level stands for all: a manual one, else a swing
    cluster (the structure traders watch), else the range, else the round number, the stronger
    first within a source. It takes the highest strength of those it absorbed and names them.
    The cap keeps the levels nearest the price rather than the strongest, so the next support
    and resistance are never dropped for a strong level far away.
    """
    tol = config.cluster_pct / 100.0
    kept = sorted(manual, key=lambda c: c.price)  # by price, to find neighbours by bisection
    prices = [c.price for c in kept]
    ranked = sorted(computed, key=lambda c: (_SOURCE_RANK[c.source], -c.strength, c.price))
    for cand in ranked:
        at = bisect_left(prices, cand.price)
        close_by = []
        for i in range(at - 1, -1, -1):
            if cand.price - prices[i] > tol * prices[i]:
                break
            close_by.append(kept[i])
        for i in range(at, len(kept)):
            if prices[i] - cand.price > tol * cand.price:
                break
            close_by.append(kept[i])
        if close_by:
            host = min(close_by, key=lambda c: (abs(c.price - cand.price), c.price))
            host.also.append(_aside(cand))
            host.strength = max(host.strength, cand.strength)
        else:
            kept.insert(at, cand)
            prices.insert(at, cand.price)
    own = [c for c in kept if c.source != MANUAL]
    manual = [c for c in kept if c.source == MANUAL]
    own.sort(key=lambda c: (abs(c.price - now), -c.strength, c.price))
    kept = manual + own[: config.max_levels]
    return sorted(kept, key=lambda c: (c.price, _SOURCE_RANK[c.source]))


def _aside(c: _Candidate) -> str:
    """How a level absorbed into another is mentioned in that one's note."""
    if c.source == ROUND:
        return f"near round {money(c.price)}"
    if c.source == RANGE:
        return f"the {c.head} {money(c.price)}"
    return f"{c.head} {money(c.price)}"


def _swing_note(
    kind: str, n_low: int, n_high: int, first: datetime, latest: datetime, daily: bool
) -> str:
    n = n_low + n_high
    note = f"swing {kind}, {_plural(n, 'touch')} since {_date(first, daily)}"
    if n > 1:
        note += f", last {_date(latest, daily)}"
    if n_high and n_low:
        note += f" ({_plural(n_low, 'low')}, {_plural(n_high, 'high')})"
    return note


def _range_note(head: str, at: datetime, daily: bool) -> str:
    return f"{head}, set {_date(at, daily)}"


def _round_note(head: str, touches: int) -> str:
    return f"{head}, {_plural(touches, 'swing touch')}" if touches else head


def _manual_candidate(price: float, t: datetime) -> _Candidate:
    return _Candidate(price, MANUAL, 0, t, 1.0, "manual level", partial(str, "manual level"))


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 'es' if word.endswith('ch') else 's'}"


def _manual_level(price: float, t: datetime) -> Level:
    return Level(price, MANUAL, 0, t, None, 1.0, "manual level")


def _date(t: datetime, daily: bool) -> str:
    return t.strftime("%Y-%m-%d") if daily else t.strftime("%Y-%m-%d %H:%M")
