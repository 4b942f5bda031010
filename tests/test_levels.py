"""Support/resistance levels and breaks: synthetic series with known answers, then real BTC."""

from __future__ import annotations

import csv
import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.market.levels import (
    Level,
    LevelBreak,
    LevelConfig,
    detect_breaks,
    interval_seconds,
    levels_at,
    nearest,
)
from connectors.types import Candle

ROOT = Path(__file__).resolve().parents[1]
BTC_CSV = ROOT / "bot" / "demo_data" / "btc_usd_daily.csv"
T0 = datetime(2024, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def utc(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def bars(
    closes: list[float], *, wick: float = 0.002, start: datetime = T0, interval: str = "1d"
) -> list[Candle]:
    """Candles closing at ``closes``, high and low a ``wick`` fraction beyond the body."""
    step = timedelta(seconds=interval_seconds(interval))
    out = []
    for i, c in enumerate(closes):
        o = closes[i - 1] if i else c
        out.append(
            Candle(
                "TEST",
                interval,
                start + i * step,
                o,
                max(o, c) * (1 + wick),
                min(o, c) * (1 - wick),
                c,
                1.0,
            )
        )
    return out


def path(*points: tuple[int, float]) -> list[float]:
    """Closes interpolated linearly through ``(bar, price)`` waypoints."""
    out: list[float] = []
    for (i0, p0), (i1, p1) in itertools.pairwise(points):
        for i in range(i0, i1):
            out.append(p0 + (p1 - p0) * (i - i0) / (i1 - i0))
    out.append(points[-1][1])
    return out


def after(candles: list[Candle]) -> datetime:
    """The moment every one of ``candles`` has closed."""
    return candles[-1].ts + timedelta(seconds=interval_seconds(candles[-1].interval))


def swings(levels: list[Level]) -> list[Level]:
    return [lv for lv in levels if lv.source == "swing"]


@pytest.fixture(scope="module")
def btc() -> list[Candle]:
    with BTC_CSV.open(newline="", encoding="utf-8") as f:
        return [
            Candle(
                "BTC",
                "1d",
                datetime.fromisoformat(row["date"]).replace(tzinfo=UTC),
                float(row["open"]),
                float(row["high"]),
                float(row["low"]),
                float(row["close"]),
                float(row["volume"]),
            )
            for row in csv.DictReader(f)
        ]


# --- swings, clusters, round numbers, the range, manual levels ------------------------------

#: Peaks at bars 10 (120), 30 (135) and 50 (150); troughs at 20 (105) and 40 (90); then a climb
#: to 170 so the last days' range is far from all of them. No round numbers (round_count=0).
ZIGZAG = path((0, 100), (10, 120), (20, 105), (30, 135), (40, 90), (50, 150), (60, 130), (70, 170))
NO_ROUND = LevelConfig(swing_bars=3, round_count=0, range_days=2)


def test_swings_of_a_known_zigzag_are_found_at_their_bars_and_prices() -> None:
    candles = bars(ZIGZAG)
    levels = swings(levels_at(candles, after(candles), config=NO_ROUND))
    found = [(round(lv.price, 3), lv.first_at, lv.note.split(",")[0]) for lv in levels]
    assert found == [
        (round(90 * 0.998, 3), T0 + 40 * DAY, "swing low"),
        (round(105 * 0.998, 3), T0 + 20 * DAY, "swing low"),
        (round(120 * 1.002, 3), T0 + 10 * DAY, "swing high"),
        (round(130 * 0.998, 3), T0 + 60 * DAY, "swing low"),
        (round(135 * 1.002, 3), T0 + 30 * DAY, "swing high"),
        (round(150 * 1.002, 3), T0 + 50 * DAY, "swing high"),
    ]
    assert all(lv.touches == 1 for lv in levels)


def test_a_swing_is_known_only_once_the_kth_bar_after_it_has_closed() -> None:
    candles = bars(ZIGZAG)
    # Bar 10 is the peak (high 120.24); with swing_bars=3 it is confirmed by bar 13, which closes
    # at T0 + 14d. The 2-day range high (118.74) is within 1.5 % of it: one level, the swing.
    before = levels_at(candles, T0 + 14 * DAY - timedelta(seconds=1), config=NO_ROUND)
    known = levels_at(candles, T0 + 14 * DAY, config=NO_ROUND)
    assert not any("swing high" in lv.note for lv in before)
    (top,) = [lv for lv in known if "swing high" in lv.note]
    assert top.price == pytest.approx(120.24)
    assert top.note == "swing high, 1 touch since 2024-01-11; also the 2-day high $118.74"


def test_a_flat_top_gives_one_swing_at_its_first_bar() -> None:
    closes = path((0, 100), (10, 120)) + [120.0] * 3 + path((0, 119), (10, 100))[1:] + [100.0] * 5
    candles = bars(closes, wick=0.0)
    highs = [lv for lv in swings(levels_at(candles, after(candles), config=NO_ROUND))]
    tops = [lv for lv in highs if lv.price == 120.0]
    assert len(tops) == 1 and tops[0].touches == 1 and tops[0].first_at == T0 + 10 * DAY


def test_clustering_merges_near_swings_counts_them_and_keeps_far_ones_apart() -> None:
    # Troughs at 100, 101 and 100.5 (within 1.5 %) and one at 92; peaks at 110 and 120.
    closes = path(
        (0, 105), (8, 100), (16, 110), (24, 101), (32, 120), (40, 100.5), (48, 110), (56, 92)
    )
    closes += path((0, 92), (14, 140))[1:]
    candles = bars(closes, wick=0.0)
    levels = swings(levels_at(candles, after(candles), config=NO_ROUND))
    zone = [lv for lv in levels if 99 < lv.price < 102]
    assert len(zone) == 1
    (lv,) = zone
    assert lv.touches == 3
    assert lv.price == pytest.approx((100 + 101 + 100.5) / 3)
    assert lv.first_at == T0 + 8 * DAY and lv.last_touch is not None
    assert lv.note.startswith("swing low, 3 touches since 2024-01-09, last 2024-02-10")
    assert any(math.isclose(x.price, 92) for x in levels)
    # Three touches make a stronger level than one of the same age.
    single = next(x for x in levels if math.isclose(x.price, 92))
    assert lv.strength > single.strength > 0


def test_strength_grows_with_touches_and_fades_with_age() -> None:
    candles = bars(ZIGZAG)
    now = levels_at(candles, after(candles), config=NO_ROUND)
    later = levels_at(candles, after(candles) + 180 * DAY, config=NO_ROUND)
    peak_now = next(lv for lv in now if math.isclose(lv.price, 135 * 1.002))
    peak_later = next(lv for lv in later if math.isclose(lv.price, 135 * 1.002))
    # Two half-lives later a touch counts a quarter as much.
    assert 0 < peak_later.strength < peak_now.strength < 0.5
    assert peak_later.strength == pytest.approx(
        1 - 0.5 ** (0.5 ** ((after(candles) + 180 * DAY - (T0 + 30 * DAY)).days / 90)), abs=1e-4
    )


@pytest.mark.parametrize(
    ("price", "expected"),
    [
        (63_000.0, [55_000.0, 60_000.0, 65_000.0, 70_000.0]),
        (3_500.0, [2_000.0, 3_000.0, 4_000.0, 5_000.0]),
        (1_234.0, [1_100.0, 1_200.0, 1_300.0, 1_400.0]),
        (0.53, [0.4, 0.5, 0.6, 0.7]),
    ],
)
def test_round_numbers_are_the_nearest_multiples_of_the_step_for_the_price(
    price: float, expected: list[float]
) -> None:
    candles = bars([price] * 40, wick=0.0005)
    rounds = [lv for lv in levels_at(candles, after(candles)) if lv.source == "round"]
    assert [lv.price for lv in rounds] == pytest.approx(expected)
    assert all(lv.touches == 0 and lv.strength == 0.2 for lv in rounds)
    assert rounds[0].note.startswith("round number $")


def test_the_recent_range_gives_its_high_and_low() -> None:
    # A steady climb from 100 to 300: no swings, the range is the last 30 days of the climb.
    closes = path((0, 100), (300, 300))
    candles = bars(closes, wick=0.0)
    config = LevelConfig(round_count=0)
    levels = levels_at(candles, after(candles), config=config)
    assert [(lv.source, lv.price, lv.touches, lv.strength) for lv in levels] == [
        ("range", closes[-31], 0, 0.4),  # the low: the open of the first bar of the 30 days
        ("range", 300.0, 0, 0.4),  # a high still being made is not yet a tested level
    ]
    assert [lv.note for lv in levels] == [
        "30-day low, set 2024-09-28",
        "30-day high, set 2024-10-27",
    ]
    assert levels[1].last_touch == candles[-1].ts
    # Five bars down later, the top is a confirmed swing high: one level, stronger.
    candles = bars([*closes, 299.0, 298.0, 297.0, 296.0, 295.0], wick=0.0)
    (top,) = [lv for lv in levels_at(candles, after(candles), config=config) if lv.price >= 299]
    assert (top.source, top.price, top.touches) == ("swing", 300.0, 1)
    assert top.note == "swing high, 1 touch since 2024-10-27; also the 30-day high $300.00"
    assert top.strength > 0.4


def test_manual_levels_have_full_strength_and_absorb_computed_ones_nearby() -> None:
    candles = bars(ZIGZAG)
    levels = levels_at(candles, after(candles), manual=[135.5, 50.0], config=NO_ROUND)
    manual = [lv for lv in levels if lv.source == "manual"]
    assert [lv.price for lv in manual] == [50.0, 135.5]
    assert all(lv.strength == 1.0 for lv in manual)
    # The swing high at 135.27 is within 1.5 % of 135.5: one level, the manual one, says so.
    assert "also swing high" in manual[1].note
    assert not any(lv.source == "swing" and 134 < lv.price < 137 for lv in levels)
    assert manual[0].last_touch is None  # nothing traded near 50 in the lookback
    assert [lv.price for lv in levels] == sorted(lv.price for lv in levels)


def test_manual_levels_alone_when_there_are_no_candles() -> None:
    (lv,) = levels_at([], T0, manual=[42_000])
    assert (lv.price, lv.source, lv.strength, lv.touches) == (42_000.0, "manual", 1.0, 0)


@pytest.mark.parametrize("bad", [-1.0, 0.0, float("nan"), float("inf"), True, "60000"])
def test_a_bad_manual_level_is_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="manual level"):
        levels_at(bars([100.0] * 5), T0 + 10 * DAY, manual=[bad])  # type: ignore[list-item]


def test_bad_candles_and_times_are_refused() -> None:
    candles = bars([100.0] * 5)
    with pytest.raises(ValueError, match="ascending"):
        levels_at([candles[1], candles[0]], T0 + 10 * DAY)
    with pytest.raises(ValueError, match="expected TEST 1d"):
        levels_at([*candles, bars([1.0], start=T0 + 9 * DAY, interval="1h")[0]], T0 + 10 * DAY)
    with pytest.raises(ValueError, match="timezone-aware"):
        levels_at(candles, datetime(2024, 2, 1))
    with pytest.raises(ValueError, match="interval"):
        interval_seconds("1 day")


def test_max_levels_keeps_those_nearest_the_price() -> None:
    candles = bars(ZIGZAG)
    config = LevelConfig(swing_bars=3, round_count=0, range_days=2, max_levels=3)
    levels = levels_at(candles, after(candles), config=config)
    # The last close is 170: the 2-day range (high 170.34, low 161.68) and the swing nearest it.
    assert [round(lv.price, 2) for lv in levels] == [150.3, 161.68, 170.34]


# --- no look-ahead --------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(day=st.floats(min_value=30, max_value=4_320), manual=st.lists(st.floats(1e3, 1e5)))
def test_btc_levels_at_t_ignore_everything_not_closed_by_t(
    btc: list[Candle], day: float, manual: list[float]
) -> None:
    t = btc[0].ts + timedelta(days=day)
    closed = [c for c in btc if c.ts + DAY <= t]
    assert levels_at(btc, t, manual=manual) == levels_at(closed, t, manual=manual)


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(st.floats(-0.03, 0.03), min_size=20, max_size=400),
    cut=st.floats(0, 1),
    offset_s=st.integers(0, 3_599),
)
def test_synthetic_hourly_levels_ignore_the_future(
    steps: list[float], cut: float, offset_s: int
) -> None:
    closes = [1_000.0]
    for r in steps:
        closes.append(closes[-1] * (1 + r))
    candles = bars(closes, wick=0.004, interval="1h")
    config = LevelConfig(lookback_days=10, range_days=1, swing_bars=2)
    t = candles[int(cut * (len(candles) - 1))].ts + timedelta(seconds=offset_s)
    closed = [c for c in candles if c.ts + timedelta(hours=1) <= t]
    full = levels_at(candles, t, config=config)
    assert full == levels_at(closed, t, config=config)
    assert full == levels_at(candles, t, config=config)  # deterministic
    assert [lv.price for lv in full] == sorted(lv.price for lv in full)
    assert all(0.0 <= lv.strength <= 1.0 for lv in full)


def test_btc_breaks_up_to_t_ignore_what_came_after(btc: list[Candle]) -> None:
    t = utc(2022, 6, 20)
    closed = [c for c in btc if c.ts + DAY <= t]
    full = detect_breaks(btc, utc(2022, 5, 1), t)
    assert full == detect_breaks(closed, utc(2022, 5, 1), t)
    # Each break is judged on the levels known when its bar opened.
    for b in full:
        assert b.level in levels_at(btc, b.at - DAY)


# --- nearest --------------------------------------------------------------------------------


def test_nearest_labels_by_side_and_measures_distance() -> None:
    def level(price: float) -> Level:
        return Level(price, "manual", 0, T0, None, 1.0, "manual level")

    levels = [level(p) for p in (80.0, 90.0, 95.0, 100.0, 110.0, 120.0, 150.0)]
    supports, resistances = nearest(levels, 100.0, n=2)
    assert [(v.level.price, v.kind) for v in supports] == [(100.0, "support"), (95.0, "support")]
    assert [v.distance_pct for v in supports] == pytest.approx([0.0, 5.0])
    assert [(v.level.price, v.kind) for v in resistances] == [
        (110.0, "resistance"),
        (120.0, "resistance"),
    ]
    assert [v.distance_pct for v in resistances] == pytest.approx([10.0, 20.0])
    # Below every level: all resistance, no support.
    supports, resistances = nearest(levels, 50.0)
    assert supports == [] and [v.level.price for v in resistances] == [80.0, 90.0, 95.0]
    assert resistances[0].distance_pct == pytest.approx(60.0)
    with pytest.raises(ValueError):
        nearest(levels, 0.0)


# --- breaks ---------------------------------------------------------------------------------

#: A floor at 100 tested four times (troughs at bars 40, 60, 80, 100) under a ceiling near 110,
#: after a climb from 80 (a swing low at bar 0 ... 20 gives the support below).
FLOOR = path(
    (0, 90), (10, 80), (30, 110), (40, 100), (50, 110), (60, 100), (70, 110), (80, 100),
    (90, 110), (100, 100), (110, 105),
)  # fmt: skip
BREAK_CONFIG = LevelConfig(swing_bars=3, round_count=0)


def floor_then(tail: list[float]) -> list[Candle]:
    return bars(FLOOR + tail, wick=0.0)


def breaks_of(candles: list[Candle], **kwargs: float) -> list[LevelBreak]:
    """The breaks by the bars after the floor (those of the floor itself are its history)."""
    end_of_floor = T0 + len(FLOOR) * DAY
    return detect_breaks(candles, end_of_floor, after(candles), config=BREAK_CONFIG, **kwargs)


def test_the_synthetic_floor_is_a_strong_support() -> None:
    candles = floor_then([])
    floor = next(lv for lv in levels_at(candles, after(candles), config=BREAK_CONFIG)
                 if 99 <= lv.price <= 101)  # fmt: skip
    assert floor.touches == 4 and floor.strength > 0.9


def test_a_clear_breakdown_fires_once_with_the_next_support() -> None:
    candles = floor_then([103.0, 101.0, 92.0] + [91.0] * 20)
    found = breaks_of(candles)
    assert len(found) == 1
    (b,) = found
    assert (b.direction, b.close, b.asset) == ("down", 92.0, "TEST")
    assert b.at == T0 + (len(FLOOR) + 3) * DAY  # the close of the 92 bar
    assert 99 <= b.level.price <= 101 and b.level.touches == 4
    assert b.next_level is not None and b.next_level.price == pytest.approx(80.0)
    # Outside the asked window nothing is reported, inside it the same break.
    assert detect_breaks(candles, b.at, after(candles), config=BREAK_CONFIG) == []
    assert detect_breaks(candles, b.at - DAY, b.at, config=BREAK_CONFIG) == [b]


def test_a_price_hovering_on_the_level_does_not_flap() -> None:
    # ±0.5 % around the floor for 20 bars: within the confirmation band, so nothing fires.
    hover = [100.5 if i % 2 else 99.5 for i in range(20)]
    assert breaks_of(floor_then(hover)) == []
    # Swinging from 1.5 % below to 0.5 % above: confirmed once, then held off by hysteresis.
    swinging = [100.5 if i % 2 else 98.5 for i in range(20)]
    found = breaks_of(floor_then(swinging))
    assert [b.direction for b in found] == ["down"]


def test_a_rebound_beyond_rearm_lets_the_level_break_again() -> None:
    # Down through 100, back up to 103 (3 % above: an up break and a re-arm), down again.
    found = breaks_of(floor_then([98.0, 98.5, 103.0, 103.0, 98.0]))
    assert [(b.direction, b.close) for b in found] == [
        ("down", 98.0),
        ("up", 103.0),
        ("down", 98.0),
    ]
    # Only 1.5 % back above: the level is reclaimed (up break) but not re-armed for down.
    found = breaks_of(floor_then([98.0, 98.5, 101.5, 101.5, 98.0]))
    assert [(b.direction, b.close) for b in found] == [("down", 98.0), ("up", 101.5)]


def test_a_slow_grind_through_the_level_still_counts() -> None:
    found = breaks_of(floor_then([100.4, 99.6, 99.3, 98.8, 98.5]))
    assert [(b.direction, b.close) for b in found] == [("down", 98.8)]


def test_a_resistance_never_crossed_cannot_break_down() -> None:
    # Price falls away from the 110 ceiling without ever closing above it: no break of 110.
    found = breaks_of(floor_then([104.0, 103.0]))
    assert found == []


def test_an_upside_break_names_the_next_resistance() -> None:
    candles = floor_then([108.0, 113.0] + [113.0] * 5)
    found = breaks_of(candles)
    assert [(b.direction, b.close) for b in found] == [("up", 113.0)]
    assert 109 <= found[0].level.price <= 111
    assert found[0].next_level is None  # nothing was ever traded above 110


def test_manual_levels_break_too() -> None:
    found = breaks_of(floor_then([104.0, 106.5]), manual=[105.0])  # type: ignore[arg-type]
    assert [(b.direction, b.level.price, b.level.source) for b in found] == [
        ("up", 105.0, "manual")
    ]


def test_bad_break_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="confirm_pct"):
        breaks_of(floor_then([]), confirm_pct=0.0)
    with pytest.raises(ValueError, match="timezone-aware"):
        detect_breaks(floor_then([]), datetime(2024, 1, 1), after(floor_then([])))


# --- real BTC -------------------------------------------------------------------------------


def test_btc_june_2022_breakdown_below_the_28k_support(btc: list[Candle]) -> None:
    found = detect_breaks(btc, utc(2022, 6, 1), utc(2022, 7, 1))
    # What the method finds (default config): the 2022-06-12 bar (closing 2022-06-13 00:00 UTC)
    # closed at $26.8k, through the $28.2k support (the 30-day low, also a May swing low); the
    # next day's capitulation close ($22.5k) broke the next one, and so on down.
    june13 = [b for b in found if b.at == utc(2022, 6, 13)]
    assert len(june13) == 1
    b = june13[0]
    assert b.direction == "down" and 28_000 <= b.level.price <= 33_000
    assert b.close == pytest.approx(26_762.6, abs=1)
    assert b.next_level is not None and b.next_level.price < b.close
    assert all(x.direction == "down" for x in found)


def test_btc_ftx_collapse_breaks_the_autumn_2022_floor(btc: list[Candle]) -> None:
    found = detect_breaks(btc, utc(2022, 11, 1), utc(2022, 11, 30))
    # 2022-11-09 closed at $15.9k, through the $18.4k-$18.7k floor that held from June to October
    # (three swing lows each); nothing traded lower in the lookback, so there is no next support.
    nov10 = [b for b in found if b.at == utc(2022, 11, 10)]
    floors = [b for b in nov10 if b.level.source == "swing" and 18_000 < b.level.price < 19_000]
    assert len(floors) == 2 and all(b.level.touches == 3 for b in floors)
    assert all(b.direction == "down" and b.next_level is None for b in nov10)


def test_btc_levels_after_the_february_2026_low(btc: list[Candle]) -> None:
    t = utc(2026, 2, 10)
    levels = levels_at(btc, t)
    price = _close_before(btc, t)
    supports, resistances = nearest(levels, price)
    # The 2026-02-06 bar traded down to ~$60.07k in this data: that is the 30-day low, and the
    # nearest support at or under $60.1k.
    low = next(lv for lv in levels if lv.source == "range" and lv.note.startswith("30-day low"))
    assert low.price == pytest.approx(60_074, abs=1)
    assert low.first_at == utc(2026, 2, 6)
    assert low in [v.level for v in supports]
    assert all(v.kind == "resistance" and v.level.price > price for v in resistances)


def _close_before(candles: list[Candle], t: datetime) -> float:
    return [c for c in candles if c.ts + DAY <= t][-1].close


def test_btc_day_by_day_gives_the_same_breaks_as_one_run(btc: list[Candle]) -> None:
    # Each call warms its hysteresis up over the lookback before its start, so asking quarter
    # by quarter gives what one run over the year gives (the "at most once" holds across calls).
    one_run = detect_breaks(btc, utc(2022, 1, 1), utc(2023, 1, 1))
    quarterly: list[LevelBreak] = []
    for month in (1, 4, 7, 10):
        end = utc(2022, month + 3, 1) if month < 10 else utc(2023, 1, 1)
        quarterly += detect_breaks(btc, utc(2022, month, 1), end)
    assert quarterly == one_run and len(one_run) > 20
