"""Tests for bot.market.composite: components, composite, daily series, divergence."""

from __future__ import annotations

import csv
import math
import statistics
import time
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bot.market.composite import (
    HISTORY_DAYS,
    MARKET_VERSION,
    MarketWeights,
    composite,
    daily_series,
    divergence,
    funding_component,
    market_components,
    market_reading,
)
from bot.types import BANDS, band_of
from connectors.types import Candle

BTC_CSV = Path(__file__).resolve().parents[1] / "bot" / "demo_data" / "btc_usd_daily.csv"
DAY = timedelta(days=1)
T0 = datetime(2020, 1, 1, tzinfo=UTC)
PRICE_COMPONENTS = {"volatility", "momentum", "volume", "drawdown"}


@pytest.fixture(scope="module")
def btc() -> list[Candle]:
    with open(BTC_CSV, newline="", encoding="utf-8") as fh:
        return [
            Candle(
                asset="BTC",
                interval="1d",
                ts=datetime.fromisoformat(row["date"]).replace(tzinfo=UTC),
                open=float(row["open"]),
                high=float(row["high"]),
                low=float(row["low"]),
                close=float(row["close"]),
                volume=float(row["volume"]),
            )
            for row in csv.DictReader(fh)
        ]


def synthetic(
    days: int, seed: int = 1, drift: float = 0.0, vol: float = 0.03, start: datetime = T0
) -> list[Candle]:
    """A random walk of daily candles with lognormal volume."""
    rng = np.random.default_rng(seed)
    closes = 100.0 * np.exp(np.cumsum(rng.normal(drift, vol, days)))
    volumes = 1e6 * np.exp(rng.normal(0.0, 0.4, days))
    return [
        candle(start + i * DAY, float(c), float(v))
        for i, (c, v) in enumerate(zip(closes, volumes, strict=True))
    ]


def candle(ts: datetime, close: float, volume: float = 1e6, asset: str = "BTC") -> Candle:
    return Candle(asset, "1d", ts, close, close, close, close, volume)


def with_closes(candles: list[Candle], closes: np.ndarray) -> list[Candle]:
    return [
        replace(c, open=float(x), high=float(x), low=float(x), close=float(x))
        for c, x in zip(candles, closes, strict=True)
    ]


# --- history ---------------------------------------------------------------------------------


def test_history_months_sit_in_the_expected_bands(btc: list[Candle]) -> None:
    # Market components only: there is no social data for 2018-2026.
    started = time.perf_counter()
    everything = daily_series(btc)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0  # measured ~0.08 s for 2015-09 → 2026-07 (3,962 readings)
    assert everything[0].at == btc[0].ts + (HISTORY_DAYS - 1) * DAY + DAY

    readings = daily_series(btc, start=datetime(2018, 1, 1, tzinfo=UTC))
    assert readings[0].at == datetime(2018, 1, 1, tzinfo=UTC)
    assert readings[-1].at == btc[-1].ts + DAY
    by_month: dict[str, list[float]] = defaultdict(list)
    for r in readings:
        assert r.version == MARKET_VERSION
        assert set(r.components) == PRICE_COMPONENTS
        by_month[r.at.strftime("%Y-%m")].append(r.value)
    median = {month: statistics.median(values) for month, values in by_month.items()}

    # Measured with market-v1 (also in docs/INDEX.md): 24.8, 33.3, 24.1, 29.4, 16.4.
    for month in ("2018-12", "2020-03", "2022-06", "2022-11", "2026-02"):
        assert median[month] <= 46, (month, median[month])
    # Measured: 73.9, 73.6, 68.8, 72.1.
    for month in ("2021-02", "2021-10", "2024-03", "2024-11"):
        assert median[month] >= 55, (month, median[month])

    # Every band occurs, and neither extreme dominates (measured 2018-2026: Extreme Fear 139,
    # Fear 861, Neutral 522, Greed 1329, Extreme Greed 275 of 3126 days).
    bands = Counter(r.band for r in readings)
    assert set(bands) == {name for _, name in BANDS}
    assert bands["Extreme Fear"] + bands["Extreme Greed"] < len(readings) / 3


def test_daily_series_equals_market_reading_at_each_close(btc: list[Candle]) -> None:
    readings = {r.at: r for r in daily_series(btc, start=datetime(2022, 11, 1, tzinfo=UTC))}
    for t in (datetime(2022, 11, 10, tzinfo=UTC), datetime(2024, 3, 14, tzinfo=UTC)):
        truncated = [c for c in btc if c.ts + DAY <= t]
        direct = market_reading(truncated, t)
        assert direct is not None
        assert direct.components == pytest.approx(readings[t].components, rel=1e-12)
        assert direct.value == pytest.approx(readings[t].value, rel=1e-12)


# --- no look-ahead ---------------------------------------------------------------------------


def test_components_at_t_ignore_everything_after_t() -> None:
    candles = synthetic(700, seed=3)
    for day in (HISTORY_DAYS, 450, 699):
        t = candles[day - 1].ts + DAY  # the close of candle day-1
        truncated = candles[:day]
        full = market_components(candles, t)
        assert full is not None
        assert full == market_components(truncated, t)
        # A bar still open at t (it closes tomorrow) is not used either.
        assert market_components(candles, t + timedelta(hours=23)) == full


def test_daily_series_does_not_change_when_the_future_does() -> None:
    candles = synthetic(800, seed=4)
    cut = 600
    rng = np.random.default_rng(9)
    future = np.array([c.close for c in candles])
    future[cut:] *= np.exp(np.cumsum(rng.normal(0.05, 0.2, len(candles) - cut)))
    changed = with_closes(candles, future)
    changed[cut:] = [replace(c, volume=c.volume * 50) for c in changed[cut:]]
    before = daily_series(candles)
    after = daily_series(changed)
    t_cut = candles[cut - 1].ts + DAY
    past_before = [r for r in before if r.at <= t_cut]
    past_after = [r for r in after if r.at <= t_cut]
    assert past_before == past_after
    assert len(past_before) == cut - HISTORY_DAYS + 1
    # ... and the future did change, so the comparison was not vacuous.
    assert [r.value for r in before if r.at > t_cut] != [r.value for r in after if r.at > t_cut]


# --- values, bands, history length -----------------------------------------------------------


@pytest.mark.parametrize("seed", range(5))
def test_every_component_and_value_stays_within_0_100(seed: int) -> None:
    rng = np.random.default_rng(seed)
    days = 900
    # Regimes of calm and wild volatility, a crash, a melt-up, and volume spikes.
    vol = np.where(np.arange(days) % 200 < 100, 0.01, 0.08)
    drift = np.zeros(days)
    drift[500:520], drift[700:740] = -0.15, 0.08
    closes = 100 * np.exp(np.cumsum(rng.normal(drift, vol)))
    candles = with_closes(synthetic(days, seed=seed), closes)
    candles = [
        replace(c, volume=c.volume * (40 if i % 97 == 0 else 1)) for i, c in enumerate(candles)
    ]
    readings = daily_series(candles)
    assert len(readings) == days - HISTORY_DAYS + 1
    for r in readings:
        assert 0 <= r.value <= 100
        assert all(0 <= v <= 100 for v in r.components.values())
        assert r.band == band_of(r.value)
    values = [r.value for r in readings]
    assert max(values) - min(values) > 40  # the regimes move it


def test_band_names_are_alternative_me_bands() -> None:
    names = {name for _, name in BANDS}
    for value, expected in ((10, "Extreme Fear"), (40, "Fear"), (50, "Neutral"), (60, "Greed")):
        reading = composite({"momentum": value}, at=T0)
        assert reading.band == expected and reading.band in names
    assert composite({"momentum": 90}, at=T0).band == "Extreme Greed"


def test_too_short_or_stale_history_gives_none() -> None:
    candles = synthetic(HISTORY_DAYS, seed=5)
    t = candles[-1].ts + DAY
    assert market_components(candles[:-1], t) is None
    assert market_components(candles, t) is not None
    assert market_components(candles, t + timedelta(days=2)) is not None
    assert market_components(candles, t + timedelta(days=2, seconds=1)) is None
    assert market_reading(candles[:-1], t) is None
    assert daily_series(candles[:-1]) == []
    assert daily_series([]) == []


def test_directions_crash_is_fear_rally_is_greed() -> None:
    base = synthetic(500, seed=6, vol=0.02)
    closes = np.array([c.close for c in base])
    rng = np.random.default_rng(0)
    crash = closes.copy()  # -4 %/day on average with 5 % daily swings: a crash, not a slide
    crash[-20:] = closes[-21] * np.exp(np.cumsum(rng.normal(-0.04, 0.05, 20)))
    rally = closes.copy()
    rally[-30:] = closes[-31] * np.exp(np.cumsum(np.full(30, 0.02)))
    t = base[-1].ts + DAY
    down = market_components(with_closes(base, crash), t)
    up = market_components(with_closes(base, rally), t)
    assert down is not None and up is not None
    assert down["momentum"] < 5 and down["drawdown"] < 30 and down["volume"] < 10
    assert up["momentum"] > 95 and up["drawdown"] > 95 and up["volume"] > 90
    assert down["volatility"] < 25
    assert market_reading(with_closes(base, crash), t).band == "Extreme Fear"
    assert market_reading(with_closes(base, rally), t).value > 60
    # A volatility spike with no net move reads fear on volatility.
    chop = closes.copy()
    chop[-14:] = closes[-15] * np.exp(np.cumsum(np.tile([0.12, -0.12], 7)))
    spiky = market_components(with_closes(base, chop), t)
    assert spiky is not None and spiky["volatility"] < 10


def test_flat_price_and_missing_volume() -> None:
    candles = [candle(T0 + i * DAY, 100.0, volume=0.0) for i in range(HISTORY_DAYS)]
    components = market_components(candles, candles[-1].ts + DAY)
    # No volume data: the volume component is left out; a flat price is "normal" volatility
    # and momentum, and sits at its high.
    assert components == {"volatility": 50.0, "momentum": 50.0, "drawdown": 100.0}


# --- composite and weights -------------------------------------------------------------------


def test_weights_renormalised_over_the_components_present() -> None:
    market = {"volatility": 20.0, "momentum": 40.0, "volume": 60.0, "drawdown": 80.0}
    w = MarketWeights()
    only_market = composite(market, at=T0)
    total = w.volatility + w.momentum + w.volume + w.drawdown
    expected = (20 * w.volatility + 40 * w.momentum + 60 * w.volume + 80 * w.drawdown) / total
    assert only_market.value == pytest.approx(expected)
    assert set(only_market.weights) == set(market)
    assert math.fsum(only_market.weights.values()) == pytest.approx(1.0)
    assert only_market.weights["volatility"] == pytest.approx(w.volatility / total)

    full = composite({**market, "funding": 90.0}, social=10.0, at=T0)
    assert full.components == {**market, "funding": 90.0, "social": 10.0}
    assert full.weights == pytest.approx(
        {name: w.of(name) for name in full.components}  # the defaults already sum to 1
    )
    assert full.value == pytest.approx(math.fsum(w.of(k) * v for k, v in full.components.items()))

    with_social = composite(market, social=100.0, at=T0)
    share = w.social / (total + w.social)
    assert with_social.weights["social"] == pytest.approx(share)
    assert with_social.value == pytest.approx((1 - share) * expected + share * 100.0)
    assert composite({}, social=33.0, at=T0).value == pytest.approx(33.0)

    custom = MarketWeights(volatility=1, momentum=0, volume=0, drawdown=0, funding=0, social=1)
    assert composite(market, social=60.0, weights=custom, at=T0).value == pytest.approx(40.0)


def test_market_reading_with_funding_and_social() -> None:
    candles = synthetic(400, seed=8)
    t = candles[-1].ts + DAY
    plain = market_reading(candles, t)
    joined = market_reading(candles, t, funding=0.0003, social=80.0)
    assert plain is not None and joined is not None
    assert set(joined.components) == PRICE_COMPONENTS | {"funding", "social"}
    assert joined.components["funding"] == pytest.approx(84.13, abs=0.01)
    assert joined.value > plain.value  # both joined in greedy
    assert joined.at == t and joined.version == "market-v1"


def test_funding_component() -> None:
    assert funding_component(0.0001) == pytest.approx(50.0)
    assert funding_component(0.0003) == pytest.approx(84.13, abs=0.01)
    assert funding_component(-0.0001) == pytest.approx(15.87, abs=0.01)
    rates = [-0.003, -0.0005, 0.0, 0.0001, 0.0002, 0.001, 0.003]
    values = [funding_component(r) for r in rates]
    assert values == sorted(values) and values[0] >= 0 and values[-1] <= 100
    with pytest.raises(ValueError, match="finite"):
        funding_component(float("nan"))


def test_bad_input_is_refused_clearly() -> None:
    candles = synthetic(HISTORY_DAYS + 5, seed=2)
    t = candles[-1].ts + DAY
    with pytest.raises(ValueError, match="timezone-aware"):
        market_components(candles, t.replace(tzinfo=None))
    with pytest.raises(ValueError, match="gap after"):
        market_components(candles[:100] + candles[101:], t)
    with pytest.raises(ValueError, match="duplicate"):
        market_components([*candles, candles[50]], t)
    with pytest.raises(ValueError, match="one asset"):
        market_components([*candles[:-1], replace(candles[-1], asset="ETH")], t)
    with pytest.raises(ValueError, match="daily candles"):
        daily_series([replace(c, interval="1h") for c in candles])
    with pytest.raises(ValueError, match="positive"):
        market_components([*candles[:-1], replace(candles[-1], close=0.0)], t)
    with pytest.raises(ValueError, match="volume"):
        market_components([*candles[:-1], replace(candles[-1], volume=float("nan"))], t)
    # Order does not matter.
    assert market_components(candles[::-1], t) == market_components(candles, t)

    with pytest.raises(ValueError, match="unknown component"):
        composite({"dominance": 50.0}, at=T0)
    with pytest.raises(ValueError, match="within 0-100"):
        composite({"momentum": 101.0}, at=T0)
    with pytest.raises(ValueError, match="within 0-100"):
        composite({"momentum": 50.0}, social=float("nan"), at=T0)
    with pytest.raises(ValueError, match="twice"):
        composite({"social": 50.0}, social=50.0, at=T0)
    with pytest.raises(ValueError, match="no weighted component"):
        composite({}, at=T0)
    with pytest.raises(ValueError, match="timezone-aware"):
        composite({"momentum": 50.0}, at=datetime(2020, 1, 1))
    with pytest.raises(ValueError, match=">= 0"):
        MarketWeights(volume=-0.1)
    with pytest.raises(ValueError, match="all be zero"):
        MarketWeights(0, 0, 0, 0, 0, 0)


# --- divergence ------------------------------------------------------------------------------

NOW = datetime(2024, 3, 14, 12, tzinfo=UTC)


def series(values: list[float], end: datetime = NOW, step: timedelta = DAY) -> list:
    """``values`` spaced by ``step``, the last one at ``end``."""
    return [(end - (len(values) - 1 - i) * step, v) for i, v in enumerate(values)]


def test_bearish_divergence_new_high_while_mood_falls() -> None:
    closes = series([100, 102, 101, 104, 103, 106, 105, 110])  # 8 points: start is 7 days back
    moods = series([70, 68, 66, 65, 63, 61, 60, 58])
    d = divergence(closes, moods, NOW)
    assert d is not None and d.kind == "bearish"
    assert d.price_change_pct == pytest.approx(10.0)
    assert d.mood_change == pytest.approx(-12.0)
    assert (d.mood_start, d.mood_end, d.window_days, d.at) == (70, 58, 7, NOW)
    assert "new 7-day high (+10.0 %)" in d.explanation
    assert "fell 12 points (70 → 58)" in d.explanation
    # A smaller mood drop than the threshold is not a divergence.
    assert divergence(closes, moods, NOW, min_mood_change=13) is None
    # Not a new high (an earlier close in the window was higher): none either.
    assert divergence(series([100, 112, 101, 104, 103, 106, 105, 110]), moods, NOW) is None


def test_bullish_divergence_new_low_while_mood_rises() -> None:
    closes = series([100, 97, 98, 95, 96, 93, 94, 90])
    moods = series([30, 31, 33, 35, 36, 38, 40, 42])
    d = divergence(list(reversed(closes)), moods, NOW)  # any order
    assert d is not None and d.kind == "bullish"
    assert d.price_change_pct == pytest.approx(-10.0)
    assert d.mood_change == pytest.approx(12.0)
    assert "new 7-day low (-10.0 %)" in d.explanation and "rose 12 points" in d.explanation


def test_no_divergence_when_they_agree_or_data_is_short() -> None:
    rising = series([100, 102, 101, 104, 103, 106, 105, 110])
    assert divergence(rising, series([50, 52, 55, 57, 58, 60, 61, 65]), NOW) is None
    # The mood series starts inside the window: its change over the window is unknown.
    assert divergence(rising, series([70, 60]), NOW) is None
    # Nor does a price series that does not reach back to the window's start.
    assert divergence(rising[-3:], series([70, 68, 66, 65, 63, 61, 60, 58]), NOW) is None
    # A 3-day window sees only the last four daily points (63 → 48).
    falling = series([70, 68, 66, 65, 63, 61, 60, 48])
    d = divergence(rising, falling, NOW, window_days=3)
    assert d is not None and d.mood_change == pytest.approx(-15.0) and d.window_days == 3


def test_divergence_ignores_points_after_now() -> None:
    closes = series([100, 102, 101, 104, 103, 106, 105, 110])
    moods = series([70, 68, 66, 65, 63, 61, 60, 58])
    later = NOW + DAY
    d = divergence([*closes, (later, 500.0)], [*moods, (later, 99.0)], NOW)
    assert d is not None and d.price_end == 110 and d.mood_end == 58
    with pytest.raises(ValueError, match="timezone-aware"):
        divergence(closes, moods, NOW.replace(tzinfo=None))
    with pytest.raises(ValueError, match="finite"):
        divergence(closes, [*moods, (NOW, float("inf"))], NOW)
    with pytest.raises(ValueError, match="window_days"):
        divergence(closes, moods, NOW, window_days=0)
