"""Sampled liquidations on the bot's side (#17): each event stored and counted once, the
window against its 30-day baseline ("collecting" before that), the cascade alert with its
cooldown, and /liquidations, /price and /fear showing them with implied volatility."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.market.candles import load_bundled
from bot.market.liquidations import (
    LIQUIDATION_STATE,
    SAMPLED,
    cascade_alert,
    liquidation_line,
    liquidation_window,
)
from bot.mood.alerts import AlertParams, AlertState
from bot.pipeline.market_rules import MarketRules
from bot.store import LiquidationHour, Store
from bot.track.hypotheses import case_kind
from bot.types import Scope
from connectors.types import Liquidation, StreamGap, VolatilityIndex
from tests.test_market_commands import ask

NOW = datetime(2026, 2, 5, 14, tzinfo=UTC)
HOUR = timedelta(hours=1)


def event(
    i: int, at: datetime, usd: float, side: str = "long", exchange: str = "bybit"
) -> Liquidation:
    price = 74_680.0
    return Liquidation(exchange, "BTC/USDT:USDT", "BTC", side, price, usd / price, usd, at, f"e{i}")


def history(days: int, per_hour: float = 100_000.0) -> list[LiquidationHour]:
    """``days`` of steady hourly liquidations before NOW, longs and shorts alike."""
    hours = []
    for k in range(1, days * 24 + 1):
        at = NOW - k * HOUR
        hours += [
            LiquidationHour(at, "long", per_hour / 2, 1),
            LiquidationHour(at, "short", per_hour / 2, 1),
        ]
    return hours


def test_a_window_is_collecting_until_thirty_days_then_has_a_baseline() -> None:
    young = history(10)
    w = liquidation_window("BTC", young, young[-1].hour, NOW)
    assert w.collecting and w.multiple is None and w.total == pytest.approx(2.4e6)
    assert "collecting: 10 of 30 days" in liquidation_line(w)

    old = history(40)
    spike = [LiquidationHour(NOW - HOUR, "long", 20e6, 40)]
    w = liquidation_window("BTC", old + spike, old[-1].hour, NOW)
    assert w.baseline == pytest.approx(2.4e6)  # each earlier day: 24 hours × $100K
    assert w.total == pytest.approx(2.4e6 + 20e6) and w.long_share == pytest.approx(21.2 / 22.4)
    assert (
        liquidation_line(w) == "sampled liquidations 24h: $22.4M, 95% longs, 9.3× the 30-day median"
    )
    hour = liquidation_window("BTC", old + spike, old[-1].hour, NOW, "1h")
    assert hour.baseline == pytest.approx(1e5) and hour.multiple == pytest.approx(201)
    # The hour at the window's start counts in it, and the one before in the baseline's first.
    edge = [LiquidationHour(NOW - 24 * HOUR, "short", 1e6, 1)]
    w = liquidation_window("BTC", history(40) + edge, old[-1].hour, NOW)
    assert w.shorts == pytest.approx(1.2e6 + 1e6)


def test_the_cascade_fires_past_its_multiple_and_floor_then_cools_down() -> None:
    old = history(40)
    calm = liquidation_window("BTC", old, old[-1].hour, NOW)
    assert cascade_alert(calm, AlertState(), 74_680, None, None)[0] is None
    spike = [*old, LiquidationHour(NOW - HOUR, "long", 30000000.0, 80)]
    w = liquidation_window("BTC", spike, old[-1].hour, NOW)
    alert, state = cascade_alert(
        w, AlertState(), 74_680, "support $74,000 (0.9% away)", "9/100 Extreme Fear"
    )
    assert alert is not None and alert.kind == "liquidation" and case_kind(alert) == "liquidation"
    assert alert.title == (
        "BTC liquidation cascade: $32.4M liquidated in 24h, 96% longs (14× the 30-day median)"
    )
    assert SAMPLED in alert.detail and "price $74,680" in alert.detail
    assert "support $74,000" in alert.detail and "mood 9/100 Extreme Fear" in alert.detail
    later = liquidation_window("BTC", spike, old[-1].hour, NOW + 2 * HOUR)
    assert cascade_alert(later, state, 74_680, None, None)[0] is None  # cooldown
    recent = history(10) + spike[-1:]
    young = liquidation_window("BTC", recent, min(h.hour for h in recent), NOW)
    assert young.collecting and cascade_alert(young, AlertState(), 74_680, None, None)[0] is None


def test_each_event_counts_once_in_its_hour(backend_store: Store) -> None:
    events = [event(i, NOW - HOUR + i * timedelta(minutes=7), 1e6) for i in range(5)]
    assert backend_store.add_liquidations(events) == 5
    assert (
        backend_store.add_liquidations([*events[2:], event(9, NOW - HOUR, 2000000.0, "short")]) == 1
    )
    hours = backend_store.liquidation_hours("BTC", NOW - 2 * HOUR, NOW)
    assert {(h.side, h.notional_usd, h.events) for h in hours} == {
        ("long", 5e6, 5),
        ("short", 2e6, 1),
    }
    assert [
        e.event_id for e in backend_store.largest_liquidations("BTC", NOW - 2 * HOUR, NOW, 2)
    ] == [
        "e9",
        "e0",
    ]
    assert backend_store.prune_liquidations(NOW) == 6
    assert backend_store.liquidation_hours("BTC", NOW - 2 * HOUR, NOW) == hours  # totals stay


@pytest.fixture
def market(tmp_path: Path) -> Iterator[Store]:
    store = Store(tmp_path / "liq.db")
    load_bundled(store, ["BTC"])
    yield store
    store.close()


def seed(store: Store, now: datetime, days: int, spike: float = 0.0) -> None:
    events = []
    for k in range(1, days * 24 + 1):
        events.append(
            event(k, now - k * HOUR + timedelta(minutes=5), 100_000.0, "long" if k % 2 else "short")
        )
    if spike:
        events += [
            event(10_000 + j, now - HOUR + timedelta(seconds=j), spike / 50) for j in range(50)
        ]
    store.add_liquidations(events)


def test_the_index_raises_a_cascade_with_price_level_and_mood(market: Store) -> None:
    now = datetime(2026, 7, 20, 15, tzinfo=UTC)
    rules = MarketRules(market, ["BTC"], AlertParams())
    seed(market, now, 40, spike=30e6)
    alerts, states = rules.alerts(now, [], {})
    cascades = [a for a in alerts if a.kind == "liquidation"]
    # The hour's cascade fires; the day's, the same cascade, is then within the cooldown.
    assert [a.key.split("|")[2] for a in cascades] == ["1h"]
    assert "price $" in cascades[0].detail and "nearest level" in cascades[0].detail
    assert (Scope(asset="BTC").key(), LIQUIDATION_STATE) in states


def test_commands_show_liquidations_and_implied_volatility(market: Store) -> None:
    now = datetime(2026, 7, 20, 15, tzinfo=UTC)
    assert "No liquidations collected for BTC" in ask(market, "/liquidations BTC", now)
    seed(market, now, 10, spike=30e6)
    market.add_stream_gap(
        StreamGap(
            "liquidations:bybit",
            now - 3 * HOUR,
            now - 3 * HOUR + timedelta(minutes=4),
            "socket closed",
        )
    )
    market.add_implied_vol([VolatilityIndex("BTC", "1h", now - 2 * HOUR, 95.0, 99.0, 94.0, 97.4)])
    text = ask(market, "/liquidations BTC", now)
    assert text.startswith(f"BTC liquidations, {SAMPLED}")
    assert (
        "collecting: 10 of 30 days" in text
        and "largest:" in text
        and "long $600K at $74,680 (bybit)" in text
    )
    assert "streams were down 1 times (4 min)" in text
    week = ask(market, "/liquidations BTC 7d", now)
    assert "daily (longs / shorts):" in week
    price = ask(market, "/price BTC", now)
    assert "Implied volatility 97% (deribit DVOL, 1h bar 07-20 13:00)" in price
    assert "realised over 30 days" in price and "Sampled liquidations 24h: $32.4M" in price
    assert "Sampled liquidations 24h" in ask(market, "/fear BTC", now)
    assert "Usage: /liquidations" in ask(market, "/liquidations", now)


def test_market_v2_reads_implied_volatility_and_liquidations_and_says_what_stood_in(
    market: Store,
) -> None:
    from bot.market.composite_v2 import (
        LIQUIDATION_WEIGHT,
        implied_vol_component,
        liquidation_component,
    )

    now = datetime(2026, 7, 20, 15, tzinfo=UTC)
    day = timedelta(days=1)
    flat = [VolatilityIndex("BTC", "1d", now - k * day, 50, 50, 50, 50.0) for k in range(2, 95)]
    assert implied_vol_component(flat, now) == pytest.approx(50.0)
    spike = [*flat, VolatilityIndex("BTC", "1d", now - day, 50, 100, 50, 100.0)]
    assert implied_vol_component(spike, now) < 25  # implied volatility doubling reads fear
    assert implied_vol_component(flat[:20], now) is None  # under 30 days
    old = history(40)
    calm = liquidation_window("BTC", old, old[-1].hour, NOW)
    assert liquidation_component(calm) == pytest.approx(50.0)
    longs = liquidation_window(
        "BTC", [*old, LiquidationHour(NOW - HOUR, "long", 30e6, 9)], old[-1].hour, NOW
    )
    shorts = liquidation_window(
        "BTC", [*old, LiquidationHour(NOW - HOUR, "short", 30e6, 9)], old[-1].hour, NOW
    )
    assert liquidation_component(longs) < 15 < 85 < liquidation_component(shorts)

    text = ask(market, "/fear BTC", now)
    assert "(market-v2)" in text and "liquidations: not collected" in text
    market.add_implied_vol(spike)
    seed(market, now, 40, spike=30e6)
    text = ask(market, "/fear BTC", now)
    assert "(volatility: implied (Deribit DVOL) against its 30/90-day averages)" in text
    assert "• liquidations (sampled): " in text and "(weight " in text
    assert "Sampled liquidations 24h: $" in text
    from bot.market.reads import composite_v2_at

    reading, _ = composite_v2_at(market, "BTC", now, None)
    assert reading is not None and reading.version == "market-v2"
    assert sum(reading.weights.values()) == pytest.approx(1.0)
    assert reading.weights["liquidations"] == pytest.approx(
        LIQUIDATION_WEIGHT / (LIQUIDATION_WEIGHT + 0.9 * (1 - 0.20 - 0.10))  # no social, funding
    )


def test_status_reports_the_streams_gaps(backend_store: Store) -> None:
    from bot.pipeline.status import status_report

    assert "Stream gaps" not in status_report(backend_store, NOW)
    backend_store.add_stream_gap(
        StreamGap(
            "liquidations:binanceusdm",
            NOW - 2 * HOUR,
            NOW - 2 * HOUR + 90 * timedelta(seconds=1),
            "1006: abnormal closure",
        )
    )
    backend_store.add_stream_gap(
        StreamGap(
            "liquidations:bybit", NOW - 3 * timedelta(days=1), NOW - 2 * timedelta(days=1), "old"
        )
    )
    report = status_report(backend_store, NOW)
    assert "Stream gaps in 24h: 1, 2 min not seen" in report
    assert (
        "liquidations:binanceusdm: 02-05 12:00:00–12:01:30 UTC (1006: abnormal closure)" in report
    )
    assert "Stream gaps in 24h: 1" in status_report(backend_store, NOW, detail=False)


def test_market_v2_equals_market_v1_until_something_new_is_stored(market: Store) -> None:
    """So market-v1's replayed record describes the live composite alerts until implied
    volatility or 30 days of liquidations exist (their line says it is market-v1's)."""
    from bot.market.candles import closed_by
    from bot.market.composite import market_reading
    from bot.market.composite_v2 import market_reading_v2

    candles = market.candles("BTC", "1d")
    for t in (datetime(2018, 12, 15, tzinfo=UTC), datetime(2024, 3, 10, tzinfo=UTC)):
        closed = closed_by(candles, t)
        for social in (None, 30.0):
            v1 = market_reading(closed, t, 0.0003, social)
            v2 = market_reading_v2(closed, t, 0.0003, social, [], None)
            assert v1 is not None and v2 is not None
            assert v2.value == pytest.approx(v1.value) and v2.components == v1.components
            assert v2.version == "market-v2" and v1.version == "market-v1"
