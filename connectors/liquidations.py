"""Forced liquidations, live from exchanges' public websocket streams through ccxt.pro."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import random
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

import ccxt.async_support as ccxt
import ccxt.pro as ccxtpro

from connectors.bounds import time_problem
from connectors.errors import MalformedInput, SourceUnavailable
from connectors.exchange import UNREADABLE, ExchangeFeed, repoint_urls
from connectors.retry import backoff_delay
from connectors.types import Liquidation, StreamGap

log = logging.getLogger(__name__)

#: The side ccxt reports (the frame's ``S``, lower-cased) when a *long* was liquidated. The two
#: exchanges mean opposite things by it: Binance's ``forceOrder`` gives the side of the
#: liquidation *order* (a SELL closes a long), Bybit's ``allLiquidation`` the side of the
#: *position* ("Buy": a long position was liquidated).
LONG_WHEN = {"binanceusdm": "sell", "bybit": "buy"}
SUPPORTED = tuple(LONG_WHEN)
#: Exchanges whose stream is a sample: Binance pushes at most one liquidation per symbol per
#: second (the latest), so counts and totals from it are lower bounds.
SAMPLED = frozenset({"binanceusdm"})
#: Bybit's liquidation topics: ccxt 4.5.90 subscribes to ``allLiquidation.<symbol>``; frames of
#: the older, deprecated ``liquidation.<symbol>`` (one object each) are read too.
BYBIT_TOPICS = ("allLiquidation", "liquidation")

Clock = Callable[[], datetime]


@dataclass(frozen=True, slots=True)
class FrameParse:
    """What one websocket frame held: the usable liquidations, and why each other entry (or
    the whole frame) was rejected."""

    liquidations: tuple[Liquidation, ...]
    rejected: tuple[str, ...]


# ---------------------------------------------------------------------- pure parsing


def parse_frame(
    exchange: ccxt.Exchange,
    frame: Any,
    *,
    now: datetime,
    symbols: Collection[str] | None = None,
) -> FrameParse | None:
    """The liquidations in one decoded websocket frame, through ccxt's own parser.

    Args:
        exchange: a ccxt(.pro) ``binanceusdm`` or ``bybit`` with its markets loaded.
        frame: the frame as ccxt decoded it (JSON: usually a dict).
        now: the wall clock, for the time bounds (``connectors.bounds.time_problem``).
        symbols: the unified symbols subscribed to; others are rejected (None: any market).

    Returns:
        None for a frame that carries no liquidations (a subscription answer, a pong, an
        error: ccxt's business); otherwise every entry either as a ``Liquidation`` or as a
        reason in ``rejected``. Never raises on what the exchange sent.
    """
    if not isinstance(frame, dict):
        return FrameParse(
            (), (f"{exchange.id} sent a frame that is no JSON object: {frame!r:.200}",)
        )
    try:
        entries = _entries(str(exchange.id), frame)
    except MalformedInput as e:
        return FrameParse((), (str(e),))
    if entries is None:
        return None
    found: list[Liquidation] = []
    rejected: list[str] = []
    for raw in entries:
        try:
            found.append(to_liquidation(exchange, raw, now=now, symbols=symbols))
        except MalformedInput as e:
            rejected.append(str(e))
    return FrameParse(tuple(found), tuple(rejected))


def to_liquidation(
    exchange: ccxt.Exchange,
    raw: Any,
    *,
    now: datetime,
    symbols: Collection[str] | None = None,
) -> Liquidation:
    """One raw liquidation entry (Binance's ``o`` object, one of Bybit's ``data`` rows) as a
    ``Liquidation``, read by ccxt's ``parse_ws_liquidation``.

    Raises:
        MalformedInput: the entry is not a usable liquidation (see ``from_unified``), or
            ccxt's parser could not read it.
    """
    if not isinstance(raw, dict):
        raise MalformedInput(f"{exchange.id} sent a liquidation that is no object: {raw!r:.200}")
    try:
        unified = exchange.parse_ws_liquidation(raw)
    except (*UNREADABLE, ccxt.BaseError) as e:
        detail = f"{exchange.id} sent an unreadable liquidation ({type(e).__name__}): {raw!r:.200}"
        raise MalformedInput(detail) from e
    return from_unified(exchange, unified, now=now, symbols=symbols)


def from_unified(
    exchange: ccxt.Exchange,
    unified: Any,
    *,
    now: datetime,
    symbols: Collection[str] | None = None,
) -> Liquidation:
    """ccxt's unified liquidation structure as a ``Liquidation``.

    The amount is ``contracts × contractSize`` of the market (ccxt 4.5.90 leaves the
    structure's own ``contractSize`` empty), the side is the liquidated position's
    (``LONG_WHEN``), and ``event_id`` is the exchange's id where the structure has one,
    otherwise a hash of exchange, symbol, time, side, price and amount: the same event sent
    twice gets the same id.

    Raises:
        MalformedInput: an unknown or unsubscribed or non-linear market, a side that is
            neither buy nor sell, a price or amount that is missing, not finite or not
            positive, or a time that is missing, before 2009 or ahead of ``now`` by more than
            the allowed clock skew.
    """
    name = str(exchange.id)
    if not isinstance(unified, dict):
        raise MalformedInput(f"{name}: not a liquidation structure: {unified!r:.200}")
    info = unified.get("info")
    where = f"{name} liquidation {info!r:.200}"
    symbol = unified.get("symbol")
    market = (exchange.markets or {}).get(symbol) if isinstance(symbol, str) else None
    if not isinstance(symbol, str) or market is None:
        raise MalformedInput(f"{where}: unknown symbol {symbol!r:.50}")
    if symbols is not None and symbol not in symbols:
        raise MalformedInput(f"{where}: {symbol} is not subscribed")
    if not (market.get("contract") and market.get("linear")):
        raise MalformedInput(f"{where}: {symbol} is not a linear contract")
    long_when = LONG_WHEN.get(name)
    side = unified.get("side")
    if long_when is None or side not in ("buy", "sell"):
        raise MalformedInput(f"{where}: side {side!r:.20} is neither buy nor sell")
    position = "long" if side == long_when else "short"
    price = _positive(unified.get("price"))
    contracts = _positive(unified.get("contracts"))
    size = _positive(market.get("contractSize"))
    if price is None or contracts is None or size is None:
        raise MalformedInput(f"{where}: price, amount or contract size not a positive number")
    amount = contracts * size
    notional = price * amount
    if not (math.isfinite(amount) and math.isfinite(notional) and amount > 0 and notional > 0):
        raise MalformedInput(f"{where}: amount or notional out of range")
    ts = unified.get("timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool) or (at := _time_or_none(ts)) is None:
        raise MalformedInput(f"{where}: no readable time")
    if problem := time_problem(at, now=now):
        raise MalformedInput(f"{where}: {problem}")
    return Liquidation(
        exchange=name,
        symbol=symbol,
        asset=str(market["base"]),
        side=position,
        price=price,
        amount=amount,
        notional_usd=notional,
        at=at,
        event_id=_event_id(name, unified.get("id"), symbol, ts, position, price, amount),
    )


def _entries(name: str, frame: dict[str, Any]) -> list[Any] | None:
    """The raw liquidation entries of one frame; None when it is not a liquidation frame.

    Raises:
        MalformedInput: a liquidation frame without its entries.
    """
    if name == "binanceusdm":
        # A combined stream (/stream?streams=...) wraps each event as {"stream", "data"}.
        body = frame.get("data") if "stream" in frame else frame
        if not isinstance(body, dict) or body.get("e") != "forceOrder":
            return None
        order = body.get("o")
        if not isinstance(order, dict):
            raise MalformedInput(
                f"{name} sent a forceOrder event without its order: {frame!r:.200}"
            )
        return [order]
    if name == "bybit":
        topic = frame.get("topic")
        if not isinstance(topic, str) or topic.split(".")[0] not in BYBIT_TOPICS:
            return None
        data = frame.get("data")
        if isinstance(data, list):
            return data
        if isinstance(data, dict):  # the older ``liquidation.<symbol>`` topic: one object
            return [data]
        raise MalformedInput(f"{name} sent a {topic} frame without data: {frame!r:.200}")
    raise ValueError(f"liquidations are not read from {name!r} (only {', '.join(SUPPORTED)})")


def _event_id(
    name: str, own_id: Any, symbol: str, ts: int, side: str, price: float, amount: float
) -> str:
    if isinstance(own_id, str | int) and not isinstance(own_id, bool) and str(own_id).strip():
        return f"{name}:{own_id}"
    key = f"{name}|{symbol}|{ts}|{side}|{price!r}|{amount!r}"
    return f"{name}:{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def _time_or_none(ms: int) -> datetime | None:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None


def _positive(value: Any) -> float | None:
    """A finite number above 0, or None (for NaN, infinity, text, bools, absence)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except (ValueError, OverflowError):
        return None
    return number if math.isfinite(number) and number > 0 else None


# ---------------------------------------------------------------------- the exchange


def build_ws_exchange(
    exchange_id: str,
    ws_url: str | None = None,
    rest_url: str | None = None,
    timeout_ms: int = 10000,
) -> ccxt.Exchange:
    """Create a ccxt.pro exchange for the public liquidation stream (no API key).

    Only linear contracts' markets are loaded: the streams read are theirs.

    Args:
        exchange_id: ``"binanceusdm"`` or ``"bybit"``.
        ws_url: if given, every websocket URL of ``exchange.urls['api']['ws']`` is repointed
            at this base, keeping its path (``wss://fstream.binance.com/ws`` becomes
            ``{ws_url}/ws``): for tests and self-hosted proxies.
        rest_url: the same for the REST URLs (the market list is loaded over REST).
        timeout_ms: per-request and connection timeout.

    Raises:
        ValueError: ``exchange_id`` is not one this module reads.
    """
    if exchange_id not in SUPPORTED:
        raise ValueError(
            f"liquidations are not read from {exchange_id!r} (only {', '.join(SUPPORTED)})"
        )
    exchange: ccxt.Exchange = getattr(ccxtpro, exchange_id)(
        {"timeout": timeout_ms, "enableRateLimit": True}
    )
    fetch_markets = exchange.options.get("fetchMarkets")
    if isinstance(fetch_markets, dict):
        exchange.options["fetchMarkets"] = {**fetch_markets, "types": ["linear"]}
    api = exchange.urls["api"]
    if rest_url is not None:
        api = {k: v if k == "ws" else repoint_urls(v, rest_url) for k, v in api.items()}
    if ws_url is not None:
        api = {**api, "ws": repoint_urls(api["ws"], ws_url)}
    exchange.urls["api"] = api
    return exchange


# ---------------------------------------------------------------------- the feed


@dataclass(frozen=True, slots=True)
class _Live:
    """The connection of ``generation`` is subscribed (acknowledged, or a liquidation came)."""

    generation: int
    at: datetime


@dataclass(frozen=True, slots=True)
class _Lost:
    """The connection of ``generation`` failed or was closed."""

    generation: int
    reason: str


@dataclass(frozen=True, slots=True)
class _Closed:
    """``close()`` was called: ``events()`` ends."""


_Item = Liquidation | StreamGap | _Live | _Lost | _Closed


class LiquidationFeed:
    """Forced liquidations of ``assets``' linear perpetual swaps (``BTC/USDT:USDT``, ...) as
    one exchange publishes them on its public websocket.

    Binance USDⓈ-M is read with ccxt.pro's ``watchLiquidationsForSymbols`` (the
    ``<symbol>@forceOrder`` streams); Bybit with ``watchLiquidations`` once per symbol (the
    ``allLiquidation.<symbol>`` topics). Binance's stream is a sample (``sampled``): at most
    one liquidation per symbol per second.

    ccxt resolves each ``watch*`` call with one liquidation and drops those that arrive
    before the next call (two frames read together, or the several rows of one Bybit frame),
    so the feed uses the ``watch*`` calls to subscribe and to learn of disconnects, and reads
    every frame where ccxt receives it, parsing it with ccxt's own ``parse_ws_liquidation``
    (``parse_frame``); other frames (answers, pongs, errors) go on to ccxt as usual.

    When the socket drops, the feed reconnects with jittered exponential backoff and, once
    subscribed again, yields one ``StreamGap`` from the last frame heard to the moment the
    new subscription was confirmed: what happened in between was not seen and is not made
    up. A frame that cannot be read is logged and counted (``malformed``); an event seen
    already (the same ``event_id`` among the last ``seen_ids``) is dropped and counted
    (``duplicates``). If the consumer falls ``max_backlog`` events behind, newer ones are
    dropped (``dropped``) and a ``StreamGap`` says so. A connection that dies silently is
    found by ccxt's keepalive (pings every 18 s on Bybit, 3 minutes on Binance).

    Health: ``connected``, ``last_event_at`` (when the last liquidation arrived),
    ``reconnects``, ``gaps`` (how many, and ``last_gap``), ``malformed``, ``duplicates``,
    ``dropped``, ``last_error``.

    Use ``async with LiquidationFeed(...) as feed: async for item in feed.events(): ...`` so
    the exchange's sockets and HTTP session are closed.
    """

    def __init__(
        self,
        exchange_id: str,
        assets: Sequence[str],
        quote: str = "USDT",
        ws_url: str | None = None,
        rest_url: str | None = None,
        *,
        timeout_ms: int = 10000,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        max_failures: int | None = None,
        seen_ids: int = 10_000,
        max_backlog: int = 10_000,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Clock = lambda: datetime.now(UTC),
    ) -> None:
        """Prepare the feed; nothing connects before ``events()`` is iterated.

        Args:
            exchange_id: ``"binanceusdm"`` or ``"bybit"``.
            assets: base currencies, e.g. ``["BTC", "ETH"]``.
            quote: the quote and settlement currency of the swaps read.
            ws_url: repoint the exchange's websocket URLs here (``build_ws_exchange``).
            rest_url: repoint its REST URLs here.
            timeout_ms: per-request and connection timeout.
            base_delay_s: backoff before the first reconnection; doubles each failure in a
                row up to ``max_delay_s``.
            max_delay_s: the longest backoff.
            max_failures: connection failures in a row before ``events()`` raises
                ``SourceUnavailable`` (None: keep trying).
            seen_ids: how many recent event ids are remembered to drop duplicates.
            max_backlog: events held for a slow consumer before newer ones are dropped.
            sleep: how to wait between tries (tests pass a recorder).
            rng: the jitter's random source (seed it for repeatable waits).
            clock: the current time, for time bounds, gaps and health.

        Raises:
            ValueError: an exchange this module does not read, or no assets.
        """
        if not assets:
            raise ValueError("no assets to watch")
        self.exchange = build_ws_exchange(exchange_id, ws_url, rest_url, timeout_ms)
        self.assets = tuple(dict.fromkeys(a.strip().upper() for a in assets))
        self.quote = quote.strip().upper()
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_failures = max_failures
        self.seen_ids = seen_ids
        self.max_backlog = max_backlog
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        # Health.
        self.connected = False
        self.last_event_at: datetime | None = None
        self.reconnects = 0
        self.gaps = 0
        self.last_gap: StreamGap | None = None
        self.malformed = 0
        self.duplicates = 0
        self.dropped = 0
        self.last_error: str | None = None
        # State of the current connection (its generation), written by the frame tap.
        self._symbols: tuple[str, ...] = ()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        self._generation = 0
        self._acks = 0
        self._live = False
        self._heard_at: datetime | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._behind: tuple[datetime, int] | None = None  # (first dropped at, how many)
        self._watchers: list[asyncio.Task[None]] = []
        # ccxt hands every frame of every socket to ``handle_message``; the client keeps the
        # bound method it finds when it is created, so this must be set before any watch.
        self._ccxt_handle_message = self.exchange.handle_message
        self.exchange.handle_message = self._on_frame
        # ccxt decodes each text frame (JSON) before that, in its receive-loop callback: a frame
        # that is not JSON raises there and ends the loop, so the socket would look alive and
        # read nothing until a keepalive failed. Each new client's decoder is guarded.
        self._ccxt_client = self.exchange.client
        self.exchange.client = self._guarded_client

    @property
    def name(self) -> str:
        return str(self.exchange.id)

    @property
    def source(self) -> str:
        """The name gaps are reported under, e.g. ``"liquidations:binanceusdm"``."""
        return f"liquidations:{self.name}"

    @property
    def sampled(self) -> bool:
        """Whether the exchange publishes only a sample (Binance: the latest per second)."""
        return self.name in SAMPLED

    async def __aenter__(self) -> LiquidationFeed:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop watching and close the exchange's sockets and HTTP session; ``events()``
        ends once it has yielded what arrived before."""
        self._queue.put_nowait(_Closed())
        await self._stop_watching()
        await self.exchange.close()

    # ------------------------------------------------------------------ public API

    async def events(self) -> AsyncIterator[Liquidation | StreamGap]:
        """Liquidations as they are published, and a ``StreamGap`` for each time the stream
        was down (yielded once it is back), until ``close()``.

        A gap runs from the last frame the feed read to the confirmation of the new
        subscription. Binance's keepalive pings are websocket control frames the feed does not
        see, so on a quiet Binance symbol the gap may start before the socket actually died:
        it errs towards reporting too much, never too little.

        Raises:
            MalformedInput: the exchange lists no ``{asset}/{quote}:{quote}`` swap for one
                of the assets.
            SourceUnavailable: the market list could not be loaded, or ``max_failures``
                connections failed in a row.
        """
        self._symbols = await self._load_symbols()
        failures = 0
        down_since: datetime | None = None  # the last moment the stream was known to be up
        down_why = ""
        while True:
            generation = self._start_watching()
            lost: _Lost | None = None
            try:
                while lost is None:
                    item = await self._queue.get()
                    if isinstance(item, _Closed):
                        return
                    if isinstance(item, _Lost):
                        lost = item if item.generation == generation else None
                    elif isinstance(item, _Live):
                        if item.generation != generation:
                            continue
                        failures = 0
                        log.info("%s: subscribed to %s", self.source, ", ".join(self._symbols))
                        if down_since is not None:
                            self.reconnects += 1
                            gap = self._gap(down_since, item.at, down_why)
                            down_since = None
                            yield gap
                    else:
                        yield item
            finally:
                await self._stop_watching()
            self.last_error = lost.reason
            if self._live and down_since is None:  # it was up: a gap until it is back
                down_since = self._heard_at or self._clock()
                down_why = lost.reason
            failures += 1
            if self.max_failures is not None and failures >= self.max_failures:
                raise SourceUnavailable(
                    f"{self.source}: {failures} connections failed in a row; last: {lost.reason}"
                )
            delay = backoff_delay(failures, self.base_delay_s, self.max_delay_s, self._rng)
            log.warning(
                "%s: connection lost (%s); reconnecting in %.1f s", self.source, lost.reason, delay
            )
            await self._sleep(delay)

    # ------------------------------------------------------------------ internals

    async def _load_symbols(self) -> tuple[str, ...]:
        """The swaps' unified symbols, from the market list (loaded with retries)."""
        rest = ExchangeFeed(self.exchange, self.quote, sleep=self._sleep, rng=self._rng)
        markets = await rest.load()
        symbols = []
        for asset in self.assets:
            symbol = f"{asset}/{self.quote}:{self.quote}"
            market = markets.get(symbol)
            if market is None or not market.get("swap") or not market.get("linear"):
                raise MalformedInput(f"{asset} has no {symbol} perpetual swap on {self.name}")
            symbols.append(symbol)
        return tuple(symbols)

    def _start_watching(self) -> int:
        """Subscribe on a fresh connection (a new generation); returns its generation."""
        self._generation += 1
        self._acks = 0
        self._live = False
        generation = self._generation
        if self.name == "bybit":  # one topic, and one watch, per symbol
            calls = [self._watch(generation, [s]) for s in self._symbols]
        else:
            calls = [self._watch(generation, list(self._symbols))]
        self._watchers = [asyncio.create_task(c) for c in calls]
        return generation

    async def _watch(self, generation: int, symbols: list[str]) -> None:
        """Keep one ccxt subscription; report its end as ``_Lost``."""
        try:
            while True:
                # The frames themselves are read by ``_on_frame``; these calls return only
                # if ccxt ever resolves one, and raise when the connection fails.
                if self.name == "bybit":
                    await self.exchange.watch_liquidations(symbols[0])
                else:
                    await self.exchange.watch_liquidations_for_symbols(symbols)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # we are stopping it
            # ccxt cancelled its own future: the client was closed under it.
            self._lose(generation, "the connection was closed")
        except Exception as e:  # every way a watch ends means the socket is gone
            self._lose(generation, f"{type(e).__name__}: {str(e)[:200]}")

    def _lose(self, generation: int, reason: str) -> None:
        if generation == self._generation:
            self.connected = False
        self._queue.put_nowait(_Lost(generation, reason))

    async def _stop_watching(self) -> None:
        watchers, self._watchers = self._watchers, []
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        self.connected = False
        # A fresh connection next time: ccxt keeps a failed client's subscriptions, and a
        # closed one must not take frames for the next generation.
        self._generation += 1
        await self.exchange.close_ws_clients()

    def _guarded_client(self, url: str) -> Any:
        client = self._ccxt_client(url)
        if not getattr(client, "_moodring_guarded", False):
            decode = client.handle_text_or_binary_message

            def guarded(data: Any) -> None:
                try:
                    decode(data)
                except ValueError as exc:  # orjson's JSONDecodeError is a ValueError
                    self.malformed += 1
                    log.warning(
                        "%s: a frame that is not JSON left out (%s): %.200r", self.source, exc, data
                    )

            client.handle_text_or_binary_message = guarded
            client._moodring_guarded = True
        return client

    def _on_frame(self, client: Any, message: Any) -> None:
        """Every frame ccxt receives, before ccxt sees it (ccxt's receive loop calls this)."""
        try:
            self._read_frame(client, message)
        except Exception:
            # An exception here would end ccxt's receive loop (it runs in a callback) and
            # stall the stream without a word: count the frame instead.
            self.malformed += 1
            log.exception("%s: a frame could not be handled: %.200r", self.source, message)

    def _read_frame(self, client: Any, message: Any) -> None:
        now = self._clock()
        self._heard_at = now
        parsed = parse_frame(self.exchange, message, now=now, symbols=self._symbols)
        if parsed is None:
            if self._is_ack(message):
                self._acks += 1
                # Binance confirms all symbols in one answer, Bybit each topic apart.
                if self._acks >= (len(self._symbols) if self.name == "bybit" else 1):
                    self._mark_live(now)
            self._ccxt_handle_message(client, message)
            return
        self._mark_live(now)  # a liquidation came: the subscription works
        for reason in parsed.rejected:
            self.malformed += 1
            log.warning("%s: frame left out: %s", self.source, reason)
        for liquidation in parsed.liquidations:
            self._accept(liquidation, now)

    def _is_ack(self, message: Any) -> bool:
        if not isinstance(message, dict):
            return False
        if self.name == "bybit":
            return message.get("op") == "subscribe" and message.get("success") is True
        return "id" in message and "result" in message and message["result"] is None

    def _mark_live(self, now: datetime) -> None:
        if not self._live:
            self._live = True
            self.connected = True
            self._queue.put_nowait(_Live(self._generation, now))

    def _accept(self, liquidation: Liquidation, now: datetime) -> None:
        if liquidation.event_id in self._seen:
            self.duplicates += 1
            log.debug("%s: duplicate %s dropped", self.source, liquidation.event_id)
            return
        if self._queue.qsize() >= self.max_backlog:
            # The consumer is too slow: drop rather than grow without bound, and say so.
            first, count = self._behind or (now, 0)
            self._behind = (first, count + 1)
            self.dropped += 1
            return
        if self._behind is not None:
            first, count = self._behind
            self._behind = None
            reason = f"consumer fell behind: {count} liquidations dropped"
            self._queue.put_nowait(self._gap(first, now, reason))
        self._seen[liquidation.event_id] = None
        while len(self._seen) > self.seen_ids:
            self._seen.popitem(last=False)
        self.last_event_at = now
        self._queue.put_nowait(liquidation)

    def _gap(self, since: datetime, until: datetime, reason: str) -> StreamGap:
        gap = StreamGap(source=self.source, since=since, until=until, reason=reason)
        self.gaps += 1
        self.last_gap = gap
        log.warning("%s: nothing seen from %s to %s (%s)", self.source, since, until, reason)
        return gap
