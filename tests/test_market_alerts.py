"""Alerts that join price and mood: level breaks, divergence, composite extremes, and the
pipeline raising them for subscribers of those kinds."""

from __future__ import annotations

import asyncio
import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.market.alerts import composite_alert, divergence_alert, level_alerts, mood_words
from bot.market.candles import bundled_path, closed_by, load_bundled, read_candles_csv
from bot.market.composite import MarketReading
from bot.mood.alerts import AlertState
from bot.prefs.subscriptions import Subscription
from bot.store import Store
from bot.types import MoodReading, Scope, band_of
from connectors.replay import ReplaySource
from nlp.scorer import Scorer
from tests.conftest import synthetic_text
from tests.doubles import RecordingSink
from tests.test_pipeline_e2e import make_pipeline

BTC_DAILY = read_candles_csv(bundled_path("BTC"), "BTC", "1d").candles


def mood(value: float | None, at: datetime) -> MoodReading:
    band = "collecting" if value is None else band_of(value)
    return MoodReading(Scope(asset="BTC"), "24h", at, value, band)


def test_the_june_2022_breakdown_names_level_mood_and_next_support() -> None:
    now = datetime(2022, 6, 13, tzinfo=UTC)  # the 12 June bar (close $26,763) has just closed
    candles = closed_by(BTC_DAILY, now)
    [alert] = level_alerts("BTC", candles, now - timedelta(hours=1), now, mood(12, now), -18.4)
    assert alert.kind == "levels" and alert.scope == Scope(asset="BTC") and alert.at == now
    assert alert.title.startswith("BTC broke below $28,262 support (")
    assert "mood 12 Extreme Fear (−18 in 24h); next support $26,350" in alert.title
    assert "daily close $26,763" in alert.detail
    # The same break is the same alert: its key does not depend on when it is computed.
    again = level_alerts("BTC", candles, now - timedelta(days=1), now, mood(30, now), None)
    assert [a.key for a in again] == [alert.key]
    # No bar closed in the window: nothing.
    assert level_alerts("BTC", candles, now, now + timedelta(hours=1), None, None) == []
    # The next day's close ($22,487) breaks the next supports down: one alert each.
    later = datetime(2022, 6, 14, tzinfo=UTC)
    next_day = level_alerts(
        "BTC", closed_by(BTC_DAILY, later), later - timedelta(hours=1), later, None, None
    )
    assert next_day and all("broke below" in a.title for a in next_day)
    assert any("$26,350 support" in a.title for a in next_day)


def test_mood_words() -> None:
    at = datetime(2022, 6, 14, tzinfo=UTC)
    assert mood_words(mood(None, at), None) == "mood still collecting"
    assert mood_words(mood(70.4, at), 12.2) == "mood 70 Greed (+12 in 24h)"


def _reading(value: float, day: int) -> MarketReading:
    at = datetime(2022, 6, day, tzinfo=UTC)
    comps = {"volatility": value, "momentum": value, "social": 50.0}
    return MarketReading(at, value, band_of(value), comps, {"volatility": 0.5})


def test_composite_extremes_have_hysteresis() -> None:
    state = AlertState()
    fired = []
    for day, value in enumerate([40, 24, 20, 28, 32, 30, 34, 25, 80, 70, 77], start=1):
        alert, state = composite_alert("BTC", _reading(value, day), state)
        fired.append((value, alert.title if alert else None))
    titles = [(v, t) for v, t in fired if t]
    # In at 24, stays in while ≤ 33, out at 34, in again at 25; greed at 80, not again at 77
    # (it never fell below the exit of 68 in between).
    assert [v for v, _ in titles] == [24, 25, 80]
    assert titles[0][1] == (
        "BTC fear & greed composite (market + social) entered Extreme Fear: 24/100"
    )
    alert, _ = composite_alert("BTC", _reading(20, 2), AlertState())
    assert alert is not None and "social 50" in alert.detail and "market-v1" in alert.detail
    market_only = MarketReading(alert.at, 20.0, band_of(20.0), {"volatility": 20.0}, {})
    alert, _ = composite_alert("BTC", market_only, AlertState())
    assert alert is not None and "composite (market only) entered" in alert.title


def test_divergence_fires_once_per_cooldown() -> None:
    start = datetime(2024, 3, 1, tzinfo=UTC)
    closes = [(start + timedelta(days=i), 60_000 + 1_000 * i) for i in range(10)]
    moods = [(start + timedelta(days=i), 70.0 - 3 * i) for i in range(10)]
    now = start + timedelta(days=9)
    alert, state = divergence_alert("BTC", closes, moods, now, AlertState())
    assert alert is not None and alert.kind == "divergence"
    assert alert.title.startswith("BTC bearish divergence: ")
    assert "mood 64 → 43" in alert.detail
    # The next day it still holds, but the cooldown keeps it to one alert.
    closes.append((now + timedelta(days=1), 70_000))
    moods.append((now + timedelta(days=1), 40.0))
    again, _ = divergence_alert("BTC", closes, moods, now + timedelta(days=1), state)
    assert again is None
    # Price and mood agreeing is no divergence.
    agree = [(t, 40.0 + 3 * i) for i, (t, _) in enumerate(moods)]
    assert divergence_alert("BTC", closes, agree, now, AlertState())[0] is None


def test_the_pipeline_raises_level_alerts_for_subscribers(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """Three days of $BTC chatter over the 13 June 2022 breakdown, with the bundled daily
    candles stored: the tick after the bar closes raises the level alert once, and it goes
    to the subscriber who asked for levels, not to the one who asked only for hype."""
    rng = random.Random(5)
    start = datetime(2022, 6, 11, tzinfo=UTC)
    rows = []
    for h in range(24 * 4):
        for k in range(8):
            rows.append(
                {
                    "id": f"{h}-{k}",
                    "created_at": (start + timedelta(hours=h, minutes=7 * k)).isoformat(),
                    "author": f"user{rng.randrange(40)}",
                    "text": "$BTC " + synthetic_text(rng, rng.choice(["negative", "neutral"])),
                }
            )
    stream = tmp_path / "june.jsonl"
    stream.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    store = Store(tmp_path / "m.db")
    try:
        load_bundled(store, ["BTC"])
        now = datetime(2022, 6, 11, tzinfo=UTC)
        store.subscribe(Subscription("telegram", "-1", "-1", "mod", "BTC", ("levels",)), now)
        store.subscribe(Subscription("telegram", "-2", "-2", "mod2", "*", ("hype",)), now)
        pipeline = make_pipeline(
            store,
            Scorer(tiny_model_dir, cache_size=0),
            {"console": RecordingSink(), "telegram": RecordingSink()},
        )
        asyncio.run(pipeline.run([ReplaySource(stream, platform="replay", community="t")]))
        alerts = store.query(
            "SELECT key, at, title FROM alerts WHERE kind = 'levels' ORDER BY at, key"
        )
        # The 12 June close broke $28,262; the 13 June close broke the supports below it.
        key, at, title = alerts[0]
        assert at.startswith("2022-06-13T00:00") and "broke below $28,262 support" in title
        assert {a[1][:10] for a in alerts} == {"2022-06-13", "2022-06-14"}
        assert len({a[0] for a in alerts}) == len(alerts)
        targets = store.query("SELECT sink, target FROM outbox WHERE alert_key = ?", [key])
        assert ("telegram", "-1") in targets and ("telegram", "-2") not in targets
        state = store.alert_state("BTC|*|*", "market")
        assert json.loads(state)["extreme"] in (None, "fear")  # the composite's band is kept
    finally:
        store.close()


@pytest.mark.parametrize("kind", ["levels", "divergence"])
def test_subscribers_choose_the_market_kinds(kind: str) -> None:
    from bot.prefs.subscriptions import parse_subscribe

    asset, kinds = parse_subscribe(("BTC", kind))
    assert (asset, kinds) == ("BTC", (kind,))


def test_a_daily_candle_stored_after_the_midnight_tick_is_still_processed(
    tmp_path: Path,
) -> None:
    """Live, the exchange poll stores the day's bar a minute after the midnight tick: the
    rules run at the next tick that finds it, and each close is processed once."""
    from bot.pipeline.config import PipelineConfig
    from bot.pipeline.ticks import IndexEngine

    store = Store(tmp_path / "late.db")
    try:
        cutoff = datetime(2022, 6, 12, tzinfo=UTC)
        store.add_candles([c for c in BTC_DAILY if c.ts < cutoff], "test")
        engine = IndexEngine(store, PipelineConfig(assets=("BTC",)))
        midnight = datetime(2022, 6, 13, tzinfo=UTC)
        assert [a for a in engine.tick(midnight) if a.kind == "levels"] == []  # bar not in
        store.add_candles([c for c in BTC_DAILY if c.ts == cutoff], "test")  # it arrives
        raised = engine.tick(midnight + timedelta(hours=1))
        [level] = [a for a in raised if a.kind == "levels"]
        assert level.at == midnight and "broke below $28,262 support" in level.title
        # Processed once: later ticks of the same day raise nothing more.
        assert [a for a in engine.tick(midnight + timedelta(hours=2)) if a.kind == "levels"] == []
    finally:
        store.close()
