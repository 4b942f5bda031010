"""Deribit's DVOL implied-volatility index over its public REST API, through ccxt."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

import ccxt.async_support as ccxt

from connectors.bounds import bar_problem, time_problem
from connectors.errors import MalformedInput
from connectors.exchange import ExchangeFeed, build_exchange
from connectors.types import VolatilityIndex

log = logging.getLogger(__name__)

#: Deribit publishes DVOL for these currencies.
DVOL_ASSETS = frozenset({"BTC", "ETH"})
#: Our intervals and Deribit's ``resolution`` for them.
RESOLUTIONS = {"1h": "3600", "1d": "1D"}
STEPS = {"1h": timedelta(hours=1), "1d": timedelta(days=1)}
#: Requests for one call at most: a continuation that never ends must not loop forever.
MAX_PAGES = 1000


class VolatilityFeed:
    """DVOL, Deribit's 30-day implied-volatility index of BTC and ETH options, in annualised
    percent, read with ccxt's implicit ``public_get_get_volatility_index_data`` (Deribit's
    ``public/get_volatility_index_data``), which loads no markets.

    Not to be confused with ccxt's ``fetchVolatilityHistory``: that is Deribit's historical
    *realised* volatility (``public/get_historical_volatility``) and must never be labelled
    implied.

    Requests are retried like ``ExchangeFeed``'s (rate limits, timeouts, network errors, with
    jittered backoff; ``SourceUnavailable`` after ``max_attempts``). A row that is no
    plausible bar is logged, left out and counted in ``malformed``. Health: ``last_ok_at``,
    ``errors``, ``last_error``. Use ``async with VolatilityFeed(...)`` so the HTTP session is
    closed.
    """

    def __init__(
        self,
        api_url: str | None = None,
        *,
        timeout_ms: int = 10000,
        max_attempts: int = 5,
        base_delay_s: float = 1.0,
        max_delay_s: float = 60.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        """Create the Deribit client.

        Args:
            api_url: repoint Deribit's REST URL here, keeping paths (``build_exchange``):
                for tests and self-hosted proxies.
            timeout_ms: per-request timeout.
            max_attempts: tries per request before ``SourceUnavailable``.
            base_delay_s: backoff before the second try; doubles up to ``max_delay_s``.
            max_delay_s: the longest backoff.
            sleep: how to wait between tries (tests pass a recorder).
            rng: the jitter's random source.
            clock: the current time, for ``now`` defaults and health.
        """
        self.exchange: ccxt.Exchange = build_exchange("deribit", api_url, timeout_ms)
        # The request and retry policy of the candle feed, on Deribit's client.
        self._rest = ExchangeFeed(
            self.exchange,
            max_attempts=max_attempts,
            base_delay_s=base_delay_s,
            max_delay_s=max_delay_s,
            sleep=sleep,
            rng=rng,
            clock=clock,
        )
        self._clock = clock
        self.malformed = 0

    @property
    def last_ok_at(self) -> datetime | None:
        return self._rest.last_ok_at

    @property
    def errors(self) -> int:
        return self._rest.errors

    @property
    def last_error(self) -> str | None:
        return self._rest.last_error

    async def __aenter__(self) -> VolatilityFeed:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the HTTP session."""
        await self.exchange.close()

    async def dvol(
        self,
        asset: str,
        interval: str = "1h",
        since: datetime | None = None,
        until: datetime | None = None,
        *,
        now: datetime | None = None,
    ) -> list[VolatilityIndex]:
        """Closed DVOL bars of ``asset`` opening in ``[since, until)``, oldest first.

        Deribit answers the newest bars of the span first and a ``continuation`` (the
        ``end_timestamp`` of the next, older page); pages are followed until it is null. A
        bar still open at ``now`` is left out, as ``ExchangeFeed.candles`` does.

        Args:
            asset: ``"BTC"`` or ``"ETH"``.
            interval: ``"1h"`` or ``"1d"``.
            since: earliest open time wanted (aware); default: 30 bars before ``until``.
            until: open times before this only (aware); default: ``now``.
            now: the current time (default: the feed's clock).

        Raises:
            ValueError: an asset without DVOL, an interval not offered, or naive times.
            MalformedInput: an answer without Deribit's ``result.data``.
            SourceUnavailable: Deribit kept failing or refused the request.
        """
        currency = asset.strip().upper()
        if currency not in DVOL_ASSETS:
            raise ValueError(f"Deribit publishes no DVOL for {asset!r} (only BTC and ETH)")
        if interval not in RESOLUTIONS:
            raise ValueError(f"DVOL interval must be one of {', '.join(RESOLUTIONS)}")
        now = now if now is not None else self._clock()
        step = STEPS[interval]
        until = min(until, now) if until is not None else now
        since = since if since is not None else until - 30 * step
        start_ms, end_ms = _ms(since), _ms(until) - 1
        found: dict[int, VolatilityIndex] = {}
        for _ in range(MAX_PAGES):
            if end_ms < start_ms:
                break
            params = {
                "currency": currency,
                "start_timestamp": start_ms,
                "end_timestamp": end_ms,
                "resolution": RESOLUTIONS[interval],
            }
            answer = await self._rest.call(
                f"{currency} DVOL {interval}",
                self.exchange.public_get_get_volatility_index_data,
                params,
            )
            rows, continuation = _page(answer)
            oldest = end_ms
            for row in rows:
                ts = row[0] if isinstance(row, list) and row else None
                if type(ts) is int and start_ms <= ts <= end_ms:
                    oldest = min(oldest, ts)
                bar = self._bar(currency, interval, row, now)
                # In the span asked for, and closed: a bar still open may yet change.
                if bar is not None and start_ms <= _ms(bar.ts) <= end_ms and bar.ts + step <= now:
                    found[_ms(bar.ts)] = bar
            # Follow the continuation only while it moves back: a server repeating itself
            # (or sending junk) must not keep us asking.
            if not isinstance(continuation, int) or isinstance(continuation, bool):
                break
            if not start_ms <= continuation < end_ms:
                break
            # Whether the continuation names the oldest bar sent or the one before it, the
            # next page ends before the oldest bar already read.
            end_ms = min(continuation, oldest - 1)
        else:
            log.warning("%s DVOL: stopped after %d pages", currency, MAX_PAGES)
        return [found[ts] for ts in sorted(found)]

    def _bar(self, asset: str, interval: str, row: Any, now: datetime) -> VolatilityIndex | None:
        """One ``[ts, open, high, low, close]`` row as a bar, or None (logged, counted)."""
        problem: str | None
        try:
            at, values = _row(row)
        except (TypeError, ValueError, OverflowError, OSError) as e:
            problem = f"unreadable: {e}"
        else:
            problem = time_problem(at, now=now) or bar_problem(*values, 0.0)
            if problem is None:
                return VolatilityIndex(asset, interval, at, *values)
        self.malformed += 1
        log.warning("Deribit sent a bad %s %s DVOL row (%s): %.200r", asset, interval, problem, row)
        return None


def _row(row: Any) -> tuple[datetime, tuple[float, float, float, float]]:
    """The open time and the four levels of a ``[ts, open, high, low, close]`` row."""
    if not isinstance(row, list) or len(row) < 5:
        raise TypeError("not a list of five")
    ts = row[0]
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise TypeError("the time is not an integer")
    at = datetime.fromtimestamp(ts / 1000, UTC)
    o, h, lo, c = (_number(v) for v in row[1:5])
    return at, (o, h, lo, c)


def _page(answer: Any) -> tuple[list[Any], Any]:
    """``result.data`` and ``result.continuation`` of one answer.

    Raises:
        MalformedInput: the answer has no ``result.data`` list.
    """
    result = answer.get("result") if isinstance(answer, dict) else None
    if isinstance(result, dict) and isinstance(result.get("data"), list):
        return result["data"], result.get("continuation")
    raise MalformedInput(f"Deribit's DVOL answer has no result.data: {answer!r:.200}")


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"not a number: {value!r:.30}")
    return float(value)


def _ms(dt: datetime) -> int:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"naive datetime {dt!r}: pass timezone-aware UTC")
    return int(dt.timestamp() * 1000)
