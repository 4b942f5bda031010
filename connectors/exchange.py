"""Crypto market data from an exchange's public REST API through ccxt: candles, tickers, polling."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import ccxt.async_support as ccxt

from connectors.bounds import bar_problem, time_problem
from connectors.errors import MalformedInput, SourceUnavailable
from connectors.retry import backoff_delay, retry_after_s, wait_or_stop
from connectors.types import Candle, Ticker

log = logging.getLogger(__name__)

P = ParamSpec("P")
T = TypeVar("T")

# Worth retrying: the request may succeed if sent again. ccxt raises DDoSProtection for Binance's
# 429/418, RateLimitExceeded for its -1003 code, RequestTimeout, ExchangeNotAvailable for 5xx and
# refused connections (all NetworkError), and BadResponse for a body that is not the JSON expected.
RETRYABLE = (ccxt.NetworkError, ccxt.BadResponse)
# ccxt's parsers raise plain Python errors on an answer whose values are not what they expect
# (``"NaN"`` where a number goes): as unreadable as a BadResponse, and retried the same way.
UNREADABLE = (TypeError, ValueError, KeyError, IndexError, AttributeError, ArithmeticError)
# Market types never needed here: loading them costs requests and, on Binance, a whole API host.
UNUSED_MARKET_TYPES = frozenset({"inverse", "option"})


def build_exchange(
    name: str = "binance", api_url: str | None = None, timeout_ms: int = 10000
) -> ccxt.Exchange:
    """Create a ccxt async exchange for public market data (no API key).

    Args:
        name: a ccxt exchange id, e.g. ``"binance"``.
        api_url: if given, every entry of ``exchange.urls['api']`` is repointed at this base URL
            keeping its path (``https://fapi.binance.com/fapi/v1`` becomes
            ``{api_url}/fapi/v1``): for tests and self-hosted proxies.
        timeout_ms: per-request timeout.

    Returns:
        The exchange; close it with ``await exchange.close()`` (``ExchangeFeed`` does).

    Raises:
        ValueError: ``name`` is not an exchange ccxt knows.
    """
    if name not in ccxt.exchanges:
        raise ValueError(f"unknown exchange {name!r} (not a ccxt exchange id)")
    exchange: ccxt.Exchange = getattr(ccxt, name)({"timeout": timeout_ms, "enableRateLimit": True})
    # Only spot and linear swaps are read: skip loading inverse and option markets.
    fetch_markets = exchange.options.get("fetchMarkets")
    if isinstance(fetch_markets, dict) and isinstance(fetch_markets.get("types"), list):
        types = [t for t in fetch_markets["types"] if t not in UNUSED_MARKET_TYPES]
        exchange.options["fetchMarkets"] = {**fetch_markets, "types": types}
    elif isinstance(fetch_markets, list):
        exchange.options["fetchMarkets"] = [
            t for t in fetch_markets if t not in UNUSED_MARKET_TYPES
        ]
    if api_url is not None:
        exchange.urls["api"] = repoint_urls(exchange.urls["api"], api_url)
    return exchange


def repoint_urls(api: Any, base_url: str) -> Any:
    """Replace scheme and host of every URL in ``api`` (a string or nested dict of them) by
    ``base_url``, keeping each URL's path.

    Binance's ``fapiData`` and ``dapiData`` both end in ``/futures/data`` and so meet at one
    path; nothing here uses them.
    """
    if isinstance(api, str):
        path = urlsplit(api).path
        return base_url.rstrip("/") + path
    if isinstance(api, dict):
        return {key: repoint_urls(value, base_url) for key, value in api.items()}
    return api


class ExchangeFeed:
    """Candles and tickers of assets quoted in ``quote`` (e.g. BTC/USDT) from one exchange.

    Every request is retried on rate limits (429/418, honouring ``Retry-After``), timeouts and
    network errors with exponential backoff and jitter; after ``max_attempts`` failures in a row
    it raises ``SourceUnavailable``. An asset the exchange does not list raises
    ``MalformedInput``. Use ``async with ExchangeFeed(...)`` so the exchange's HTTP session is
    closed.

    Health: ``last_ok_at`` (time of the last successful request), ``errors`` (failed requests
    so far), ``last_error`` (what the last one said).
    """

    def __init__(
        self,
        exchange: ccxt.Exchange,
        quote: str = "USDT",
        *,
        max_attempts: int = 5,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        max_retry_after_s: float = 600.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Wrap ``exchange``.

        Args:
            exchange: from ``build_exchange``; the feed closes it.
            quote: the quote currency of the spot and perpetual markets read.
            max_attempts: tries per request before ``SourceUnavailable``.
            base_delay_s: backoff before the second try; doubles each try up to ``max_delay_s``.
            max_delay_s: the longest backoff (a ``Retry-After`` may ask for longer).
            max_retry_after_s: a ``Retry-After`` longer than this (an IP ban) is not waited
                out: ``SourceUnavailable`` at once.
            sleep: how to wait between tries (tests pass a recorder).
            rng: the jitter's random source (seed it for repeatable waits).
            clock: the current time, for ``now`` defaults and health.
        """
        self.exchange = exchange
        self.quote = quote.upper()
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_retry_after_s = max_retry_after_s
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self.last_ok_at: datetime | None = None
        self.errors = 0
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        return str(self.exchange.id)

    async def __aenter__(self) -> ExchangeFeed:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the exchange's HTTP session."""
        await self.exchange.close()

    # ------------------------------------------------------------------ public API

    async def load(self) -> dict[str, dict[str, Any]]:
        """Load the exchange's full market list (spot and swaps), with retries.

        Returns:
            ccxt's markets by unified symbol (``"BTC/USDT"``, ``"BTC/USDT:USDT"``, ...).
        """
        await self.call("load markets", self.exchange.load_markets)
        return self.exchange.markets

    async def candles(
        self,
        asset: str,
        interval: str,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 1000,
        *,
        now: datetime | None = None,
    ) -> list[Candle]:
        """Closed candles of ``asset`` opening in ``[since, until)``, oldest first.

        Pages forward from ``since`` (``limit`` bars a request) until ``until`` or ``now``.
        A bar still open at ``now`` (``ts + interval > now``) is left out: it is known only
        once closed. Without ``since``, returns the latest ``limit`` closed bars. A malformed
        bar (``connectors.bounds.bar_problem``, a time before 2009) is logged and left out.

        Args:
            asset: base currency, e.g. ``"BTC"`` (read on the spot market ``BTC/{quote}``).
            interval: a timeframe of the exchange, e.g. ``"1h"`` or ``"1d"``.
            since: earliest open time wanted (aware UTC).
            until: open times before this only.
            limit: bars per request.
            now: the current time (default: the feed's clock).

        Raises:
            MalformedInput: the exchange does not list ``asset`` against the quote currency.
            SourceUnavailable: the exchange kept failing.
            ValueError: ``interval`` is not a timeframe of the exchange.
        """
        now = now if now is not None else self._clock()
        step_ms = self._step_ms(interval)
        symbol = await self._spot_symbol(asset)
        # Highest open time wanted: before ``until``, and closed by ``now``.
        hi = _ms(now) - step_ms
        if until is not None:
            hi = min(hi, _ms(until) - 1)
        found: dict[int, Candle] = {}
        what = f"{symbol} {interval} candles"
        if since is None:
            rows = await self.call(
                what, self.exchange.fetch_ohlcv, symbol, interval, None, limit, {"until": hi}
            )
            found.update(self._bars(asset, interval, rows, None, hi))
        else:
            cursor = _ms(since)
            while cursor <= hi:
                rows = await self.call(
                    what, self.exchange.fetch_ohlcv, symbol, interval, cursor, limit, {"until": hi}
                )
                opened = [t for t in map(_open_ms, rows) if t is not None and cursor <= t <= hi]
                if not opened:
                    break  # nothing more before ``hi`` (a gap in the exchange's data, or the end)
                found.update(self._bars(asset, interval, rows, cursor, hi))
                cursor = max(opened) + step_ms  # past malformed bars too: they stay left out
        return [found[ts] for ts in sorted(found)]

    async def ticker(self, asset: str, *, now: datetime | None = None) -> Ticker:
        """The latest price, 24h change and volume of ``asset`` on the spot market, with the
        funding rate and open interest (in quote currency) of its perpetual swap where the
        exchange has one and says it serves them (``None`` otherwise or when that call fails).

        Args:
            asset: base currency, e.g. ``"BTC"``.
            now: stamps the ticker when the exchange gives no timestamp.

        Raises:
            MalformedInput: the exchange does not list ``asset`` against the quote currency,
                or its price is not finite and positive, or its time is before 2009 or ahead.
                Unreadable extras (funding, open interest, change, volume) are None instead.
            SourceUnavailable: the exchange kept failing.
        """
        symbol = await self._spot_symbol(asset)
        raw = await self.call(f"{symbol} ticker", self.exchange.fetch_ticker, symbol)
        if raw.get("last") is None:
            raise SourceUnavailable(f"{self.name} gave no last price for {symbol}")
        last = _positive(raw["last"])
        if last is None:
            raise MalformedInput(f"{self.name} gave an unusable last price for {symbol}")
        at = now if now is not None else self._clock()
        if raw.get("timestamp") is not None:
            stamped = _time_or_none(raw["timestamp"])
            if stamped is None or time_problem(stamped, now=self._clock()):
                raise MalformedInput(f"{self.name} gave an unusable time for the {symbol} ticker")
            at = stamped
        funding_rate, mark = await self._funding(asset)
        return Ticker(
            asset=asset.upper(),
            at=at,
            last=last,
            change_24h_pct=_float_or_none(raw.get("percentage")),
            volume_24h=_non_negative(raw.get("baseVolume")),  # base units, like Candle.volume
            funding_rate=funding_rate,
            open_interest=await self._open_interest(asset, mark if mark is not None else last),
            source=self.name,
        )

    async def poll(
        self,
        assets: Iterable[str],
        intervals: Iterable[str],
        on_candles: Callable[[list[Candle]], Awaitable[None]],
        since_of: Callable[[str, str], datetime | None],
        stopping: asyncio.Event,
        every_s: float = 60,
    ) -> None:
        """Hand over new closed candles of each (asset, interval) until ``stopping`` is set.

        Each round asks ``since_of(asset, interval)`` for the open time of the newest stored
        candle (``None``: none stored) and fetches the closed bars after it, so a round that
        fails or a restart loses nothing: the next round starts from what was stored.
        ``on_candles`` gets each non-empty batch (one asset and interval, oldest first); its
        errors propagate. An exchange outage is logged and retried next round.

        Raises:
            MalformedInput: an asset is not listed (checked once the markets are loaded,
                before the first round).
        """
        assets, intervals = list(assets), list(intervals)
        for interval in intervals:
            self._step_ms(interval)
        while not stopping.is_set():
            if self.exchange.markets is None:
                # The market list is needed first; an outage at start waits like any other.
                try:
                    await self.load()
                except SourceUnavailable as e:
                    log.warning("markets of %s not loaded this round: %s", self.name, e)
                    await wait_or_stop(stopping, every_s)
                    continue
            for asset in assets:
                await self._spot_symbol(asset)  # a typo in the asset list stops here, loudly
            break
        while not stopping.is_set():
            now = self._clock()
            for asset in assets:
                for interval in intervals:
                    if stopping.is_set():
                        return
                    last = since_of(asset, interval)
                    since = None if last is None else _dt(_ms(last) + self._step_ms(interval))
                    try:
                        got = await self.candles(asset, interval, since=since, now=now)
                    except SourceUnavailable as e:
                        log.warning("%s %s candles skipped this round: %s", asset, interval, e)
                        continue
                    got = [c for c in got if last is None or c.ts > last]
                    if got:
                        await on_candles(got)
            await wait_or_stop(stopping, every_s)

    # ------------------------------------------------------------------ internals

    async def _funding(self, asset: str) -> tuple[float | None, float | None]:
        """(funding rate, mark price) of the perpetual swap, or Nones."""
        swap = self._swap_symbol(asset)
        if swap is None or not self.exchange.has.get("fetchFundingRate"):
            return None, None
        try:
            raw = await self.call(f"{swap} funding", self.exchange.fetch_funding_rate, swap)
        except (SourceUnavailable, MalformedInput) as e:
            log.warning("funding rate of %s unavailable: %s", swap, e)
            return None, None
        rate = rate_per_8h(_float_or_none(raw.get("fundingRate")), raw.get("interval"))
        rate = _float_or_none(rate)  # restated from a tiny interval, it could overflow
        return rate, _positive(raw.get("markPrice"))

    async def _open_interest(self, asset: str, price: float) -> float | None:
        """Open interest of the perpetual swap in quote currency, or None."""
        swap = self._swap_symbol(asset)
        if swap is None or not self.exchange.has.get("fetchOpenInterest"):
            return None
        try:
            raw = await self.call(f"{swap} open interest", self.exchange.fetch_open_interest, swap)
        except (SourceUnavailable, MalformedInput) as e:
            log.warning("open interest of %s unavailable: %s", swap, e)
            return None
        value = _non_negative(raw.get("openInterestValue"))
        if value is not None:
            return value
        # Binance's /fapi/v1/openInterest gives contracts only: value them at the mark price.
        amount = _non_negative(raw.get("openInterestAmount"))
        if amount is None:
            return None
        size = _positive(self.exchange.markets[swap].get("contractSize")) or 1.0
        return _non_negative(amount * size * price)

    async def _spot_symbol(self, asset: str) -> str:
        if not asset or not asset.strip():
            raise MalformedInput("empty asset name")
        if self.exchange.markets is None:
            await self.load()
        symbol = f"{asset.strip().upper()}/{self.quote}"
        market = self.exchange.markets.get(symbol)
        if market is None or not market.get("spot"):
            raise MalformedInput(f"{asset} is not listed on {self.name} (no {symbol} spot market)")
        return symbol

    def _swap_symbol(self, asset: str) -> str | None:
        symbol = f"{asset.strip().upper()}/{self.quote}:{self.quote}"
        market = (self.exchange.markets or {}).get(symbol)
        return symbol if market is not None and market.get("swap") else None

    def _step_ms(self, interval: str) -> int:
        if interval not in self.exchange.timeframes:
            known = ", ".join(self.exchange.timeframes)
            raise ValueError(f"{interval!r} is not a timeframe of {self.name} ({known})")
        return int(self.exchange.parse_timeframe(interval) * 1000)

    def _bars(
        self, asset: str, interval: str, rows: Any, lo: int | None, hi: int
    ) -> dict[int, Candle]:
        """The bars among ``rows`` (ccxt's OHLCV lists) opening in ``[lo, hi]``, by open time.

        A malformed bar is logged and left out: one bad bar must not hold back the good ones,
        nor stop every later poll at the same place.
        """
        found: dict[int, Candle] = {}
        for row in rows if isinstance(rows, list) else []:
            ts = _open_ms(row)
            if ts is not None and (lo is None or lo <= ts) and ts <= hi:
                try:
                    found[ts] = self._candle(asset, interval, row)
                except MalformedInput as e:
                    log.warning("%s", e)
            elif ts is None:
                log.warning(
                    "%s sent a %s bar without an open time: %.200r", self.name, interval, row
                )
        return found

    def _candle(self, asset: str, interval: str, row: list[Any]) -> Candle:
        """One bar from ccxt's ``[ts, open, high, low, close, volume]``.

        Raises:
            MalformedInput: the values are not numbers, or not a plausible bar
                (``connectors.bounds.bar_problem``), or the time is before 2009 or ahead.
        """
        try:
            ts, o, h, lo, c, v = row[:6]
            at = _dt(int(ts))
            values = (float(o), float(h), float(lo), float(c), float(v))
        except (TypeError, ValueError, OverflowError, OSError) as e:
            detail = f"{self.name} sent a malformed {interval} bar: {row!r:.200}"
            raise MalformedInput(detail) from e
        if problem := time_problem(at, now=self._clock()) or bar_problem(*values):
            raise MalformedInput(f"{self.name} sent a bad {interval} bar ({problem}): {row!r:.200}")
        return Candle(asset.upper(), interval, at, *values)

    async def call(
        self, what: str, op: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run ``op`` with this feed's retries and map ccxt's errors to the connectors' errors
        (``VolatilityFeed`` reuses it for Deribit's implicit methods).

        Raises:
            MalformedInput: the exchange does not know the symbol.
            SourceUnavailable: retries spent, a ban-length wait asked, or a request refused.
        """
        failures = 0
        while True:
            try:
                result = await op(*args, **kwargs)
            except ccxt.BadSymbol as e:
                self._failed(what, e)
                raise MalformedInput(f"{what}: {self.name} does not know the symbol: {e}") from e
            except (*RETRYABLE, *UNREADABLE) as e:
                self._failed(what, e)
                failures += 1
                retry_after = self._retry_after(e)
                if retry_after is not None and retry_after > self.max_retry_after_s:
                    raise SourceUnavailable(
                        f"{self.name}: {what}: asked to wait {retry_after:.0f} s (banned?)"
                    ) from e
                if failures >= self.max_attempts:
                    raise SourceUnavailable(
                        f"{self.name}: {what} failed {failures} times in a row; "
                        f"last: {type(e).__name__}"
                    ) from e
                delay = self._backoff(failures, retry_after)
                log.warning(
                    "%s: %s failed (%s); try %d in %.1f s",
                    self.name,
                    what,
                    type(e).__name__,
                    failures + 1,
                    delay,
                )
                await self._sleep(delay)
                continue
            except ccxt.BaseError as e:
                # Anything else (a rejected request, an exchange-side error) will not go away
                # by asking again.
                self._failed(what, e)
                raise SourceUnavailable(f"{self.name}: {what}: {type(e).__name__}: {e}") from e
            self.last_ok_at = self._clock()
            return result

    def _failed(self, what: str, e: Exception) -> None:
        self.errors += 1
        self.last_error = f"{what}: {type(e).__name__}: {str(e)[:300]}"

    def _backoff(self, failures: int, retry_after: float | None) -> float:
        delay = backoff_delay(failures, self.base_delay_s, self.max_delay_s, self._rng)
        return max(delay, retry_after) if retry_after is not None else delay

    def _retry_after(self, e: Exception) -> float | None:
        """The ``Retry-After`` of a rate-limit answer, in seconds."""
        if not isinstance(e, ccxt.DDoSProtection | ccxt.RateLimitExceeded):
            return None
        # ccxt keeps the headers of the last response; this feed sends one request at a time.
        headers: Mapping[str, str] = self.exchange.last_response_headers or {}
        for key, value in headers.items():
            if key.lower() == "retry-after":
                return retry_after_s(value)
        return None


def _ms(dt: datetime) -> int:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: pass timezone-aware UTC")
    return int(dt.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def rate_per_8h(rate: float | None, interval: Any) -> float | None:
    """A funding rate restated per 8 hours, the period the composite index reads.

    Args:
        rate: the rate per funding period, as the exchange gives it.
        interval: ccxt's ``interval`` of that period, e.g. ``"8h"``, ``"1h"`` or ``None``.
            OKX and Bybit report it. Binance's funding endpoint does not (``None``): its BTC
            and ETH perpetuals settle every 8 hours, but some smaller ones every 4 or 1, and
            those are read as 8-hourly. An unknown or unreadable interval leaves the rate
            as it is.
    """
    if rate is None or not isinstance(interval, str):
        return rate
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*h\s*", interval.lower())
    hours = float(match.group(1)) if match else 0.0
    return rate * 8.0 / hours if hours > 0 else rate


def _open_ms(row: Any) -> int | None:
    """A ccxt OHLCV row's open time in milliseconds, or None when it has none."""
    ts = row[0] if isinstance(row, list) and row else None
    return ts if type(ts) is int else None


def _time_or_none(ms: Any) -> datetime | None:
    """Epoch milliseconds as an aware datetime, or None when they cannot be one."""
    try:
        return _dt(int(ms))
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _float_or_none(value: Any) -> float | None:
    """A finite number, or None for what is absent or not one (NaN, infinity, text)."""
    try:
        number = None if value is None else float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if number is not None and math.isfinite(number) else None


def _non_negative(value: Any) -> float | None:
    number = _float_or_none(value)
    return number if number is not None and number >= 0 else None


def _positive(value: Any) -> float | None:
    number = _float_or_none(value)
    return number if number is not None and number > 0 else None
