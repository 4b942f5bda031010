"""The feed connectors wired to the store: X search state and spend, exchange candles, the
liquidation streams and implied volatility."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

from bot.market.levels import interval_seconds
from bot.pipeline.observer import Observer, Sensor
from bot.pipeline.status import month_of
from bot.store import Store
from bot.store.derivatives import EVENTS_KEPT
from connectors.errors import ConnectorError
from connectors.exchange import ExchangeFeed
from connectors.quotes import QuoteProvider
from connectors.retry import wait_or_stop
from connectors.types import Candle, Liquidation, StreamGap
from connectors.volatility import DVOL_ASSETS

if TYPE_CHECKING:  # tweepy is imported only when X is configured
    from connectors.liquidations import LiquidationFeed
    from connectors.volatility import VolatilityFeed
    from connectors.x import XSource

log = logging.getLogger(__name__)


class XReadings(Sensor):
    """The X source's health readings, pulled at each refresh: the posts it read from the
    paid API, and whether this month's read cap paused it."""

    def __init__(self, observer: Observer, source: XSource, name: str = "x") -> None:
        self.observer = observer
        self.source = source
        self.name = name

    def refresh(self, now: datetime) -> None:
        note = "paused: this month's read cap is spent" if self.source.capped else ""
        self.observer.on_reading(self.name, reads=self.source.reads, note=note)


class PriceFeedReadings(Sensor):
    """The price feed's health readings, pulled at each refresh: the feed rides out exchange
    outages itself, so its errors and when it last answered are shown from its counters."""

    def __init__(self, observer: Observer, feed: ExchangeFeed, name: str = "prices") -> None:
        self.observer = observer
        self.feed = feed
        self.name = name

    def refresh(self, now: datetime) -> None:
        ok = self.feed.last_ok_at
        note = f"last answer {ok:%Y-%m-%d %H:%M} UTC" if ok else "no answer yet"
        self.observer.on_reading(
            self.name, errors=self.feed.errors, last_error=self.feed.last_error or "", note=note
        )


class StoreXState:
    """The X source's checkpoints and read meter, kept in the database.

    ``set`` commits before it returns (the source relies on that); reads are counted per
    calendar month (UTC) and the source reads nothing more once ``monthly_cap`` is spent.
    """

    def __init__(
        self,
        store: Store,
        monthly_cap: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.store = store
        self.monthly_cap = monthly_cap
        self._clock = clock

    def get(self, key: str) -> str | None:
        value = self.store.checkpoint(key)
        return value or None

    def set(self, key: str, value: str) -> None:
        self.store.set_checkpoint(key, value, self._clock())

    def add_reads(self, n: int) -> None:
        total = self.store.add_usage("x", month_of(self._clock()), n)
        if total >= self.monthly_cap:
            log.warning("x: %d posts read this month, the cap is %d", total, self.monthly_cap)

    def may_read(self) -> bool:
        return self.store.usage("x", month_of(self._clock())) < self.monthly_cap


async def run_prices(
    feed: ExchangeFeed,
    store: Store,
    assets: Sequence[str],
    stopping: asyncio.Event,
    every_s: float,
    intervals: Sequence[str] = ("1h", "1d"),
) -> None:
    """Keep ``assets``' closed 1h and 1d candles and their tickers (price, 24h change,
    funding, open interest) in the store until ``stopping`` is set.

    Candles resume from the newest stored one, so a restart or an outage loses nothing.
    """

    async def on_candles(candles: list[Candle]) -> None:
        await asyncio.to_thread(store.add_candles, candles, feed.name)

    async def tickers() -> None:
        while not stopping.is_set():
            for asset in assets:
                try:
                    ticker = await feed.ticker(asset)
                except ConnectorError as exc:  # this round's ticker is missed, not the next
                    log.warning("ticker of %s: %s", asset, exc)
                    continue
                await asyncio.to_thread(store.add_ticker, ticker)
            await wait_or_stop(stopping, every_s)

    await asyncio.gather(
        feed.poll(assets, intervals, on_candles, store.newest_candle_time, stopping, every_s),
        tickers(),
    )


async def backfill(
    feed: ExchangeFeed,
    store: Store,
    asset: str,
    interval: str,
    since: datetime | None,
    now: datetime,
) -> int:
    """Fill ``asset``'s history at ``interval`` from ``since`` (default: after the newest
    stored candle, or the exchange's most recent bars); how many candles were stored."""
    if since is None:
        newest = store.newest_candle_time(asset, interval)
        step = timedelta(seconds=interval_seconds(interval))
        since = None if newest is None else newest + step  # the bar after the stored ones
    candles = await feed.candles(asset, interval, since=since, now=now)
    return await asyncio.to_thread(store.add_candles, candles, feed.name)


async def refresh_quotes(
    provider: QuoteProvider,
    store: Store,
    symbols: Sequence[str],
    stopping: asyncio.Event,
    every_s: float = 6 * 3600.0,
    first: date = date(2014, 1, 1),
) -> None:
    """Keep the reference assets' daily closes current (for ``/corr`` and the backtest),
    from the last stored day on, until ``stopping`` is set.

    A symbol that fails this round is logged and tried again next round; the others go on.
    """
    while not stopping.is_set():
        for symbol in symbols:
            newest = store.newest_candle_time(symbol, "1d")
            since = newest.date() if newest is not None else first
            try:
                candles = await provider.daily(symbol, since)
            except ConnectorError as exc:
                log.warning("quotes of %s: %s", symbol, exc)
                continue
            await asyncio.to_thread(store.add_candles, candles, "quotes")
        await wait_or_stop(stopping, every_s)


class LiquidationReadings(Sensor):
    """A liquidation stream's health, pulled at each refresh: connected or not, reconnects,
    gaps, and the frames it refused."""

    def __init__(self, observer: Observer, feed: LiquidationFeed) -> None:
        self.observer = observer
        self.feed = feed
        self.name = feed.source

    def refresh(self, now: datetime) -> None:
        f = self.feed
        last = f"last event {f.last_event_at:%m-%d %H:%M:%S} UTC" if f.last_event_at else "none yet"
        note = (
            f"{'connected' if f.connected else 'not connected'}, {last}, {f.reconnects}"
            f" reconnects, {f.gaps} gaps, {f.malformed} malformed and {f.duplicates} duplicate"
            " frames refused"
        )
        self.observer.on_reading(
            self.name, errors=f.malformed, last_error=f.last_error or "", note=note
        )


#: A liquidation stream's "listening until" checkpoint is saved this often; a restart that
#: finds it older than ``RESTART_GAP`` records the stretch as a gap.
LISTENING_EVERY_S = 10.0
RESTART_GAP = timedelta(seconds=30)
#: How often single liquidation events past ``EVENTS_KEPT`` are dropped.
PRUNE_EVERY = timedelta(hours=1)


async def run_liquidations(
    feed: LiquidationFeed,
    store: Store,
    stopping: asyncio.Event,
    flush_s: float = 1.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    """Store ``feed``'s liquidations (in batches, each event once) and its gaps until
    ``stopping`` is set. A stretch this process was not listening (a restart, a crash) is
    recorded as a gap too: the stream does not replay it, and nothing is made up for it."""
    checkpoint = f"{feed.source}:listening"
    saved = await asyncio.to_thread(store.checkpoint, checkpoint)
    down_since = datetime.fromisoformat(saved) if saved else None
    buffer: list[Liquidation] = []

    async def flush() -> None:
        nonlocal buffer
        if buffer:
            batch, buffer = buffer, []
            await asyncio.to_thread(store.add_liquidations, batch)

    async def gap(found: StreamGap) -> None:
        log.warning(
            "%s: not seen from %s to %s (%s)", found.source, found.since, found.until, found.reason
        )
        await asyncio.to_thread(store.add_stream_gap, found)

    async def listening() -> None:
        nonlocal down_since
        last_saved = 0.0
        pruned: datetime | None = None
        while not stopping.is_set():
            await wait_or_stop(stopping, flush_s)
            await flush()
            now = clock()
            if feed.connected and down_since is not None:
                if now - down_since > RESTART_GAP:
                    await gap(StreamGap(feed.source, down_since, now, "moodring was not reading"))
                down_since = None
            if feed.connected and now.timestamp() - last_saved >= LISTENING_EVERY_S:
                last_saved = now.timestamp()
                await asyncio.to_thread(store.set_checkpoint, checkpoint, now.isoformat(), now)
            if pruned is None or now - pruned >= PRUNE_EVERY:  # single events age out
                pruned = now
                await asyncio.to_thread(store.prune_liquidations, now - EVENTS_KEPT)

    async def read() -> None:
        async for item in feed.events():
            if isinstance(item, StreamGap):
                await flush()
                await gap(item)
            else:
                buffer.append(item)
                if len(buffer) >= 500:
                    await flush()

    async def closer() -> None:
        await stopping.wait()
        await feed.close()

    tasks = [asyncio.create_task(c) for c in (read(), listening(), closer())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in done:
            task.result()  # a failed stream raises here, for the supervisor to restart
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await flush()


async def run_implied_vol(
    feed: VolatilityFeed,
    store: Store,
    assets: Sequence[str],
    stopping: asyncio.Event,
    every_s: float,
) -> None:
    """Keep Deribit's DVOL daily (120 days) and hourly (8 days) bars of ``assets`` (those it
    publishes: BTC, ETH) in the store until ``stopping`` is set; each read resumes after the
    newest stored bar."""
    wanted = [a for a in assets if a in DVOL_ASSETS]
    spans = {"1d": timedelta(days=120), "1h": timedelta(days=8)}
    steps = {"1d": timedelta(days=1), "1h": timedelta(hours=1)}
    while not stopping.is_set():
        now = datetime.now(UTC)
        for asset in wanted:
            for interval, span in spans.items():
                held = await asyncio.to_thread(store.implied_vol, asset, interval, now - span, now)
                since = held[-1].ts + steps[interval] if held else now - span
                try:
                    bars = await feed.dvol(asset, interval, since, now, now=now)
                except ConnectorError as exc:  # this round's read is missed, not the next
                    log.warning("implied volatility of %s (%s): %s", asset, interval, exc)
                    continue
                await asyncio.to_thread(store.add_implied_vol, bars)
        await wait_or_stop(stopping, every_s)
