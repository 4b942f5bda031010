"""LiquidationFeed against fake Binance USDⓈ-M and Bybit streams on 127.0.0.1: the real ccxt.pro
clients over real websockets."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.errors import MalformedInput, SourceUnavailable
from connectors.liquidations import LiquidationFeed, build_ws_exchange
from connectors.types import Liquidation, StreamGap
from tests.fake_liquidations import (
    BINANCE,
    BYBIT,
    FakeLiquidations,
    all_liquidation,
    eventually,
    force_order,
)

Item = Liquidation | StreamGap


class Sleeps(list[float]):
    """Records the feed's backoff waits and waits only a moment instead."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)
        await asyncio.sleep(0)


@pytest.fixture
def fake() -> Iterator[FakeLiquidations]:
    server = FakeLiquidations()
    server.start()
    yield server
    server.stop()


def ago(seconds: float) -> datetime:
    """A time ``seconds`` before now (negative: ahead of now)."""
    return datetime.now(UTC) - timedelta(seconds=seconds)


def good_frame(venue: str, price: str = "50000", at: datetime | None = None) -> dict[str, Any]:
    """One well-formed liquidation of a BTC long, in ``venue``'s shape."""
    at = at or ago(1)
    if venue == BINANCE:
        return force_order("BTCUSDT", "SELL", "0.5", price, at)
    return all_liquidation("BTCUSDT", ("Buy", "0.5", price, at))


@asynccontextmanager
async def running(
    fake: FakeLiquidations, venue: str, assets: tuple[str, ...] = ("BTC", "ETH"), **kwargs: Any
) -> AsyncIterator[tuple[LiquidationFeed, list[Item]]]:
    """A feed iterated by a task into a list, once it is subscribed."""
    options: dict[str, Any] = {"sleep": Sleeps(), "rng": random.Random(5), **kwargs}
    feed = LiquidationFeed(venue, assets, ws_url=fake.ws_url, rest_url=fake.base_url, **options)
    feed.exchange.timeout_on_exit = 0  # no TLS to shut down on plain loopback sockets
    items: list[Item] = []

    async def consume() -> None:
        async for item in feed.events():
            items.append(item)

    async with feed:
        task = asyncio.create_task(consume())
        try:
            await eventually(lambda: feed.connected or task.done())
            if task.done():
                task.result()  # its error, if it failed
            yield feed, items
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


def liquidations(items: list[Item]) -> list[Liquidation]:
    return [i for i in items if isinstance(i, Liquidation)]


# ---------------------------------------------------------------------- conversion


def test_binance_force_orders_become_liquidations_of_the_closed_position(
    fake: FakeLiquidations,
) -> None:
    at = ago(2).replace(microsecond=123000)

    async def main() -> None:
        async with running(fake, BINANCE) as (feed, items):
            fake.push(
                BINANCE, force_order("BTCUSDT", "SELL", "0.014", "9900", at, avg_price="9910")
            )
            fake.push(BINANCE, force_order("ETHUSDT", "BUY", "2.5", "3000", at))
            await eventually(lambda: len(items) == 2)
            assert feed.sampled and feed.connected and feed.last_event_at is not None
            assert feed.malformed == feed.duplicates == 0
        long, short = items
        assert isinstance(long, Liquidation) and isinstance(short, Liquidation)
        # A SELL force order closes a long; the average fill price is the price.
        assert (long.exchange, long.symbol, long.asset) == (BINANCE, "BTC/USDT:USDT", "BTC")
        assert (long.side, long.price, long.amount, long.at) == ("long", 9910.0, 0.014, at)
        assert long.notional_usd == pytest.approx(138.74)
        assert (short.asset, short.side, short.notional_usd) == ("ETH", "short", 7500.0)
        assert long.event_id != short.event_id and long.event_id.startswith("binanceusdm:")

    asyncio.run(main())
    # One subscription for both symbols, on the stream ccxt opens for forceOrder.
    (subscription,) = fake.subscribed(BINANCE)
    assert subscription.topics == ("btcusdt@forceOrder", "ethusdt@forceOrder")
    assert fake.paths() == ["/fapi/v1/exchangeInfo"]


def test_bybit_rows_become_liquidations_with_bybits_position_side(
    fake: FakeLiquidations,
) -> None:
    at = ago(3).replace(microsecond=0)

    async def main() -> list[Item]:
        async with running(fake, BYBIT) as (feed, items):
            # Three rows in one frame: ccxt's watchLiquidations would hand on only the first.
            frame = all_liquidation(
                "BTCUSDT", ("Buy", "0.5", "50000", at), ("Sell", "0.2", "50100", at)
            )
            fake.push(BYBIT, frame)
            fake.push(BYBIT, all_liquidation("ETHUSDT", ("Sell", "3", "2500.5", at)))
            await eventually(lambda: len(items) == 3)
            assert not feed.sampled
            return items

    btc_long, btc_short, eth_short = liquidations(asyncio.run(main()))
    # Bybit gives the position's side: "Buy" means a long was liquidated.
    assert (btc_long.side, btc_long.amount, btc_long.notional_usd) == ("long", 0.5, 25000.0)
    assert (btc_short.side, btc_short.price, btc_short.at) == ("short", 50100.0, at)
    assert (eth_short.asset, eth_short.symbol, eth_short.side) == ("ETH", "ETH/USDT:USDT", "short")
    assert eth_short.notional_usd == pytest.approx(7501.5)


def test_bybit_subscribes_once_per_symbol(fake: FakeLiquidations) -> None:
    async def main() -> None:
        async with running(fake, BYBIT, assets=("BTC", "ETH", "btc")):
            await eventually(lambda: len(fake.subscribed(BYBIT)) == 2)

    asyncio.run(main())
    topics = [s.topics for s in fake.subscribed(BYBIT)]
    assert topics == [("allLiquidation.BTCUSDT",), ("allLiquidation.ETHUSDT",)]
    assert len(fake.connections(BYBIT)) == 1  # both on one socket
    assert fake.paths() == ["/v5/market/instruments-info"] * 2  # trading and pre-launch


@pytest.mark.parametrize("venue", [BINANCE, BYBIT])
def test_a_duplicate_event_is_dropped_and_counted(fake: FakeLiquidations, venue: str) -> None:
    at = ago(1)

    async def main() -> tuple[list[Item], int]:
        async with running(fake, venue) as (feed, items):
            fake.push(venue, good_frame(venue, "50000", at))
            fake.push(venue, good_frame(venue, "50000", at))  # the very same event again
            fake.push(venue, good_frame(venue, "50001", at))  # another one
            await eventually(lambda: len(items) == 2)
            await eventually(lambda: feed.duplicates == 1)
            return items, feed.malformed

    items, malformed = asyncio.run(main())
    assert [i.price for i in liquidations(items)] == [50000.0, 50001.0]
    assert malformed == 0


# ---------------------------------------------------------------------- what cannot be read

BINANCE_BAD: list[Any] = [
    {"e": "forceOrder", "E": 1},  # no order
    {"e": "forceOrder", "o": "BTCUSDT"},
    force_order("BTCUSDT", "SELL", "0.5", "NaN", ago(1)),
    force_order("BTCUSDT", "SELL", "-0.5", "50000", ago(1)),
    force_order("BTCUSDT", "SELL", "0.5", "fifty", ago(1)),
    force_order("BTCUSDT", "HOLD", "0.5", "50000", ago(1)),
    force_order("XYZUSDT", "SELL", "0.5", "50000", ago(1)),  # no such market
    force_order("BTCUSDT_260925", "SELL", "0.5", "50000", ago(1)),  # a market not subscribed
    {**force_order("BTCUSDT", "SELL", "0.5", "50000", ago(1)), "o": {"s": "BTCUSDT", "S": "SELL"}},
    "not json at all",
    [1, 2, 3],
]
BYBIT_BAD: list[Any] = [
    {"topic": "allLiquidation.BTCUSDT", "type": "snapshot", "ts": 1},  # no data
    all_liquidation("BTCUSDT", ("Buy", "0", "50000", ago(1))),
    all_liquidation("BTCUSDT", ("Buy", "0.5", "Infinity", ago(1))),
    all_liquidation("BTCUSDT", ("Long", "0.5", "50000", ago(1))),
    all_liquidation("DOGEUSDT", ("Buy", "10", "0.1", ago(1))),
    {**all_liquidation("BTCUSDT"), "data": ["a row that is text"]},
    {**all_liquidation("BTCUSDT"), "data": [{"s": "BTCUSDT", "S": "Buy", "v": "1", "p": "1"}]},
]


@pytest.mark.parametrize(("venue", "bad_frames"), [(BINANCE, BINANCE_BAD), (BYBIT, BYBIT_BAD)])
def test_malformed_frames_are_logged_counted_and_the_stream_goes_on(
    fake: FakeLiquidations, caplog: pytest.LogCaptureFixture, venue: str, bad_frames: list[Any]
) -> None:
    async def main() -> tuple[list[Item], int, bool]:
        async with running(fake, venue) as (feed, items):
            for frame in bad_frames:
                fake.push(venue, frame)
            fake.push(venue, good_frame(venue))
            await eventually(lambda: len(items) == 1)
            return items, feed.malformed, feed.connected

    items, malformed, connected = asyncio.run(main())
    assert [i.price for i in liquidations(items)] == [50000.0]
    assert malformed == len(bad_frames) and connected
    assert caplog.text.count("frame left out") == len(bad_frames)
    assert len(fake.connections(venue)) == 1  # nothing made it reconnect


@pytest.mark.parametrize(
    ("venue", "frame"),
    [
        (BINANCE, {"e": "kline"}),  # a kline event without its symbol
        (BYBIT, {"topic": "publicTrade.BTCUSDT", "data": [None]}),
    ],
)
def test_a_frame_that_breaks_ccxts_own_handler_is_counted(
    fake: FakeLiquidations, caplog: pytest.LogCaptureFixture, venue: str, frame: Any
) -> None:
    # ccxt 4.5.90 raises TypeError on these; raised inside its receive loop's callback, that
    # would end the loop and leave the socket open and silent.
    async def main() -> tuple[int, list[Item]]:
        async with running(fake, venue) as (feed, items):
            fake.push(venue, frame)
            fake.push(venue, good_frame(venue))
            await eventually(lambda: len(items) == 1)
            return feed.malformed, items

    malformed, items = asyncio.run(main())
    assert len(liquidations(items)) == 1 and malformed == 1
    assert "could not be handled" in caplog.text
    assert len(fake.connections(venue)) == 1


@pytest.mark.parametrize("venue", [BINANCE, BYBIT])
def test_a_frame_that_is_not_json_is_counted_and_the_socket_reads_on(
    fake: FakeLiquidations, caplog: pytest.LogCaptureFixture, venue: str
) -> None:
    # ccxt decodes text frames in its receive loop's callback: undecodable JSON raised there
    # once ended the loop, and the socket stayed open, reading nothing until a keepalive died.
    async def main() -> tuple[int, list[Item]]:
        async with running(fake, venue) as (feed, items):
            fake.push(venue, "{not json")
            fake.push(venue, good_frame(venue))
            await eventually(lambda: len(items) == 1)
            return feed.malformed, items

    malformed, items = asyncio.run(main())
    assert len(liquidations(items)) == 1 and malformed == 1
    assert "not JSON left out" in caplog.text
    assert len(fake.connections(venue)) == 1  # no reconnect was needed


@pytest.mark.parametrize(
    ("at", "accepted"),
    [
        (ago(-3600), False),  # an hour ahead of our clock
        (ago(-120), True),  # two minutes ahead: within the clock skew allowed
        (datetime(2001, 1, 1, tzinfo=UTC), False),  # before 2009
        (datetime(1970, 1, 1, tzinfo=UTC), False),  # epoch 0
        (ago(86_400 * 400), True),  # old but plausible: a replayed or delayed event
    ],
)
def test_event_times_are_held_to_the_bounds(
    fake: FakeLiquidations, at: datetime, accepted: bool
) -> None:
    async def main() -> tuple[list[Item], int]:
        async with running(fake, BYBIT) as (feed, items):
            fake.push(BYBIT, good_frame(BYBIT, "40000", at))
            fake.push(BYBIT, good_frame(BYBIT, "50000"))
            await eventually(lambda: len(items) == 1 + accepted)
            return items, feed.malformed

    items, malformed = asyncio.run(main())
    assert [i.price for i in liquidations(items)] == ([40000.0] if accepted else []) + [50000.0]
    assert malformed == (not accepted)


def test_an_absurd_time_is_malformed_not_a_crash(fake: FakeLiquidations) -> None:
    frame = force_order("BTCUSDT", "SELL", "0.5", "50000", ago(1))
    frame["o"]["T"] = 10**20  # past any calendar

    async def main() -> int:
        async with running(fake, BINANCE) as (feed, items):
            fake.push(BINANCE, frame)
            fake.push(BINANCE, good_frame(BINANCE))
            await eventually(lambda: len(items) == 1)
            return feed.malformed

    assert asyncio.run(main()) == 1


# ---------------------------------------------------------------------- disconnects


@pytest.mark.parametrize("abrupt", [False, True])
@pytest.mark.parametrize("venue", [BINANCE, BYBIT])
def test_a_dropped_connection_yields_one_gap_then_events_resume(
    fake: FakeLiquidations, venue: str, abrupt: bool
) -> None:
    first_at, second_at = ago(5), ago(1)

    async def main() -> tuple[list[Item], LiquidationFeed, int]:
        async with running(fake, venue) as (feed, items):
            fake.push(venue, good_frame(venue, "50000", first_at))
            await eventually(lambda: len(items) == 1)
            heard = feed.last_event_at
            assert fake.drop(venue, abrupt=abrupt) == 1
            await eventually(lambda: len(items) == 2)  # the gap, once subscribed again
            fake.push(venue, good_frame(venue, "50000", first_at))  # replayed: seen already
            fake.push(venue, good_frame(venue, "51000", second_at))
            await eventually(lambda: len(items) == 3)
            gap = items[1]
            assert isinstance(gap, StreamGap) and heard is not None
            assert heard <= gap.since <= gap.until <= datetime.now(UTC)
            assert not feed.connected or feed.last_gap == gap
            return items, feed, len(fake.connections(venue))

    items, feed, connections = asyncio.run(main())
    first, gap, second = items
    assert isinstance(first, Liquidation) and isinstance(second, Liquidation)
    assert (first.price, second.price) == (50000.0, 51000.0)
    assert isinstance(gap, StreamGap) and gap.source == f"liquidations:{venue}"
    assert "closed" in gap.reason or "Error" in gap.reason
    assert (feed.reconnects, feed.gaps, feed.duplicates, feed.malformed) == (1, 1, 1, 0)
    assert connections == 2
    # Each connection subscribed afresh, to the same topics.
    topics = [s.topics for s in fake.subscribed(venue)]
    assert topics[: len(topics) // 2] == topics[len(topics) // 2 :]


def test_failed_reconnections_still_make_one_gap(fake: FakeLiquidations) -> None:
    sleeps = Sleeps()

    async def main() -> tuple[list[Item], LiquidationFeed]:
        async with running(fake, BYBIT, sleep=sleeps, base_delay_s=0.01) as (feed, items):
            fake.push(BYBIT, good_frame(BYBIT, "50000"))
            await eventually(lambda: len(items) == 1)
            fake.refuse = 2  # the next two handshakes fail: the exchange is down a while
            fake.drop(BYBIT)
            await eventually(lambda: len(items) == 2)
            fake.push(BYBIT, good_frame(BYBIT, "52000"))
            await eventually(lambda: len(items) == 3)
            return items, feed

    items, feed = asyncio.run(main())
    assert [type(i) for i in items] == [Liquidation, StreamGap, Liquidation]
    gap = items[1]
    assert isinstance(gap, StreamGap) and "closed" in gap.reason  # the first loss, not a dial
    assert (feed.reconnects, feed.gaps) == (1, 1)
    assert len(sleeps) == 3 and sleeps[0] < sleeps[2]  # backing off, 1 loss and 2 failed dials
    assert fake.refuse == 0


def test_a_stream_that_cannot_connect_gives_up_after_max_failures(fake: FakeLiquidations) -> None:
    fake.refuse = 100
    sleeps = Sleeps()

    async def main() -> None:
        feed = LiquidationFeed(
            BINANCE,
            ["BTC"],
            ws_url=fake.ws_url,
            rest_url=fake.base_url,
            max_failures=2,
            sleep=sleeps,
        )
        feed.exchange.timeout_on_exit = 0
        async with feed:
            async for _ in feed.events():
                pytest.fail("nothing can come from a stream that never connected")

    with pytest.raises(SourceUnavailable, match="2 connections failed"):
        asyncio.run(main())
    assert len(sleeps) == 1  # no gap either: the stream had never been up


def test_a_slow_consumer_gets_a_gap_for_what_was_dropped(fake: FakeLiquidations) -> None:
    async def main() -> tuple[list[Item], int]:
        feed = LiquidationFeed(
            BINANCE, ["BTC"], ws_url=fake.ws_url, rest_url=fake.base_url, max_backlog=2
        )
        feed.exchange.timeout_on_exit = 0
        async with feed:
            events = feed.events()
            first = asyncio.ensure_future(anext(events))
            await eventually(lambda: feed.connected)
            fake.push(BINANCE, good_frame(BINANCE, "100"))
            got: list[Item] = [await first]  # and the consumer stops reading a while
            for price in range(101, 106):
                fake.push(BINANCE, good_frame(BINANCE, str(price)))
            await eventually(lambda: feed.dropped == 3)
            got += [await anext(events), await anext(events)]  # the two held back
            fake.push(BINANCE, good_frame(BINANCE, "106"))
            got += [await anext(events), await anext(events)]
            await events.aclose()
            return got, feed.gaps

    got, gaps = asyncio.run(main())
    prices = [i.price if isinstance(i, Liquidation) else None for i in got]
    assert prices == [100.0, 101.0, 102.0, None, 106.0]
    gap = got[3]
    assert isinstance(gap, StreamGap) and "3 liquidations dropped" in gap.reason and gaps == 1


def test_closing_the_feed_ends_its_events_and_closes_its_sockets(fake: FakeLiquidations) -> None:
    async def main() -> list[Item]:
        feed = LiquidationFeed(BYBIT, ["BTC"], ws_url=fake.ws_url, rest_url=fake.base_url)
        feed.exchange.timeout_on_exit = 0
        items: list[Item] = []

        async def consume() -> None:
            async for item in feed.events():
                items.append(item)

        task = asyncio.create_task(consume())
        await eventually(lambda: feed.connected)
        assert fake.open_sockets(BYBIT) == 1
        fake.push(BYBIT, good_frame(BYBIT))
        await eventually(lambda: len(items) == 1)
        await feed.close()
        await asyncio.wait_for(task, 10)  # the iteration ended by itself
        assert not feed.connected
        await eventually(lambda: fake.open_sockets(BYBIT) == 0)
        return items

    assert len(asyncio.run(main())) == 1


def test_without_an_acknowledgement_the_first_liquidation_confirms_the_stream(
    fake: FakeLiquidations,
) -> None:
    fake.acknowledge = False

    async def main() -> tuple[bool, bool, list[Item]]:
        feed = LiquidationFeed(BINANCE, ["BTC"], ws_url=fake.ws_url, rest_url=fake.base_url)
        feed.exchange.timeout_on_exit = 0
        items: list[Item] = []

        async def consume() -> None:
            async for item in feed.events():
                items.append(item)

        async with feed:
            task = asyncio.create_task(consume())
            await eventually(lambda: len(fake.subscribed(BINANCE)) == 1)
            before = feed.connected
            fake.push(BINANCE, good_frame(BINANCE))
            await eventually(lambda: len(items) == 1)
            after = feed.connected
        await asyncio.wait_for(task, 10)
        return before, after, items

    before, after, items = asyncio.run(main())
    assert (before, after) == (False, True) and len(liquidations(items)) == 1


# ---------------------------------------------------------------------- setup


def test_an_asset_without_a_perpetual_swap_is_malformed_input(fake: FakeLiquidations) -> None:
    async def main() -> None:
        feed = LiquidationFeed(BYBIT, ["BTC", "NOPE"], ws_url=fake.ws_url, rest_url=fake.base_url)
        feed.exchange.timeout_on_exit = 0
        async with feed:
            await anext(feed.events())

    with pytest.raises(MalformedInput, match="NOPE"):
        asyncio.run(main())


def test_only_binance_usdm_and_bybit_are_read() -> None:
    with pytest.raises(ValueError, match="okx"):
        build_ws_exchange("okx")
    with pytest.raises(ValueError, match="no assets"):
        LiquidationFeed(BYBIT, [])


def test_ws_and_rest_urls_are_repointed_keeping_paths() -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        binance = build_ws_exchange(BINANCE, "ws://proxy:81", "http://proxy:80")
        bybit = build_ws_exchange(BYBIT, "ws://proxy:81", "http://proxy:80")
        for exchange in (binance, bybit):
            exchange.timeout_on_exit = 0
            await exchange.close()
        return binance.urls["api"], bybit.urls["api"]

    binance, bybit = asyncio.run(main())
    assert binance["ws"]["linear"] == "ws://proxy:81/ws"
    assert binance["fapiPublic"] == "http://proxy:80/fapi/v1"
    assert bybit["ws"]["public"]["linear"] == "ws://proxy:81/v5/public/linear"
    assert bybit["public"] == "http://proxy:80"
