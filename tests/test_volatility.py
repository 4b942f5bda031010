"""VolatilityFeed against a fake Deribit on 127.0.0.1: the real ccxt client over real HTTP."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.errors import MalformedInput, SourceUnavailable
from connectors.types import VolatilityIndex
from connectors.volatility import VolatilityFeed
from tests.fake_deribit import DVOL_PATH, FakeDeribit, dvol_rows, hours_ago

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)


class Sleeps(list[float]):
    """Records the waits the feed asks for instead of waiting."""

    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def fake() -> Iterator[FakeDeribit]:
    server = FakeDeribit()
    server.start()
    yield server
    server.stop()


def with_feed(
    fake: FakeDeribit,
    body: Callable[[VolatilityFeed], Awaitable[Any]],
    sleeps: Sleeps | None = None,
    **kwargs: Any,
) -> Any:
    async def main() -> Any:
        feed = VolatilityFeed(
            api_url=fake.base_url,
            timeout_ms=3000,
            sleep=sleeps if sleeps is not None else Sleeps(),
            rng=random.Random(3),
            clock=lambda: NOW,
            **kwargs,
        )
        feed.exchange.timeout_on_exit = 0  # no TLS to shut down on plain loopback HTTP
        async with feed:
            return await body(feed)

    return asyncio.run(main())


def levels(bars: list[VolatilityIndex]) -> list[tuple[float, float, float, float]]:
    return [(b.open, b.high, b.low, b.close) for b in bars]


def test_hourly_dvol_rows_become_closed_bars_oldest_first(fake: FakeDeribit) -> None:
    rows = dvol_rows(hours_ago(NOW, 24), "3600", 25)  # the last one opens this hour: still open
    fake.bars[("BTC", "3600")] = rows
    since = hours_ago(NOW, 24)
    bars = with_feed(fake, lambda feed: feed.dvol("BTC", "1h", since=since))
    assert [b.ts for b in bars] == [since + i * HOUR for i in range(24)]
    assert levels(bars) == [tuple(r[1:5]) for r in rows[:24]]
    assert {(b.asset, b.interval, b.source) for b in bars} == {("BTC", "1h", "deribit")}
    (call,) = fake.calls()
    assert call.params["currency"] == "BTC" and call.params["resolution"] == "3600"
    assert int(call.params["start_timestamp"]) == int(since.timestamp() * 1000)
    assert int(call.params["end_timestamp"]) < int(NOW.timestamp() * 1000)
    assert fake.requests == fake.calls()  # the implicit method loads no markets


def test_daily_dvol_of_eth_uses_deribits_1d_resolution(fake: FakeDeribit) -> None:
    midnight = NOW.replace(hour=0, minute=0)
    fake.bars[("ETH", "1D")] = dvol_rows(midnight - 10 * DAY, "1D", 11, level=70.0)
    bars = with_feed(fake, lambda feed: feed.dvol("eth", "1d", since=midnight - 10 * DAY))
    assert [b.ts for b in bars] == [midnight - (10 - i) * DAY for i in range(10)]  # not today's
    assert {b.interval for b in bars} == {"1d"} and bars[0].open == 70.0
    assert fake.calls()[0].params["resolution"] == "1D"


def test_the_continuation_is_followed_back_to_the_start(fake: FakeDeribit) -> None:
    fake.page_size = 10
    since = hours_ago(NOW, 35)
    fake.bars[("BTC", "3600")] = dvol_rows(since, "3600", 35)
    bars = with_feed(fake, lambda feed: feed.dvol("BTC", "1h", since=since))
    assert [b.ts for b in bars] == [since + i * HOUR for i in range(35)]
    ends = [int(c.params["end_timestamp"]) for c in fake.calls()]
    assert len(ends) == 4 and ends == sorted(ends, reverse=True)  # each page older than the last


def test_a_continuation_that_does_not_move_back_ends_the_paging(fake: FakeDeribit) -> None:
    start = int(hours_ago(NOW, 5).timestamp() * 1000)
    fake.result = {"data": dvol_rows(hours_ago(NOW, 3), "3600", 2), "continuation": 10**13}
    bars = with_feed(fake, lambda feed: feed.dvol("BTC", "1h", since=hours_ago(NOW, 5)))
    assert len(bars) == 2 and len(fake.calls()) == 1
    fake.result = {"data": [], "continuation": start - 1}  # before the span: nothing more to ask
    assert with_feed(fake, lambda feed: feed.dvol("BTC", "1h", since=hours_ago(NOW, 5))) == []
    assert len(fake.calls()) == 2


@pytest.mark.parametrize(
    "bad",
    [
        "NaN",  # a level that is no number
        "abc",
        -5.0,  # negative
        None,
        "1e400",  # infinite
    ],
)
def test_a_row_with_a_bad_level_is_skipped_and_counted(fake: FakeDeribit, bad: Any) -> None:
    rows = dvol_rows(hours_ago(NOW, 3), "3600", 3)
    rows[1] = [rows[1][0], bad, *rows[1][2:]]
    fake.bars[("BTC", "3600")] = rows

    async def body(feed: VolatilityFeed) -> tuple[list[VolatilityIndex], int]:
        return await feed.dvol("BTC", "1h", since=hours_ago(NOW, 3)), feed.malformed

    bars, malformed = with_feed(fake, body)
    assert [b.ts for b in bars] == [hours_ago(NOW, 3), hours_ago(NOW, 1)]
    assert malformed == 1


def test_rows_that_are_no_bars_are_skipped_and_counted(
    fake: FakeDeribit, caplog: pytest.LogCaptureFixture
) -> None:
    good = dvol_rows(hours_ago(NOW, 4), "3600", 2)
    t = int(hours_ago(NOW, 2).timestamp() * 1000)
    fake.result = {
        "data": [
            good[0],
            [t, 50.0, 49.0, 51.0, 50.0],  # high below low
            [t, 50.0, 51.0],  # short
            "50.0",  # not a row
            [None, 50.0, 51.0, 49.0, 50.0],  # no time
            [int((NOW + DAY).timestamp() * 1000), 50.0, 51.0, 49.0, 50.0],  # ahead of the clock
            [0, 50.0, 51.0, 49.0, 50.0],  # 1970
            [10**20, 50.0, 51.0, 49.0, 50.0],  # past any calendar
            good[1],
        ],
        "continuation": None,
    }

    async def body(feed: VolatilityFeed) -> tuple[list[VolatilityIndex], int]:
        return await feed.dvol("BTC", "1h", since=hours_ago(NOW, 6)), feed.malformed

    bars, malformed = with_feed(fake, body)
    assert [b.ts for b in bars] == [hours_ago(NOW, 4), hours_ago(NOW, 3)]
    assert malformed == 7
    assert "bad BTC 1h DVOL row" in caplog.text


def test_an_answer_without_data_is_malformed_input(fake: FakeDeribit) -> None:
    fake.result = {"continuation": None}
    with pytest.raises(MalformedInput, match=r"result\.data"):
        with_feed(fake, lambda feed: feed.dvol("BTC"))


def test_network_errors_are_retried_with_backoff(fake: FakeDeribit) -> None:
    fake.bars[("BTC", "3600")] = dvol_rows(hours_ago(NOW, 2), "3600", 2)
    fake.fail_next(503, times=2)
    sleeps = Sleeps()

    async def body(feed: VolatilityFeed) -> tuple[list[VolatilityIndex], int, Any]:
        bars = await feed.dvol("BTC", "1h", since=hours_ago(NOW, 2))
        return bars, feed.errors, feed.last_ok_at

    bars, errors, last_ok = with_feed(fake, body, sleeps=sleeps, base_delay_s=1.0)
    assert len(bars) == 2 and errors == 2 and last_ok == NOW
    assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0
    assert len(fake.calls()) == 3


def test_a_deribit_that_keeps_failing_is_source_unavailable(fake: FakeDeribit) -> None:
    fake.fail_next(503, times=3)
    with pytest.raises(SourceUnavailable, match="3 times"):
        with_feed(fake, lambda feed: feed.dvol("BTC"), max_attempts=3)


@pytest.mark.parametrize(("asset", "interval"), [("SOL", "1h"), ("BTC", "5m")])
def test_what_deribit_does_not_publish_is_a_value_error(
    fake: FakeDeribit, asset: str, interval: str
) -> None:
    with pytest.raises(ValueError):
        with_feed(fake, lambda feed: feed.dvol(asset, interval))
    assert fake.requests == []


def test_the_api_url_repoints_deribits_rest_url(fake: FakeDeribit) -> None:
    url = with_feed(fake, lambda feed: _rest_url(feed))
    assert url == fake.base_url
    assert DVOL_PATH.startswith("/api/v2/public/")


async def _rest_url(feed: VolatilityFeed) -> str:
    return str(feed.exchange.urls["api"]["rest"])


def test_a_refused_request_is_not_retried(fake: FakeDeribit) -> None:
    fake.fail_next(400, times=5)
    with pytest.raises(SourceUnavailable):
        with_feed(fake, lambda feed: feed.dvol("BTC"))
    assert len(fake.calls()) == 1
