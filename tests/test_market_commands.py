"""/fear, /price, /levels and /corr on the bundled price history (no social data needed)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.chat.commands import CommandContext, handle
from bot.market.candles import load_bundled
from bot.market.composite import MarketWeights
from bot.market.reads import save_weights
from bot.store import Store
from connectors.types import Command, Ticker


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    s = Store(tmp_path_factory.mktemp("market") / "m.db")
    load_bundled(s, ["BTC"])  # IGV comes from the bundled file on demand
    yield s
    s.close()


def ask(store: Store, text: str, now: datetime, admin: bool = False) -> str:
    name, *args = text.lstrip("/").split()
    cmd = Command(
        platform="telegram",
        community="-100",
        channel="-100",
        user="u1",
        name=name,
        args=tuple(args),
        roles=frozenset({"admin"}) if admin else frozenset(),
    )
    return handle(cmd, CommandContext(store=store, now=now)).text


def test_fear_shows_the_composite_and_each_component(store: Store) -> None:
    text = ask(store, "/fear", datetime(2022, 6, 19, tzinfo=UTC))
    assert "Fear & Greed (BTC market + social)" in text
    first = text.splitlines()[1]
    value = int(first.split("/")[0])
    assert value <= 25 and "Extreme Fear" in first and "market-v2" in first  # June 2022
    # market-v2 says what stood in: no implied volatility or liquidations are stored here.
    assert "(volatility: realised (no implied volatility stored for 30 days))" in text
    assert "(liquidations: not collected (left out))" in text
    for name in ("volatility", "momentum", "volume", "drawdown"):
        assert f"• {name}: " in text and "(weight " in text
    assert "social mood" not in text.split("Social mood")[0]  # no social data: not joined
    assert "Social mood (all sources): collecting" in text


def test_published_weights_change_the_composite(store: Store) -> None:
    now = datetime(2024, 3, 10, tzinfo=UTC)
    before = ask(store, "/fear", now)
    save_weights(store, MarketWeights(volatility=0, momentum=1, volume=0, drawdown=0), now)
    try:
        only_momentum = ask(store, "/fear", now)
    finally:
        save_weights(store, MarketWeights(), now)
    assert before != only_momentum
    assert "momentum: " in only_momentum and "(weight 100%)" in only_momentum


def test_price_uses_a_fresh_ticker_with_funding(store: Store) -> None:
    now = datetime(2026, 7, 22, 12, tzinfo=UTC)
    plain = ask(store, "/price BTC", now)
    assert plain.startswith("BTC $") and "(1d close, 2026-07-22 00:00 UTC)" in plain
    assert "30d volatility" in plain and "funding" not in plain
    store.add_ticker(
        Ticker("BTC", now - timedelta(minutes=5), 66_900.0, -1.2, 900.0, 0.00012, 7.1e9, "test")
    )
    text = ask(store, "/price BTC", now)
    assert text.startswith("BTC $66,900 (ticker, 2026-07-22 11:55 UTC), -1.2% in 24h")
    assert "funding +0.0120%/8h" in text and "open interest $7,100,000,000" in text
    assert "\nMood collecting" in text
    # A stale ticker is not "the price now".
    later = ask(store, "/price BTC", now + timedelta(hours=5))
    assert "(1d close" in later


def test_levels_are_labelled_with_distance_strength_and_origin(store: Store) -> None:
    text = ask(store, "/levels BTC", datetime(2022, 7, 24, tzinfo=UTC))
    lines = text.splitlines()
    assert lines[0].startswith("BTC $22,")
    resistances = [ln for ln in lines if ln.startswith("Resistance ")]
    supports = [ln for ln in lines if ln.startswith("Support ")]
    assert len(resistances) == 3 and len(supports) == 3
    # Old swing highs below the price now act as support (resistance turned support).
    assert supports[0].startswith("Support $22,315 (0.7% away, strength 0.46): swing high")
    assert resistances[0].startswith("Resistance $24,197 (7.7% away") and "30-day high" in text
    assert all("% away, strength " in ln for ln in resistances + supports)


def test_moderators_add_and_remove_manual_levels(store: Store) -> None:
    now = datetime(2022, 7, 24, tzinfo=UTC)
    assert "moderators only" in ask(store, "/levels BTC add 21k", now)
    assert "level $21,000 added" in ask(store, "/levels BTC add 21k", now, admin=True)
    assert "already there" in ask(store, "/levels BTC add 21000", now, admin=True)
    text = ask(store, "/levels BTC", now)
    assert "Manual levels here: $21,000" in text and "manual level" in text
    assert "removed" in ask(store, "/levels BTC remove $21,000", now, admin=True)
    assert "Manual levels here" not in ask(store, "/levels BTC", now)
    assert "is not a price" in ask(store, "/levels BTC add lots", now, admin=True)


def test_corr_on_aligned_trading_days(store: Store) -> None:
    now = datetime(2026, 2, 28, tzinfo=UTC)
    text = ask(store, "/corr BTC IGV", now)
    # The bundled data give r = 0.72 over the 30 days to 2026-02-27 (21 trading days).
    assert text.startswith("BTC–IGV correlation of daily returns, 30d to 2026-02-27: r = +0.72")
    assert "strong positive" in text and "21 aligned trading days" in text
    assert "90d" in ask(store, "/corr btc igv 90d", now)
    assert "No daily prices for DOGE" in ask(store, "/corr BTC DOGE", now)
    assert "name two assets" in ask(store, "/corr BTC", now)


def test_no_prices_is_a_clear_answer(tmp_path: Path) -> None:
    empty = Store(tmp_path / "e.db")
    try:
        now = datetime(2022, 7, 24, tzinfo=UTC)
        assert "No stored prices for ETH" in ask(empty, "/levels ETH", now)
        assert "No stored prices for ETH" in ask(empty, "/price ETH", now)
        assert "composite unavailable: needs a year of ETH" in ask(empty, "/fear ETH", now)
    finally:
        empty.close()
