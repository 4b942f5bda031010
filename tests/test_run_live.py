"""`moodring run`'s live wiring with several platforms at once: Telegram (the loopback fake),
X (tweepy's real client against recorded responses) and prices (ccxt against the fake
Binance), each under the supervisor, into one pipeline whose readings move with the messages."""

from __future__ import annotations

import asyncio
import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import responses
from pydantic import SecretStr

from bot.app.wiring import build_pipeline, pipeline_config, serve
from bot.chat.commands import CommandContext, reading_at
from bot.pipeline.supervisor import health_from_json
from bot.settings import Settings
from bot.store import Store
from bot.types import Scope
from connectors.console import ConsoleSink
from tests.conftest import synthetic_text
from tests.fake_exchange import (
    FakeBinance,
    make_klines,
    open_interest,
    premium_index,
    ticker_24hr,
)
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.test_chat_telegram import GROUP, group_update
from tests.test_x import URL, USER, tweet

X_TOKEN = "AAAAAAAAAAAAAAAAAAAAAExampleBearerTokenForTestsOnly000000000000"


@pytest.fixture
def telegram() -> FakeTelegram:
    server = FakeTelegram()
    server.start()
    yield server
    server.stop()


def test_telegram_x_and_prices_run_side_by_side(
    tmp_path: Path,
    telegram: FakeTelegram,
    fake_binance: FakeBinance,
    tiny_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    hour = now.replace(minute=0, second=0)
    start = hour - timedelta(minutes=50)  # the posts straddle an hour: the index ticks on it
    rng = random.Random(4)
    for i in range(60):
        at = start + timedelta(seconds=50 * i)
        text = f"$BTC {synthetic_text(rng, 'negative')}"
        telegram.queue_update(group_update(i + 1, text, 100 + i % 12, at))
    posts = [
        tweet(
            9000 + i,
            f"$BTC {synthetic_text(rng, 'negative')}",
            author=str(1001 + i % 6),
            created_at=(start + timedelta(seconds=45 * i)).isoformat().replace("+00:00", "Z"),
        )
        for i in range(60)
    ]
    users = [dict(USER, id=str(1001 + k), username=f"trader{k}") for k in range(6)]
    page = {
        "data": sorted(posts, key=lambda p: int(p["id"]), reverse=True),
        "includes": {"users": users},
        "meta": {"newest_id": "9059", "oldest_id": "9000", "result_count": 60},
    }
    fake_binance.klines[("BTCUSDT", "1h")] = make_klines(hour - timedelta(hours=48), "1h", 48)
    fake_binance.tickers["BTCUSDT"] = ticker_24hr("BTCUSDT", 64_000.0, -2.0, 900.0, now)
    fake_binance.premium["BTCUSDT"] = premium_index("BTCUSDT", 63_990.0, 0.0001, now)
    fake_binance.interest["BTCUSDT"] = open_interest("BTCUSDT", 80_000.0, now)
    monkeypatch.chdir(tmp_path)
    settings = Settings(
        db=tmp_path / "live.db",
        model_dir=tiny_model_dir,
        telegram_token=SecretStr(TOKEN),
        telegram_api_url=telegram.base_url,
        communities=(f"telegram:{GROUP}",),
        x_bearer_token=SecretStr(X_TOKEN),
        x_queries=("$BTC",),
        x_poll_s=0.2,
        price_exchange="binance",
        price_api_url=fake_binance.base_url,
        price_assets=("BTC",),
        price_poll_s=0.2,
    )
    store = Store(settings.db)

    def done() -> bool:
        counts = dict(store.query("SELECT platform, COUNT(*) FROM messages GROUP BY platform"))
        scored = store.query("SELECT COUNT(*) FROM messages WHERE status = 'scored'")[0][0]
        return (
            counts.get("telegram") == 60
            and counts.get("x") == 60
            and scored == 120
            and store.latest_ticker("BTC") is not None
            and store.checkpoint("index_tick") is not None
        )

    async def scenario() -> None:
        config = pipeline_config(settings, tick_to_clock=True, flush_s=0.1, delivery_s=0.5)
        sinks = {"console": ConsoleSink(open(tmp_path / "alerts.txt", "w"))}  # noqa: SIM115
        pipeline = build_pipeline(settings, store, sinks, config)
        serving = asyncio.create_task(serve(settings, store, pipeline, [], sinks))
        deadline = time.monotonic() + 60
        while not done() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        pipeline.stop()
        await serving

    try:
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            rsps.get(URL, json=page)
            rsps.get(URL, json={"meta": {"result_count": 0}})  # later polls: nothing new
            asyncio.run(scenario())
        assert done(), store.query("SELECT platform, status, COUNT(*) FROM messages GROUP BY 1, 2")
        # The index ticked on the clock while the posts came in...
        assert store.readings(Scope(asset="BTC"), "1h", hour, hour)
        # ...and the reading a member asks for now covers both platforms' posts.
        ctx = CommandContext(store, now + timedelta(minutes=1))
        reading, _ = reading_at(ctx, Scope("BTC"), "24h")
        assert reading.sample_size + reading.spam_count + reading.set_aside == 120
        platforms = store.query(
            "SELECT DISTINCT platform FROM messages WHERE created_at < ?", [hour.isoformat()]
        )
        assert {p for (p,) in platforms} == {"telegram", "x"}
        assert store.usage("x", now.strftime("%Y-%m")) == 60
        health = {name: health_from_json(doc) for name, doc, _ in store.health()}
        assert health["x"].messages == 60 and health["x"].reads == 60
        assert health["telegram"].messages == 60
        assert health["prices"].errors == 0 and health["discord"].state == "off"
        assert store.latest_ticker("BTC").funding_rate == 0.0001
        assert store.newest_candle_time("BTC", "1h") is not None
        assert telegram.queued_ids() == []  # every update stored, then confirmed
        assert json.loads(store.checkpoint("x:plan") or "{}")["cap"] == 10_000
    finally:
        store.close()
