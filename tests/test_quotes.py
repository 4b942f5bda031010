"""StooqQuotes over an httpx MockTransport: the network boundary replaced, the client code real."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from datetime import UTC, date, datetime

import httpx
import pytest

from connectors.errors import MalformedInput, SourceUnavailable
from connectors.quotes import QuoteProvider, StooqQuotes, parse_csv
from connectors.types import Candle

IGV_CSV = (
    "Date,Open,High,Low,Close,Volume\r\n"
    "2026-01-05,98.1,99.4,97.6,99.02,4120345\r\n"
    "2026-01-06,99.0,100.2,98.7,100.11,3890211\r\n"
    "2026-01-07,100.0,100.5,98.9,99.3,4501220\r\n"
)
KEY_PAGE = (
    "<!DOCTYPE html><html><head><title>stooq</title></head><body>"
    "To download data, request an API key: get_apikey</body></html>"
)
Handler = Callable[[httpx.Request], httpx.Response]


class Sleeps(list[float]):
    """Records the waits asked for instead of waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def scripted(*answers: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler that answers each request with the next of ``answers`` (the last repeats)."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = answers[min(len(seen), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


def daily(
    handler: Handler, symbol: str, since: date, sleeps: Sleeps | None = None, **kwargs: object
) -> list[Candle]:
    async def main() -> list[Candle]:
        async with StooqQuotes(
            "https://stooq.test/",
            transport=httpx.MockTransport(handler),
            sleep=sleeps if sleeps is not None else Sleeps(),
            rng=random.Random(3),
            **kwargs,  # type: ignore[arg-type]
        ) as quotes:
            return await quotes.daily(symbol, since)

    return asyncio.run(main())


def csv_answer(text: str) -> httpx.Response:
    # Stooq serves its CSV as a download.
    return httpx.Response(
        200,
        text=text,
        headers={
            "content-type": "application/octet-stream",
            "content-disposition": "attachment; filename=igv_us_d.csv",
        },
    )


def test_stooq_is_a_quote_provider() -> None:
    assert isinstance(StooqQuotes(), QuoteProvider)


def test_csv_becomes_daily_candles_from_since_on() -> None:
    handler, seen = scripted(csv_answer(IGV_CSV))
    got = daily(handler, "IGV", date(2026, 1, 6), api_key="k3y")

    assert [(c.ts, c.close) for c in got] == [
        (datetime(2026, 1, 6, tzinfo=UTC), 100.11),
        (datetime(2026, 1, 7, tzinfo=UTC), 99.3),
    ]
    first = got[0]
    assert (first.asset, first.interval, first.open, first.high, first.low, first.volume) == (
        "IGV",
        "1d",
        99.0,
        100.2,
        98.7,
        3890211.0,
    )
    (request,) = seen
    assert (request.url.host, request.url.path) == ("stooq.test", "/q/d/l/")
    assert dict(request.url.params) == {"s": "igv.us", "i": "d", "d1": "20260106", "apikey": "k3y"}


def test_symbols_map_to_stooq_tickers() -> None:
    quotes = StooqQuotes()
    assert [quotes.ticker_of(s) for s in ("QQQ", "gld", "spy.us", "^SPX")] == [
        "qqq.us",
        "gld.us",
        "spy.us",
        "^spx",
    ]
    with pytest.raises(MalformedInput, match="not a ticker symbol"):
        quotes.ticker_of("igv&apikey=x")


def test_no_data_is_a_clear_error() -> None:
    handler, seen = scripted(httpx.Response(200, text="No data"))
    with pytest.raises(MalformedInput, match=r"stooq has no data for IGVX \(igvx.us\) since"):
        daily(handler, "IGVX", date(2026, 1, 1))
    assert len(seen) == 1  # not retried


def test_an_html_page_says_an_api_key_is_needed() -> None:
    handler, seen = scripted(
        httpx.Response(200, text=KEY_PAGE, headers={"content-type": "text/html"})
    )
    with pytest.raises(SourceUnavailable, match="HTML page instead of CSV; it now requires an API"):
        daily(handler, "SPY", date(2026, 1, 1))
    assert len(seen) == 1


def test_daily_limit_is_not_retried() -> None:
    handler, seen = scripted(httpx.Response(200, text="Exceeded the daily hits limit"))
    with pytest.raises(SourceUnavailable, match="daily request limit"):
        daily(handler, "GLD", date(2026, 1, 1))
    assert len(seen) == 1


def test_5xx_and_timeouts_are_retried_with_backoff() -> None:
    handler, seen = scripted(
        httpx.Response(503, text="busy"),
        httpx.ReadTimeout("read timed out"),
        httpx.Response(429, text="slow down", headers={"Retry-After": "9"}),
        csv_answer(IGV_CSV),
    )
    sleeps = Sleeps()
    got = daily(handler, "IGV", date(2026, 1, 1), sleeps)
    assert len(got) == 3 and len(seen) == 4
    assert {str(r.url) for r in seen} == {str(seen[0].url)}  # the same request each time
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0  # exponential with jitter
    assert sleeps[2] == 9.0  # Retry-After outweighs the 2-4 s step


def test_persistent_5xx_becomes_source_unavailable() -> None:
    handler, seen = scripted(httpx.Response(500, text="oops"))
    with pytest.raises(SourceUnavailable, match="failed 3 times in a row; last: HTTP 500"):
        daily(handler, "QQQ", date(2026, 1, 1), max_attempts=3)
    assert len(seen) == 3


def test_a_4xx_is_not_retried() -> None:
    handler, seen = scripted(httpx.Response(404, text="not here"))
    with pytest.raises(SourceUnavailable, match="HTTP 404"):
        daily(handler, "QQQ", date(2026, 1, 1))
    assert len(seen) == 1


def test_a_broken_row_names_its_line() -> None:
    broken = IGV_CSV + "2026-01-08,99.3,,98.0,98.5,100\r\n"
    handler, _ = scripted(csv_answer(broken))
    with pytest.raises(MalformedInput, match="line 5 unreadable"):
        daily(handler, "IGV", date(2026, 1, 1))


def test_csv_without_volume_and_out_of_order_rows() -> None:
    text = "Date,Open,High,Low,Close\n2026-01-07,3,4,2,3.5\n2026-01-05,1,2,0.5,1.5\n"
    got = parse_csv(text, asset="^SPX")
    assert got is not None
    assert [(c.ts.day, c.close, c.volume) for c in got] == [(5, 1.5, 0.0), (7, 3.5, 0.0)]
    with pytest.raises(MalformedInput, match="unexpected header"):
        parse_csv("Datum,Otwarcie\n", asset="X")
