"""ExchangeFeed against a fake Binance on 127.0.0.1: the real ccxt client over real HTTP."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.errors import MalformedInput, SourceUnavailable
from connectors.exchange import ExchangeFeed, build_exchange, rate_per_8h, repoint_urls
from connectors.types import Candle
from tests.fake_exchange import (
    BANNED,
    TOO_MANY,
    UNAVAILABLE,
    Failure,
    FakeBinance,
    hang,
    make_klines,
    open_interest,
    premium_index,
    ticker_24hr,
)

DAY, HOUR = timedelta(days=1), timedelta(hours=1)
START = datetime(2026, 1, 1, tzinfo=UTC)
KLINES = "/api/v3/klines"


class Sleeps(list[float]):
    """Records the waits the feed asks for instead of waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def fake(fake_binance: FakeBinance) -> FakeBinance:
    """This module's name for the shared fake Binance (tests/conftest.py)."""
    return fake_binance


def with_feed(
    fake: FakeBinance,
    body: Callable[[ExchangeFeed], Awaitable[Any]],
    sleeps: Sleeps | None = None,
    timeout_ms: int = 2000,
    **kwargs: Any,
) -> Any:
    async def main() -> Any:
        exchange = build_exchange("binance", api_url=fake.base_url, timeout_ms=timeout_ms)
        exchange.timeout_on_exit = 0  # ccxt waits 250 ms on close for TLS shutdown; plain HTTP here
        feed = ExchangeFeed(
            exchange,
            sleep=sleeps if sleeps is not None else Sleeps(),
            rng=random.Random(7),
            **kwargs,
        )
        async with feed:
            return await body(feed)

    return asyncio.run(main())


def closes(rows: list[list[Any]]) -> list[float]:
    return [float(r[4]) for r in rows]


# ---------------------------------------------------------------------- markets


def test_full_market_list_keeps_spot_and_swap_apart(fake: FakeBinance) -> None:
    markets = with_feed(fake, lambda feed: feed.load())
    spot, swap = markets["BTC/USDT"], markets["BTC/USDT:USDT"]
    assert spot["id"] == swap["id"] == "BTCUSDT"  # same exchange id, two markets
    assert (spot["spot"], spot["swap"]) == (True, False)
    assert (swap["swap"], swap["linear"], swap["settle"]) == (True, True, "USDT")
    assert "BTC/USDT:USDT-260925" in markets  # the quarterly future is a third market
    assert markets["LUNA/USDT"]["active"] is False  # status BREAK
    # Loading reads exactly the spot and USDⓈ-M exchange info (no coin-M, options, or sapi).
    assert sorted(fake.paths()) == ["/api/v3/exchangeInfo", "/fapi/v1/exchangeInfo"]


def test_repoint_keeps_every_path() -> None:
    api = {
        "public": "https://api.binance.com/api/v3",
        "fapiPublic": "https://fapi.binance.com/fapi/v1",
        "nested": {"spot": "https://x.example/v5/market"},
    }
    assert repoint_urls(api, "http://127.0.0.1:9/") == {
        "public": "http://127.0.0.1:9/api/v3",
        "fapiPublic": "http://127.0.0.1:9/fapi/v1",
        "nested": {"spot": "http://127.0.0.1:9/v5/market"},
    }


def test_unknown_exchange_id_is_refused() -> None:
    with pytest.raises(ValueError, match="nosuchexchange"):
        build_exchange("nosuchexchange")


# ---------------------------------------------------------------------- candles


def test_daily_backfill_pages_forward_without_gaps_or_duplicates(fake: FakeBinance) -> None:
    rows = make_klines(START, "1d", 31)  # the 31st bar (Jan 31) is still open at ``now``
    fake.klines[("BTCUSDT", "1d")] = rows
    now = START + 30 * DAY + 13 * HOUR

    got: list[Candle] = with_feed(
        fake, lambda feed: feed.candles("BTC", "1d", since=START, limit=7, now=now)
    )

    assert len(got) == 30
    assert [c.ts for c in got] == [START + i * DAY for i in range(30)]  # no gap, no duplicate
    assert all(c.ts + DAY <= now for c in got)  # every bar has closed
    assert [c.close for c in got] == closes(rows[:30])
    assert {(c.asset, c.interval) for c in got} == {("BTC", "1d")}
    assert got[0].ts.tzinfo is UTC
    pages = fake.calls(KLINES)
    assert len(pages) == 5  # 7 + 7 + 7 + 7 + 2
    starts = [int(p.params["startTime"]) for p in pages]
    assert starts == [int((START + i * 7 * DAY).timestamp() * 1000) for i in range(5)]
    assert {p.params["limit"] for p in pages} == {"7"}


def test_hourly_backfill_stops_at_until_and_drops_the_open_bar(fake: FakeBinance) -> None:
    rows = make_klines(START, "1h", 60)
    fake.klines[("ETHUSDT", "1h")] = rows
    now = START + 59 * HOUR + timedelta(minutes=5)  # bar 59 is open

    async def body(feed: ExchangeFeed) -> tuple[list[Candle], list[Candle]]:
        until = START + 20 * HOUR
        first = await feed.candles(
            "eth", "1h", since=START + 3 * HOUR, until=until, limit=6, now=now
        )
        rest = await feed.candles("ETH", "1h", since=until, limit=25, now=now)
        return first, rest

    first, rest = with_feed(fake, body)
    assert [c.ts for c in first] == [START + i * HOUR for i in range(3, 20)]
    assert [c.ts for c in rest] == [START + i * HOUR for i in range(20, 59)]
    assert [c.close for c in first + rest] == closes(rows[3:59])
    assert first[0].asset == "ETH"


def test_without_since_the_latest_closed_bars_come(fake: FakeBinance) -> None:
    fake.klines[("BTCUSDT", "1d")] = make_klines(START, "1d", 20)
    now = START + 19 * DAY + HOUR  # bar 19 open
    got = with_feed(fake, lambda feed: feed.candles("BTC", "1d", limit=5, now=now))
    assert [c.ts for c in got] == [START + i * DAY for i in range(14, 19)]
    assert len(fake.calls(KLINES)) == 1


def test_unknown_asset_is_a_clear_error_without_a_request(fake: FakeBinance) -> None:
    with pytest.raises(MalformedInput, match="BTCX is not listed on binance"):
        with_feed(fake, lambda feed: feed.candles("BTCX", "1d", since=START, now=START + DAY))
    assert fake.calls(KLINES) == []


def test_unknown_interval_is_refused(fake: FakeBinance) -> None:
    with pytest.raises(ValueError, match="'7h' is not a timeframe of binance"):
        with_feed(fake, lambda feed: feed.candles("BTC", "7h", now=START))


# ---------------------------------------------------------------------- ticker


def test_ticker_with_funding_and_open_interest(fake: FakeBinance) -> None:
    at = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    fake.tickers["BTCUSDT"] = ticker_24hr("BTCUSDT", 95000.0, -1.25, 12345.5, at)
    fake.premium["BTCUSDT"] = premium_index("BTCUSDT", 95010.0, 0.0001, at)
    fake.interest["BTCUSDT"] = open_interest("BTCUSDT", 80000.0, at)

    t = with_feed(fake, lambda feed: feed.ticker("BTC"))

    assert (t.asset, t.at, t.last, t.source) == ("BTC", at, 95000.0, "binance")
    assert t.change_24h_pct == pytest.approx(-1.25)
    assert t.volume_24h == pytest.approx(12345.5)
    assert t.funding_rate == pytest.approx(0.0001)
    assert t.open_interest == pytest.approx(80000.0 * 95010.0)  # contracts valued at mark
    assert fake.calls("/api/v3/ticker/24hr")[0].params["symbol"] == "BTCUSDT"
    assert fake.calls("/fapi/v1/premiumIndex")[0].params["symbol"] == "BTCUSDT"
    assert fake.calls("/fapi/v1/openInterest")[0].params["symbol"] == "BTCUSDT"


def test_ticker_without_a_perpetual_has_no_funding(fake: FakeBinance) -> None:
    at = datetime(2026, 1, 10, tzinfo=UTC)
    fake.tickers["SOLUSDT"] = ticker_24hr("SOLUSDT", 180.0, 3.0, 1000.0, at)
    t = with_feed(fake, lambda feed: feed.ticker("SOL"))
    assert (t.last, t.funding_rate, t.open_interest) == (180.0, None, None)
    assert not any(p.startswith("/fapi/v1/") and "exchangeInfo" not in p for p in fake.paths())


def test_failing_funding_and_open_interest_leave_none(fake: FakeBinance) -> None:
    at = datetime(2026, 1, 10, tzinfo=UTC)
    fake.tickers["ETHUSDT"] = ticker_24hr("ETHUSDT", 3300.0, 0.5, 900.0, at)
    # The fake knows no ETHUSDT premium index or open interest: Binance answers -1121.
    t = with_feed(fake, lambda feed: feed.ticker("ETH"))
    assert (t.last, t.funding_rate, t.open_interest) == (3300.0, None, None)
    assert len(fake.calls("/fapi/v1/premiumIndex")) == 1  # a rejected symbol is not retried


# ---------------------------------------------------------------------- retries


def test_a_429_is_waited_out_and_the_same_request_sent_again(fake: FakeBinance) -> None:
    fake.klines[("BTCUSDT", "1d")] = make_klines(START, "1d", 5)
    sleeps = Sleeps()

    async def body(feed: ExchangeFeed) -> list[Candle]:
        await feed.load()
        fake.fail_next(TOO_MANY)
        return await feed.candles("BTC", "1d", since=START, now=START + 5 * DAY)

    got = with_feed(fake, body, sleeps)
    assert len(got) == 5
    tries = fake.calls(KLINES)
    assert len(tries) == 2 and tries[0].params == tries[1].params
    assert sleeps == [pytest.approx(1.0)]  # Retry-After: 1 outweighs the first backoff (≤ 1 s)


def test_a_418_ban_honours_retry_after_and_counts_an_error(fake: FakeBinance) -> None:
    fake.klines[("BTCUSDT", "1d")] = make_klines(START, "1d", 5)
    sleeps = Sleeps()

    async def body(feed: ExchangeFeed) -> tuple[list[Candle], int, str | None]:
        await feed.load()
        fake.fail_next(BANNED)
        got = await feed.candles("BTC", "1d", since=START, now=START + 5 * DAY)
        return got, feed.errors, feed.last_error

    got, errors, last_error = with_feed(fake, body, sleeps)
    assert len(got) == 5 and errors == 1
    assert last_error is not None and "DDoSProtection" in last_error
    assert sleeps == [2.0]


def test_a_ban_too_long_to_wait_out_gives_up_at_once(fake: FakeBinance) -> None:
    fake.klines[("BTCUSDT", "1d")] = make_klines(START, "1d", 5)
    sleeps = Sleeps()

    async def body(feed: ExchangeFeed) -> None:
        await feed.load()
        fake.fail_next(Failure(418, retry_after=7200))
        await feed.candles("BTC", "1d", since=START, now=START + 5 * DAY)

    with pytest.raises(SourceUnavailable, match="asked to wait 7200 s"):
        with_feed(fake, body, sleeps)
    assert sleeps == [] and len(fake.calls(KLINES)) == 1


def test_a_timeout_is_retried(fake: FakeBinance) -> None:
    fake.klines[("BTCUSDT", "1h")] = make_klines(START, "1h", 4)
    sleeps = Sleeps()

    async def body(feed: ExchangeFeed) -> tuple[list[Candle], str | None, datetime | None]:
        await feed.load()
        fake.fail_next(hang(2.0, path=KLINES))
        got = await feed.candles("BTC", "1h", since=START, now=START + 4 * HOUR)
        return got, feed.last_error, feed.last_ok_at

    got, last_error, last_ok_at = with_feed(fake, body, sleeps, timeout_ms=200)
    assert [c.ts for c in got] == [START + i * HOUR for i in range(4)]
    assert last_error is not None and "RequestTimeout" in last_error
    assert last_ok_at is not None
    assert len(sleeps) == 1 and 0.5 <= sleeps[0] <= 1.0  # first backoff: 1 s with equal jitter


def test_repeated_failures_become_source_unavailable(fake: FakeBinance) -> None:
    fake.klines[("BTCUSDT", "1d")] = make_klines(START, "1d", 5)
    sleeps = Sleeps()

    async def body(feed: ExchangeFeed) -> None:
        await feed.load()
        fake.fail_next(UNAVAILABLE, times=10)
        await feed.candles("BTC", "1d", since=START, now=START + 5 * DAY)

    with pytest.raises(
        SourceUnavailable, match="failed 4 times in a row; last: ExchangeNotAvailable"
    ):
        with_feed(fake, body, sleeps, max_attempts=4, base_delay_s=1.0)
    assert len(fake.calls(KLINES)) == 4
    # Exponential: each wait lies in [step/2, step] for steps 1, 2, 4 s.
    assert [s <= step and s >= step / 2 for s, step in zip(sleeps, [1, 2, 4], strict=True)] == [
        True
    ] * 3


def test_jitter_is_repeatable_with_a_seeded_rng(fake: FakeBinance) -> None:
    fake.klines[("BTCUSDT", "1d")] = make_klines(START, "1d", 5)

    def waits() -> list[float]:
        sleeps = Sleeps()
        fake.fail_next(Failure(503, retry_after=None, path=KLINES), times=2)
        with_feed(
            fake, lambda feed: feed.candles("BTC", "1d", since=START, now=START + DAY), sleeps
        )
        return list(sleeps)

    first, second = waits(), waits()
    assert first == second and len(first) == 2


# ---------------------------------------------------------------------- poll


def test_poll_hands_over_only_new_closed_candles(fake: FakeBinance) -> None:
    rows = make_klines(START, "1h", 8)
    fake.klines[("BTCUSDT", "1h")] = rows[:6]  # bar 5 is still open at the first round
    clock = {"now": START + 5 * HOUR + timedelta(minutes=30)}
    stored: dict[tuple[str, str], list[Candle]] = {("BTC", "1h"): []}
    batches: list[list[Candle]] = []
    stopping = asyncio.Event()

    def since_of(asset: str, interval: str) -> datetime | None:
        have = stored[(asset, interval)]
        return have[-1].ts if have else None

    async def on_candles(candles: list[Candle]) -> None:
        batches.append(candles)
        stored[(candles[0].asset, candles[0].interval)].extend(candles)
        if len(batches) == 1:
            # Time passes: bar 5 closes, bar 6 closes, bar 7 opens.
            fake.klines[("BTCUSDT", "1h")] = rows
            clock["now"] = START + 7 * HOUR + timedelta(minutes=1)
        else:
            stopping.set()

    async def main() -> None:
        exchange = build_exchange("binance", api_url=fake.base_url)
        exchange.timeout_on_exit = 0
        async with ExchangeFeed(exchange, sleep=Sleeps(), clock=lambda: clock["now"]) as feed:
            await asyncio.wait_for(
                feed.poll(["BTC"], ["1h"], on_candles, since_of, stopping, every_s=0.01), 5
            )

    asyncio.run(main())
    assert [[c.ts for c in b] for b in batches] == [
        [START + i * HOUR for i in range(5)],
        [START + 5 * HOUR, START + 6 * HOUR],
    ]
    second_round = fake.calls(KLINES)[-1]
    assert int(second_round.params["startTime"]) == int((START + 5 * HOUR).timestamp() * 1000)


def test_poll_rides_out_an_outage_and_refuses_unknown_assets(fake: FakeBinance) -> None:
    fake.klines[("BTCUSDT", "1d")] = make_klines(START, "1d", 3)
    now = START + 3 * DAY
    batches: list[list[Candle]] = []
    stopping = asyncio.Event()

    async def on_candles(candles: list[Candle]) -> None:
        batches.append(candles)
        stopping.set()

    async def main() -> None:
        exchange = build_exchange("binance", api_url=fake.base_url)
        exchange.timeout_on_exit = 0
        async with ExchangeFeed(exchange, sleep=Sleeps(), max_attempts=2, clock=lambda: now) as f:
            with pytest.raises(MalformedInput, match="DOGEX is not listed"):
                await f.poll(["BTC", "DOGEX"], ["1d"], on_candles, lambda a, i: None, stopping)
            fake.fail_next(UNAVAILABLE, times=2)  # the whole first round fails
            await asyncio.wait_for(
                f.poll(["BTC"], ["1d"], on_candles, lambda a, i: None, stopping, every_s=0.01), 5
            )

    asyncio.run(main())
    assert [len(b) for b in batches] == [3]
    assert len(fake.calls(KLINES)) == 3  # two failed tries, then the next round's success


def test_poll_waits_for_an_exchange_that_is_down_at_start(fake: FakeBinance) -> None:
    fake.klines[("ETHUSDT", "1d")] = make_klines(START, "1d", 2)
    batches: list[list[Candle]] = []
    stopping = asyncio.Event()

    async def on_candles(candles: list[Candle]) -> None:
        batches.append(candles)
        stopping.set()

    async def main() -> None:
        exchange = build_exchange("binance", api_url=fake.base_url)
        exchange.timeout_on_exit = 0
        now = START + 2 * DAY
        async with ExchangeFeed(exchange, sleep=Sleeps(), max_attempts=2, clock=lambda: now) as f:
            # Two tries of loading (each reads spot and USDⓈ-M info) fail: round one is lost.
            fake.fail_next(UNAVAILABLE, times=4)
            await asyncio.wait_for(
                f.poll(["ETH"], ["1d"], on_candles, lambda a, i: None, stopping, every_s=0.01), 5
            )

    asyncio.run(main())
    assert [[c.ts for c in b] for b in batches] == [[START, START + DAY]]
    assert fake.paths().count("/api/v3/exchangeInfo") == 3


def test_funding_rates_are_restated_per_8_hours() -> None:
    # Exchanges that settle hourly or every 4 h quote a smaller rate for the same pressure.
    assert rate_per_8h(0.0001, "8h") == pytest.approx(0.0001)
    assert rate_per_8h(0.0000125, "1h") == pytest.approx(0.0001)
    assert rate_per_8h(0.00005, "4h") == pytest.approx(0.0001)
    assert rate_per_8h(-0.0002, " 4H ") == pytest.approx(-0.0004)
    # unknown or unreadable periods leave the rate as given (the usual 8 h)
    assert rate_per_8h(0.0001, None) == 0.0001
    assert rate_per_8h(0.0001, "0h") == 0.0001
    assert rate_per_8h(0.0001, "daily") == 0.0001
    assert rate_per_8h(None, "1h") is None
