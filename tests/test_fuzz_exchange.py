"""Fuzzing price payloads: Binance klines and tickers through the real ccxt, Stooq's CSV, and
Binance/Bybit liquidation frames through the real ccxt.pro parsers and the live feed."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from hypothesis import event, given
from hypothesis import strategies as st

from bot.errors import ConfigError
from bot.market.candles import read_candles_csv
from bot.store import Store
from connectors.bounds import EARLIEST_POST, MAX_CLOCK_SKEW_S
from connectors.errors import ConnectorError, MalformedInput, SourceUnavailable
from connectors.exchange import ExchangeFeed, build_exchange
from connectors.liquidations import LiquidationFeed, parse_frame
from connectors.quotes import StooqQuotes, parse_csv
from connectors.types import Candle, Liquidation, StreamGap, Ticker
from tests.fake_exchange import FakeBinance, make_klines, open_interest, premium_index, ticker_24hr
from tests.fake_liquidations import (
    BINANCE,
    BYBIT,
    FakeLiquidations,
    all_liquidation,
    eventually,
    force_order,
)
from tests.fuzz_checks import check_aware_utc, check_candle, check_ticker, fresh_key, fuzz

HOUR_MS = 3_600_000
NOW_S = int(datetime.now(UTC).timestamp())
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
NOW_MS = int(NOW.timestamp() * 1000)
HUGE = 10**30

# ---------------------------------------------------------------------- hostile values

#: Numbers as Binance writes them (strings) and as a broken or hostile server might.
price = st.one_of(
    st.floats(0.01, 1e6).map(lambda x: f"{x:.8f}"),
    st.floats(0.01, 1e6).map(lambda x: f"{x:.8f}"),
    st.sampled_from(
        ["0", "-1", "-0.5", "NaN", "nan", "Infinity", "-inf", "1e400", "1e-400", "", "abc"]
    ),
    st.sampled_from([None, True, 0, -3, HUGE, 1e308, [], {}]),
    st.floats(allow_nan=False),
)
open_time = st.one_of(
    st.integers(NOW_MS - 500 * HOUR_MS, NOW_MS).map(lambda t: t - t % HOUR_MS),
    st.integers(NOW_MS - 500 * HOUR_MS, NOW_MS).map(lambda t: t - t % HOUR_MS),
    st.sampled_from([0, -1, -HOUR_MS, 10**15, 10**17, 10**20, HUGE, NOW_MS + 10 * HOUR_MS]),
    st.sampled_from([None, "1700000000000", "soon", 1.7e12, True, [], {}]),
)


@st.composite
def kline(draw: st.DrawFn) -> Any:
    """One element of Binance's klines answer: mostly a well-formed bar, often with bad values,
    sometimes short, long or not a list at all."""
    choice = draw(st.integers(0, 19))
    if choice == 0:
        return draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.just({})))
    t = draw(open_time)
    if choice < 8:  # a proper bar
        row = make_klines(NOW - timedelta(hours=1), "1h", 1)[0]
        o = draw(st.floats(1, 1e5))
        c = draw(st.floats(1, 1e5))
        h, lo = max(o, c) * draw(st.floats(1, 1.1)), min(o, c) / draw(st.floats(1, 1.1))
        row[0:6] = [t, f"{o:.8f}", f"{h:.8f}", f"{lo:.8f}", f"{c:.8f}", f"{o:.3f}"]
        return row
    closed = t + HOUR_MS - 1 if type(t) is int else 0
    row = [t, *(draw(price) for _ in range(5)), closed, "0", 1, "0", "0", "0"]
    cut = draw(st.sampled_from([12, 12, 12, 0, 1, 3, 5, 6, 14]))
    return row[:cut] if cut <= 12 else [*row, "extra", None]


@st.composite
def ticker_answer(draw: st.DrawFn) -> dict[str, Any]:
    """A ``/api/v3/ticker/24hr`` answer with some fields dropped or replaced."""
    good = ticker_24hr("BTCUSDT", draw(st.floats(1, 1e5)), draw(st.floats(-50, 50)), 10.0, NOW)
    for key in draw(st.lists(st.sampled_from(sorted(good)), max_size=4, unique=True)):
        if key == "symbol":
            continue  # the fake serves it by symbol
        if draw(st.booleans()):
            del good[key]
        else:
            good[key] = draw(st.one_of(price, open_time))
    return good


@st.composite
def swap_answers(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    """The perpetual's premiumIndex and openInterest answers, some fields made bad."""
    premium = premium_index("BTCUSDT", 50_000.0, 0.0001, NOW)
    interest = open_interest("BTCUSDT", 1234.5, NOW)
    for answer in (premium, interest):
        for key in draw(st.lists(st.sampled_from(sorted(answer)), max_size=2, unique=True)):
            if key != "symbol":
                answer[key] = draw(st.one_of(price, open_time))
    return premium, interest


# ---------------------------------------------------------------------- the fake exchange


@dataclass
class RawBinance(FakeBinance):
    """The fake Binance, answering klines with whatever ``raw_klines`` holds, as it is."""

    raw_klines: list[Any] = field(default_factory=list)

    def _klines(self, params: dict[str, str]) -> web.Response:
        return web.json_response(self.raw_klines)


@dataclass(repr=False)
class Exchange:
    """One fake Binance, one feed with its markets loaded, one loop for every example."""

    fake: RawBinance
    feed: ExchangeFeed
    loop: asyncio.AbstractEventLoop
    store: Store

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


async def _no_sleep(seconds: float) -> None:
    return None


@pytest.fixture(scope="module")
def exchange() -> Iterator[Exchange]:
    fake = RawBinance()
    fake.start()
    loop = asyncio.new_event_loop()
    ccxt_exchange = build_exchange("binance", api_url=fake.base_url, timeout_ms=5000)
    ccxt_exchange.timeout_on_exit = 0
    ccxt_exchange.enableRateLimit = False  # a local fake: ccxt's throttle only slows the run
    feed = ExchangeFeed(
        ccxt_exchange, sleep=_no_sleep, rng=random.Random(1), max_attempts=2, clock=lambda: NOW
    )
    ex = Exchange(fake, feed, loop, Store(":memory:", memory=True))
    ex.run(feed.load())
    yield ex
    ex.run(feed.close())
    loop.close()
    fake.stop()


def store_candles(store: Store, candles: list[Candle]) -> None:
    """The bot stores what the feed gives, and reads back the very same bars."""
    asset = fresh_key().upper()
    candles = [dataclasses.replace(c, asset=asset) for c in candles]
    assert store.add_candles(candles, "fuzz") == len(candles)
    assert store.candles(asset, "1h") == sorted(candles, key=lambda c: c.ts)


# ---------------------------------------------------------------------- properties


@fuzz(300)
@given(st.lists(kline(), max_size=8), st.booleans())
def test_klines_become_valid_candles_or_a_connector_error(
    exchange: Exchange, rows: list[Any], paged: bool
) -> None:
    exchange.fake.raw_klines = rows
    since = NOW - timedelta(hours=600) if paged else None
    try:
        candles = exchange.run(exchange.feed.candles("BTC", "1h", since=since, now=NOW))
    except ConnectorError as exc:
        event(type(exc).__name__)
        return
    event(f"{min(len(candles), 3)}+ candles")
    for c in candles:
        check_candle(c, now=NOW)
        assert c.ts + timedelta(hours=1) <= NOW  # closed bars only
    assert [c.ts for c in candles] == sorted({c.ts for c in candles})
    store_candles(exchange.store, candles)


@fuzz(300)
@given(ticker_answer(), swap_answers())
def test_tickers_are_valid_or_a_connector_error(
    exchange: Exchange, answer: dict[str, Any], swap: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    exchange.fake.tickers["BTCUSDT"] = answer
    exchange.fake.premium["BTCUSDT"], exchange.fake.interest["BTCUSDT"] = swap
    try:
        ticker = exchange.run(exchange.feed.ticker("BTC", now=NOW))
    except ConnectorError as exc:
        event(type(exc).__name__)
        return
    event(f"funding {ticker.funding_rate is not None}, interest {ticker.open_interest is not None}")
    check_ticker(ticker, now=NOW)
    stored = Ticker(fresh_key().upper(), *[getattr(ticker, f) for f in Ticker.__slots__[1:]])
    exchange.store.add_ticker(stored)
    assert exchange.store.latest_ticker(stored.asset) == stored


# ---------------------------------------------------------------------- Stooq's CSV

TODAY = datetime.now(UTC).date()
stooq_day = st.one_of(
    st.dates(date(2014, 1, 1), TODAY).map(date.isoformat),
    st.dates(date(2014, 1, 1), TODAY).map(date.isoformat),
    st.sampled_from(["9999-12-31", "0001-01-01", "2024-02-30", "20240105", "", "Date"]),
    st.text(max_size=10),
)
stooq_number = st.one_of(
    st.floats(0.01, 1e4).map(lambda x: f"{x:.2f}"),
    st.floats(0.01, 1e4).map(lambda x: f"{x:.2f}"),
    st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1e400", "", "n/a", "1_000"]),
)


@st.composite
def stooq_row(draw: st.DrawFn) -> list[str]:
    if draw(st.integers(0, 2)):  # a proper bar
        o, c = draw(st.floats(1, 1e4)), draw(st.floats(1, 1e4))
        h, lo = max(o, c) * 1.01, min(o, c) * 0.99
        prices = [f"{x:.4f}" for x in (o, h, lo, c)]
        return [draw(stooq_day), *prices, draw(stooq_number)]
    row = [draw(stooq_day), *(draw(stooq_number) for _ in range(5))]
    return row[: draw(st.sampled_from([6, 6, 5, 4, 1, 0]))]


def stooq_body(header: str, rows: list[list[str]], junk: str) -> str:
    return "\r\n".join([header, *(",".join(r) for r in rows)]) + junk


stooq_text = st.builds(
    stooq_body,
    st.sampled_from(
        ["Date,Open,High,Low,Close,Volume", "Date,Open,High,Low,Close", "No data", "", "<html>"]
    ),
    st.lists(stooq_row(), max_size=8),
    st.sampled_from(["", "\r\n", "\x00", '"', "\r\n\r\n", "\ufeff"]),
)


@fuzz(300)
@given(stooq_text)
def test_stooq_csv_gives_valid_daily_candles_or_malformed_input(text: str) -> None:
    try:
        candles = parse_csv(text, asset="SPY")
    except MalformedInput:
        return
    if candles is None:
        return  # "No data"
    for c in candles:
        check_candle(c)
        assert c.interval == "1d" and c.ts.time() == datetime.min.time()
    assert [c.ts for c in candles] == sorted({c.ts for c in candles})


@fuzz(100)
@given(stooq_text)
def test_stooq_answers_give_valid_candles_or_a_connector_error(text: str) -> None:
    async def main() -> list[Candle]:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, text=text))
        async with StooqQuotes("https://stooq.test", transport=transport) as quotes:
            return await quotes.daily("SPY", date(2014, 1, 1))

    try:
        candles = asyncio.run(main())
    except ConnectorError:
        return
    for c in candles:
        check_candle(c)
    store = Store(":memory:", memory=True)
    store.add_candles(candles, "quotes")
    assert store.candles("SPY", "1d") == candles


# ---------------------------------------------------------------------- what the fuzzing found


def good_kline(hours_ago: int, close: float = 100.0) -> list[Any]:
    row = make_klines(NOW - timedelta(hours=hours_ago), "1h", 1, first_price=close)[0]
    return row


@pytest.mark.parametrize(
    "bad",
    [
        [None],  # no open time: TypeError out of candles()
        None,
        [int((NOW - timedelta(hours=3)).timestamp() * 1000), "1", "2", "0.5", "NaN", "1"],
        [int((NOW - timedelta(hours=3)).timestamp() * 1000), "1", "2", "0.5", "inf", "1"],
        [int((NOW - timedelta(hours=3)).timestamp() * 1000), "-1", "2", "-2", "1", "1"],
        [int((NOW - timedelta(hours=3)).timestamp() * 1000), "1", "0.5", "2", "1", "1"],
        [int((NOW - timedelta(hours=3)).timestamp() * 1000), "1", "2", "0.5", "1", "-5"],
        [-(10**15), "1", "2", "0.5", "1", "1"],  # before 2009 (and far before time_t)
    ],
)
@pytest.mark.parametrize("paged", [False, True])
def test_a_bad_bar_is_left_out_and_its_neighbours_kept(
    exchange: Exchange, bad: Any, paged: bool
) -> None:
    # A NaN close was stored as NULL and broke every reader of the prices; a bar without an
    # open time raised TypeError out of the feed, and its poll died on it every round.
    exchange.fake.raw_klines = [good_kline(4), bad, good_kline(2, close=110.0)]
    since = NOW - timedelta(hours=10) if paged else None
    candles = exchange.run(exchange.feed.candles("BTC", "1h", since=since, now=NOW))
    assert [c.ts for c in candles] == [NOW - timedelta(hours=4), NOW - timedelta(hours=2)]
    for c in candles:
        check_candle(c, now=NOW)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"lastPrice": "NaN"}, SourceUnavailable),  # ccxt's own ValueError escaped the feed
        ({"lastPrice": "-1"}, MalformedInput),  # a negative price was a Ticker
        ({"closeTime": 10**17}, MalformedInput),  # OSError from the time conversion
        ({"closeTime": 0}, MalformedInput),  # a 1970 ticker
    ],
)
def test_an_unusable_ticker_is_a_connector_error(
    exchange: Exchange, change: dict[str, Any], error: type[ConnectorError]
) -> None:
    answer = ticker_24hr("BTCUSDT", 50_000.0, 1.5, 10.0, NOW)
    exchange.fake.tickers["BTCUSDT"] = {**answer, **change}
    with pytest.raises(error):
        exchange.run(exchange.feed.ticker("BTC", now=NOW))


def test_unusable_funding_and_interest_are_none(exchange: Exchange) -> None:
    exchange.fake.tickers["BTCUSDT"] = ticker_24hr("BTCUSDT", 50_000.0, 1.5, 10.0, NOW)
    premium = premium_index("BTCUSDT", 50_000.0, 0.0001, NOW)
    exchange.fake.premium["BTCUSDT"] = {**premium, "lastFundingRate": "1e400", "markPrice": "-1"}
    exchange.fake.interest["BTCUSDT"] = {**open_interest("BTCUSDT", 1.0, NOW), "openInterest": "-3"}
    ticker = exchange.run(exchange.feed.ticker("BTC", now=NOW))
    check_ticker(ticker, now=NOW)
    assert (ticker.funding_rate, ticker.open_interest) == (None, None)


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("9999-12-31,1,1,1,1,1", "a day ahead"),  # the newest stored day, forever
        ("2024-01-05,nan,1,1,1,1", "not finite"),
        ("2024-01-05,1,inf,1,1,1", "not finite"),
        ("2024-01-05,1,0.5,2,1,1", "not a bar"),
        ("2024-01-05,1,1,1,1,-1", "volume"),
        ('2024-01-05,"1,1,1,1,1', "unreadable"),
        ("\r,1,1,1,1,1", "unreadable"),  # csv.Error (a bare CR) escaped parse_csv
    ],
)
def test_a_stooq_row_that_is_no_bar_is_malformed_input(row: str, why: str) -> None:
    text = "Date,Open,High,Low,Close,Volume\r\n2024-01-04,1,1,1,1,1\r\n" + row + "\r\n\x00"
    with pytest.raises(MalformedInput, match=why):
        parse_csv(text, asset="SPY", today=date(2024, 1, 10))


# ---------------------------------------------------------------------- candle files

candle_time = st.one_of(
    stooq_day,
    st.integers(1_400_000_000, NOW_S).map(str),  # epoch seconds
    st.sampled_from(["9" * 20, "1" * 14, "99999999999999999", "-5", "2024-01-05T10:00:00+02:00"]),
)


@fuzz(150)
@given(
    st.lists(
        st.lists(st.one_of(candle_time, stooq_number), min_size=0, max_size=7),
        max_size=8,
    ),
    st.sampled_from(["date,open,high,low,close,volume", "time,close,open,low,high"]),
    st.sampled_from(["", "\x00", '"', "x" * 10, "\r"]),
)
def test_candle_files_give_valid_candles_or_a_clear_error(
    tmp_path: Path, rows: list[list[str]], header: str, junk: str
) -> None:
    path = tmp_path / f"{fresh_key()}.csv"
    path.write_text("\n".join([header, *(",".join(r) for r in rows)]) + junk, encoding="utf-8")
    try:
        got = read_candles_csv(path, "BTC")
    except ConfigError:
        return
    for c in got.candles:
        check_candle(c)
    assert len(got.candles) + got.skipped <= len(rows) + 1


@pytest.mark.parametrize(
    "row",
    [
        "99999999999999999999,1,1,1,1,1",  # OSError out of `moodring prices import`
        "9" * 400 + ",1,1,1,1,1",  # OverflowError
        "1",  # a short row
        "9999-12-31,1,1,1,1,1",  # the newest stored bar, forever
        "2024-01-05,inf,inf,inf,inf,1",  # infinite prices made a bar
        "2024-01-05,1,1,1,1,nan",
        "2024-01-05,1,1,1,1,-7",
    ],
)
def test_a_candle_file_row_that_is_no_bar_is_skipped(tmp_path: Path, row: str) -> None:
    path = tmp_path / "btc.csv"
    path.write_text(f"date,open,high,low,close,volume\n2024-01-04,1,2,0.5,1.5,3\n{row}\n")
    got = read_candles_csv(path, "BTC")
    assert [c.ts.date() for c in got.candles] == [date(2024, 1, 4)]
    assert got.skipped == 1 and "line 3" in got.first_error


def test_a_short_row_without_its_time_is_skipped(tmp_path: Path) -> None:
    # The time column after the row's end read as None: AttributeError out of the import.
    path = tmp_path / "btc.csv"
    path.write_text("close,date,open,high,low\n1.5,2024-01-04,1,2,0.5\n1\n")
    got = read_candles_csv(path, "BTC")
    assert len(got.candles) == 1 and got.skipped == 1


def test_a_stooq_field_over_csvs_limit_is_malformed_input() -> None:
    limit = csv.field_size_limit(1000)  # the limit is process-wide: restored below
    try:
        text = "Date,Open,High,Low,Close\r\n2024-01-05," + "9" * 1001 + ",1,1,1\r\n"
        with pytest.raises(MalformedInput, match="not CSV"):
            parse_csv(text, asset="SPY", today=date(2024, 1, 10))
    finally:
        csv.field_size_limit(limit)


# ---------------------------------------------------------------------- liquidation frames

SWAPS = ("BTC/USDT:USDT", "ETH/USDT:USDT")
liquidation_side = st.sampled_from(["SELL", "BUY", "Buy", "Sell", "sell", "LONG", "", None, 1, []])
liquidation_symbol = st.sampled_from(
    ["BTCUSDT", "ETHUSDT", "BTCUSDT_260925", "BTCPERP", "XYZUSDT", "btcusdt", "", None, 7, {}]
)
liquidation_value = st.one_of(price, open_time, liquidation_side, liquidation_symbol)
LIQUIDATION_FIELDS = {
    "s": liquidation_symbol,
    "S": liquidation_side,
    "T": open_time,
    "updatedTime": open_time,
    "symbol": liquidation_symbol,
    "side": liquidation_side,
}


def spoil(draw: st.DrawFn, entry: dict[str, Any]) -> dict[str, Any]:
    """``entry`` with a few fields dropped or given hostile values."""
    for key in draw(st.lists(st.sampled_from(sorted(entry)), max_size=4, unique=True)):
        if draw(st.booleans()):
            del entry[key]
        else:
            entry[key] = draw(LIQUIDATION_FIELDS.get(key, liquidation_value))
    return entry


@st.composite
def binance_frame(draw: st.DrawFn) -> Any:
    """A Binance ``forceOrder`` event: mostly well formed, often with bad fields, sometimes
    not an object at all, or wrapped the way a combined stream sends it."""
    choice = draw(st.integers(0, 19))
    if choice == 0:
        return draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.just([1])))
    at = datetime.fromtimestamp(draw(st.integers(NOW_MS - 500 * HOUR_MS, NOW_MS)) / 1000, UTC)
    qty, px = draw(st.floats(1e-4, 1e3)), draw(st.floats(1e-3, 1e6))
    side, symbol = (
        draw(st.sampled_from(["SELL", "BUY"])),
        draw(st.sampled_from(["BTCUSDT", "ETHUSDT"])),
    )
    frame = force_order(symbol, side, f"{qty:.4f}", f"{px:.2f}", at)
    if choice == 1:
        frame["o"] = draw(st.one_of(st.none(), st.text(max_size=3), st.just([])))
    elif choice >= 8:
        frame["o"] = spoil(draw, frame["o"])
    return {"stream": f"{symbol.lower()}@forceOrder", "data": frame} if choice == 19 else frame


@st.composite
def bybit_frame(draw: st.DrawFn) -> Any:
    """A Bybit ``allLiquidation`` frame of a few rows (or the older ``liquidation`` topic's
    one object), rows often spoiled, data sometimes missing or of the wrong type."""
    choice = draw(st.integers(0, 19))
    if choice == 0:
        return draw(st.one_of(st.none(), st.integers(), st.text(max_size=5), st.just([1])))
    rows = []
    for _ in range(draw(st.integers(0, 4))):
        at = datetime.fromtimestamp(draw(st.integers(NOW_MS - 500 * HOUR_MS, NOW_MS)) / 1000, UTC)
        size, px = draw(st.floats(1e-4, 1e3)), draw(st.floats(1e-3, 1e6))
        side = draw(st.sampled_from(["Buy", "Sell"]))
        rows.append((side, f"{size:.4f}", f"{px:.2f}", at))
    symbol = draw(st.sampled_from(["BTCUSDT", "ETHUSDT"]))
    frame = all_liquidation(symbol, *rows)
    frame["data"] = [spoil(draw, r) if draw(st.integers(0, 2)) == 0 else r for r in frame["data"]]
    if choice == 1:
        frame["data"] = draw(st.one_of(st.none(), st.text(max_size=3), st.just([None, "x"])))
    elif choice == 2 and frame["data"]:  # the older topic: one object with long names
        row = frame["data"][0]
        old = {"symbol": row.get("s"), "side": row.get("S"), "size": row.get("v")}
        frame = {
            "topic": f"liquidation.{symbol}",
            "data": spoil(draw, {**old, "price": row.get("p"), "updatedTime": row.get("T")}),
        }
    return frame


def entries(venue: str, frame: Any) -> int:
    """How many liquidations ``frame`` claims to carry: each must come out as a Liquidation
    or a counted rejection (a frame that is no object, or has no entries, counts as one)."""
    if not isinstance(frame, dict) or venue == BINANCE:
        return 1
    data = frame.get("data")
    return len(data) if isinstance(data, list) else 1


def check_liquidation(liq: Liquidation, venue: str, now: datetime) -> None:
    """The invariants every Liquidation keeps."""
    assert type(liq) is Liquidation
    assert liq.exchange == venue and liq.event_id.startswith(f"{venue}:")
    assert liq.symbol in SWAPS and liq.asset == liq.symbol.split("/")[0]
    assert liq.side in ("long", "short")
    for name in ("price", "amount", "notional_usd"):
        value = getattr(liq, name)
        assert type(value) is float and math.isfinite(value) and value > 0, f"{name} = {value!r}"
    assert liq.notional_usd == pytest.approx(liq.price * liq.amount)
    check_aware_utc(liq.at, "at")
    assert EARLIEST_POST <= liq.at <= now + timedelta(seconds=MAX_CLOCK_SKEW_S)


@dataclass(repr=False)
class LiveLiquidations:
    """One fake exchange pair and one running LiquidationFeed per exchange, for every example."""

    fake: FakeLiquidations
    loop: asyncio.AbstractEventLoop
    feeds: dict[str, LiquidationFeed]
    items: dict[str, list[Liquidation | StreamGap]]
    sentinel: Iterator[int]

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)


@pytest.fixture(scope="module")
def live_liquidations() -> Iterator[LiveLiquidations]:
    fake = FakeLiquidations()
    fake.start()
    loop = asyncio.new_event_loop()
    feeds: dict[str, LiquidationFeed] = {}
    items: dict[str, list[Liquidation | StreamGap]] = {}
    tasks: list[asyncio.Task[None]] = []

    async def start(venue: str) -> None:
        feed = LiquidationFeed(venue, ["BTC", "ETH"], ws_url=fake.ws_url, rest_url=fake.base_url)
        feed.exchange.timeout_on_exit = 0
        got: list[Liquidation | StreamGap] = []

        async def consume() -> None:
            async for item in feed.events():
                got.append(item)

        tasks.append(asyncio.create_task(consume()))
        await eventually(lambda: feed.connected)
        feeds[venue], items[venue] = feed, got

    live = LiveLiquidations(fake, loop, feeds, items, iter(range(1, 10**9)))
    for venue in (BINANCE, BYBIT):
        live.run(start(venue))
    yield live
    for task in tasks:
        task.cancel()
    live.run(asyncio.gather(*tasks, return_exceptions=True))
    for feed in feeds.values():
        live.run(feed.close())
    loop.close()
    fake.stop()


@fuzz(300)
@given(st.sampled_from([BINANCE, BYBIT]), st.data())
def test_liquidation_frames_parse_to_liquidations_or_rejections(
    live_liquidations: LiveLiquidations, venue: str, data: st.DataObject
) -> None:
    frame = data.draw(binance_frame() if venue == BINANCE else bybit_frame())
    exchange = live_liquidations.feeds[venue].exchange
    now = datetime.now(UTC)
    parsed = parse_frame(exchange, frame, now=now, symbols=SWAPS)
    assert parsed is not None  # every generated frame is a liquidation frame
    assert len(parsed.liquidations) + len(parsed.rejected) == entries(venue, frame)
    event(f"{venue}: {len(parsed.liquidations)} ok, {len(parsed.rejected)} rejected")
    for liq in parsed.liquidations:
        check_liquidation(liq, venue, now)
    assert all(isinstance(r, str) and r for r in parsed.rejected)


@fuzz(60)
@given(st.sampled_from([BINANCE, BYBIT]), st.data())
def test_liquidation_frames_through_the_live_feed_are_events_or_counted(
    live_liquidations: LiveLiquidations, venue: str, data: st.DataObject
) -> None:
    live = live_liquidations
    frame = data.draw(binance_frame() if venue == BINANCE else bybit_frame())
    feed, items = live.feeds[venue], live.items[venue]
    before = (len(items), feed.malformed, feed.duplicates)
    # A unique well-formed event after the fuzzed frame: once it is out, the frame was read.
    price = f"{next(live.sentinel)}.5"
    if venue == BINANCE:
        sentinel = force_order("ETHUSDT", "BUY", "1", price, datetime.now(UTC))
    else:
        sentinel = all_liquidation("ETHUSDT", ("Sell", "1", price, datetime.now(UTC)))

    async def push() -> None:
        live.fake.push(venue, frame)
        live.fake.push(venue, sentinel)
        await eventually(lambda: any(getattr(i, "price", 0) == float(price) for i in items))

    live.run(push())
    new = items[before[0] :]
    assert isinstance(new[-1], Liquidation) and new[-1].price == float(price)
    counted = len(new) - 1 + feed.malformed - before[1] + feed.duplicates - before[2]
    assert counted == entries(venue, frame)
    now = datetime.now(UTC)
    for liq in new:
        assert isinstance(liq, Liquidation)  # no gap: nothing broke the connection
        check_liquidation(liq, venue, now)
    assert feed.connected and feed.reconnects == 0
