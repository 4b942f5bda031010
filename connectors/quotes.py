"""Daily closes of reference assets (IGV, QQQ, GLD, SPY, ...) from a quotes service: Stooq's CSV."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import random
import re
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Protocol, runtime_checkable

import httpx

from connectors.bounds import bar_problem
from connectors.errors import MalformedInput, SourceUnavailable
from connectors.retry import backoff_delay, retry_after_s
from connectors.types import Candle

log = logging.getLogger(__name__)

STOOQ_URL = "https://stooq.com"
CSV_HEADER = ["Date", "Open", "High", "Low", "Close"]  # then "Volume" where there is one
_SYMBOL = re.compile(r"^\^?[A-Za-z0-9][A-Za-z0-9._-]*$")


@runtime_checkable
class QuoteProvider(Protocol):
    """Anything that gives daily bars of a listed symbol."""

    async def daily(self, symbol: str, since: date) -> list[Candle]:
        """Daily candles of ``symbol`` (``interval="1d"``, ``ts`` = the day at 00:00 UTC) from
        ``since`` on, oldest first."""
        ...


class StooqQuotes:
    """Daily bars from Stooq's CSV download, ``{base_url}/q/d/l/?s=igv.us&i=d``.

    Stooq asks for an ``apikey`` parameter since early 2026 (a key is had from
    ``https://stooq.com/q/d/?s=spy.us&get_apikey``); without one it answers HTTP 200 with an
    HTML page, which raises ``SourceUnavailable`` saying so. 5xx, 429 and timeouts are retried
    with exponential backoff and jitter. Use ``async with StooqQuotes(...)`` or ``aclose()``.
    """

    def __init__(
        self,
        base_url: str = STOOQ_URL,
        api_key: str | None = None,
        *,
        market: str = "us",
        timeout_s: float = 15.0,
        max_attempts: int = 4,
        base_delay_s: float = 1.0,
        max_delay_s: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """Configure the client.

        Args:
            base_url: Stooq or a mirror of its ``/q/d/l/`` endpoint.
            api_key: sent as ``apikey`` when given.
            market: suffix for a bare symbol (``IGV`` → ``igv.us``); a symbol with a dot or a
                leading ``^`` (an index) is sent as it is.
            timeout_s: per-request timeout.
            max_attempts: tries per request before ``SourceUnavailable``.
            base_delay_s: backoff before the second try; doubles up to ``max_delay_s``.
            max_delay_s: the longest backoff.
            transport: httpx transport (tests pass ``httpx.MockTransport``).
            sleep: how to wait between tries.
            rng: the jitter's random source.
        """
        self.base_url = base_url.rstrip("/")
        self.market = market.lower()
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self._api_key = api_key
        self._sleep = sleep
        self._rng = rng if rng is not None else random.Random()
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=timeout_s,
            transport=transport,
            headers={"User-Agent": "moodring (self-hosted sentiment bot)"},
        )

    async def __aenter__(self) -> StooqQuotes:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    def ticker_of(self, symbol: str) -> str:
        """Stooq's name for ``symbol``: ``"IGV"`` → ``"igv.us"``, ``"^SPX"`` → ``"^spx"``."""
        symbol = symbol.strip()
        if not _SYMBOL.match(symbol):
            raise MalformedInput(f"{symbol!r} is not a ticker symbol")
        if "." in symbol or symbol.startswith("^"):
            return symbol.lower()
        return f"{symbol.lower()}.{self.market}"

    async def daily(self, symbol: str, since: date) -> list[Candle]:
        """Daily candles of ``symbol`` from ``since`` on, oldest first.

        Ask from the last stored day (inclusive) rather than the day after: Stooq answers
        "No data" for a range without a trading day, which raises.

        Raises:
            MalformedInput: a bad symbol, Stooq has no data for it since ``since``, or the CSV
                cannot be read.
            SourceUnavailable: Stooq kept failing, wants an API key, or the daily limit is used up.
        """
        ticker = self.ticker_of(symbol)
        params = {"s": ticker, "i": "d", "d1": since.strftime("%Y%m%d")}
        if self._api_key:
            params["apikey"] = self._api_key
        body = await self._get("/q/d/l/", params, what=f"{ticker} daily")
        candles = parse_csv(body, asset=symbol.strip().upper(), what=f"stooq {ticker}")
        if candles is None:
            raise MalformedInput(
                f"stooq has no data for {symbol} ({ticker}) since {since.isoformat()}: "
                "an unknown symbol, or no trading day in that range"
            )
        return [c for c in candles if c.ts.date() >= since]

    async def _get(self, path: str, params: dict[str, str], what: str) -> str:
        failures = 0
        while True:
            retry_after: float | None = None
            try:
                response = await self._client.get(path, params=params)
            except httpx.TransportError as e:  # timeouts, refused or dropped connections
                problem = f"{type(e).__name__}: {e}"
            else:
                if response.status_code < 400:
                    return _check_body(response, what)
                if response.status_code < 500 and response.status_code != 429:
                    raise SourceUnavailable(f"{what}: stooq answered HTTP {response.status_code}")
                problem = f"HTTP {response.status_code}"
                retry_after = retry_after_s(response.headers.get("Retry-After"))
            failures += 1
            if failures >= self.max_attempts:
                raise SourceUnavailable(
                    f"{what}: failed {failures} times in a row; last: {problem}"
                )
            delay = backoff_delay(failures, self.base_delay_s, self.max_delay_s, self._rng)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.max_delay_s))
            log.warning("%s failed (%s); try %d in %.1f s", what, problem, failures + 1, delay)
            await self._sleep(delay)


def parse_csv(
    text: str, asset: str, what: str = "csv", today: date | None = None
) -> list[Candle] | None:
    """Read Stooq's ``Date,Open,High,Low,Close[,Volume]`` CSV into daily candles.

    Args:
        text: the body Stooq answered.
        asset: the candles' asset.
        what: names the download in errors.
        today: the UTC date now (default: the wall clock's); a day after the next is no bar
            yet (a market east of UTC may already be a day ahead).

    Returns:
        The candles sorted by day, or ``None`` when the body is Stooq's ``No data``.

    Raises:
        MalformedInput: the header or a row is not what Stooq sends: unreadable, not a bar
            (``connectors.bounds.bar_problem``) or dated ahead (the line is named). One row
            dated 9999 would otherwise be the newest stored day, and every later download
            would start after it.
    """
    latest = (today or datetime.now(UTC).date()) + timedelta(days=1)
    stripped = text.strip()
    if stripped.lower() == "no data":
        return None
    reader = _records(stripped, what)
    header = [h.strip() for h in next(reader, [])]
    if header[:5] != CSV_HEADER:
        raise MalformedInput(f"{what}: unexpected header {','.join(header)[:80]!r}")
    has_volume = len(header) > 5 and header[5] == "Volume"
    found: dict[date, Candle] = {}
    for line, row in enumerate(reader, start=2):
        if not row:
            continue
        try:
            day = date.fromisoformat(row[0])
            o, h, lo, c = (float(x) for x in row[1:5])
            volume = float(row[5]) if has_volume and len(row) > 5 and row[5] else 0.0
        except (ValueError, IndexError) as e:
            raise MalformedInput(f"{what}: line {line} unreadable: {','.join(row)[:80]!r}") from e
        if problem := bar_problem(o, h, lo, c, volume) or (day > latest and "a day ahead"):
            raise MalformedInput(f"{what}: line {line} is no bar ({problem})")
        found[day] = Candle(
            asset=asset,
            interval="1d",
            ts=datetime(day.year, day.month, day.day, tzinfo=UTC),
            open=o,
            high=h,
            low=lo,
            close=c,
            volume=volume,
        )
    return [found[d] for d in sorted(found)]


def _records(text: str, what: str) -> Iterator[list[str]]:
    """The CSV records of ``text``.

    Raises:
        MalformedInput: csv cannot read a record (say, a quote left open, a NUL).
    """
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        yield from reader
    except csv.Error as e:
        raise MalformedInput(f"{what}: line {reader.line_num} is not CSV ({e})") from None


def _check_body(response: httpx.Response, what: str) -> str:
    """The body of a 200 answer, unless it is one of Stooq's non-CSV pages."""
    text = response.text
    head = text.lstrip()[:200].lower()
    # Judge by the body, not the content type: Stooq's CSV and its "No data" are plain text
    # whatever the header says, and its key page and challenge are HTML.
    if head.startswith("<"):
        raise SourceUnavailable(
            f"{what}: stooq answered with an HTML page instead of CSV; it now requires an API "
            "key (get one at https://stooq.com/q/d/?s=spy.us&get_apikey) or is challenging "
            "this client"
        )
    if head.startswith("exceeded the daily hits limit"):
        raise SourceUnavailable(f"{what}: stooq's daily request limit is used up")
    return text
