"""`moodring run` with the liquidation streams and Deribit's DVOL on (#17), against the loopback
fakes through ccxt's real classes: events are stored once, a dropped stream becomes a gap in
`moodring status`, and /price and /liquidations show what was collected."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.app.wiring import build_pipeline, pipeline_config, serve
from bot.market.candles import load_bundled
from bot.pipeline.status import status_report
from bot.settings import Settings
from bot.store import Store
from connectors.console import ConsoleSink
from tests.fake_deribit import FakeDeribit, dvol_rows
from tests.fake_liquidations import BINANCE, BYBIT, FakeLiquidations, all_liquidation, force_order
from tests.test_market_commands import ask


@pytest.fixture
def streams() -> Iterator[FakeLiquidations]:
    server = FakeLiquidations()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def deribit() -> Iterator[FakeDeribit]:
    server = FakeDeribit()
    server.start()
    yield server
    server.stop()


def test_run_collects_liquidations_and_implied_volatility(
    tmp_path: Path,
    streams: FakeLiquidations,
    deribit: FakeDeribit,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    hour = now.replace(minute=0, second=0)
    deribit.bars[("BTC", "3600")] = dvol_rows(hour - timedelta(hours=48), "3600", 48, 60.0)
    deribit.bars[("BTC", "1D")] = dvol_rows(
        hour.replace(hour=0) - timedelta(days=40), "1D", 40, 50.0
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", None)  # no chat and no console: the feeds alone
    settings = Settings(
        db=tmp_path / "live.db",
        model_dir=tiny_model_dir,
        price_assets=("BTC",),
        liquidation_exchanges=(BINANCE, BYBIT),
        liquidation_ws_url=streams.ws_url,
        liquidation_api_url=streams.base_url,
        implied_vol=True,
        deribit_api_url=deribit.base_url,
        implied_vol_poll_s=0.5,
    )
    store = Store(settings.db)
    load_bundled(store, ["BTC"])

    def stored() -> int:
        return store.query("SELECT COUNT(*) FROM liquidations")[0][0]

    async def wait(check, what: str) -> None:  # a bound on waiting, not a timing assertion
        deadline = time.monotonic() + 30
        while not check():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.1)

    async def scenario() -> None:
        config = pipeline_config(settings, tick_to_clock=False, flush_s=0.1, delivery_s=0.5)
        sinks = {"console": ConsoleSink(open(tmp_path / "alerts.txt", "w"))}  # noqa: SIM115
        pipeline = build_pipeline(settings, store, sinks, config)
        serving = asyncio.create_task(serve(settings, store, pipeline, [], sinks))
        await wait(lambda: streams.subscribed(BINANCE) and streams.subscribed(BYBIT), "subscribed")
        long_sold = force_order("BTCUSDT", "SELL", "2.5", "74680", now - timedelta(seconds=5))
        streams.push(BINANCE, long_sold)
        streams.push(BINANCE, long_sold)  # the same event twice: stored once
        streams.push(BYBIT, all_liquidation("BTCUSDT", ("Sell", "1.2", "74700", now)))
        streams.push(BYBIT, "{not json")
        await wait(lambda: stored() == 2, "two events stored")
        first = streams.connections(BYBIT)
        streams.drop(BYBIT, abrupt=True)
        await wait(lambda: len(streams.connections(BYBIT)) > len(first), "bybit back")
        streams.push(BYBIT, all_liquidation("BTCUSDT", ("Buy", "0.4", "74650", now)))
        await wait(lambda: stored() == 3, "the third event, after the reconnect")
        await wait(lambda: store.stream_gaps(now - timedelta(hours=1)), "the gap recorded")
        await wait(lambda: store.implied_vol("BTC", "1h", now - timedelta(days=3), now), "dvol")
        pipeline.stop()
        await serving

    asyncio.run(scenario())
    try:
        assert store.query("SELECT COUNT(*), COUNT(DISTINCT event_id) FROM liquidations") == [
            (3, 3)
        ]
        sides = dict(store.query("SELECT exchange, side FROM liquidations WHERE amount > 1"))
        assert sides == {"binanceusdm": "long", "bybit": "short"}  # Binance SELL, Bybit Sell
        later = now + timedelta(minutes=1)
        price = ask(store, "/price BTC", later)
        assert "Implied volatility " in price and "(deribit DVOL, 1h bar" in price
        assert "Sampled liquidations 24h: $" in price and "collecting: 0 of 30 days" in price
        liq = ask(store, "/liquidations BTC", later)
        assert "largest:" in liq and "long $186.7K at $74,680 (binanceusdm)" in liq
        assert "streams were down 1 times" in liq
        report = status_report(store, later)
        assert "Stream gaps in 24h: 1" in report and "liquidations:bybit" in report
        # Each stream's health, from its sensor: connected, reconnects, frames refused.
        assert "  liquidations:bybit: " in report and "1 reconnects, 1 gaps" in report
        assert "1 malformed and 0 duplicate frames refused" in report
    finally:
        store.close()
