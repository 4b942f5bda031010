"""Price history into the store: CSV import, exchange backfill (ccxt against the loopback
fake Binance), the polling loop with tickers, and the bundled reference closes."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from bot.app.cli import main
from bot.market.candles import BUNDLED, daily_closes, load_bundled, read_candles_csv
from bot.pipeline.feeds import run_prices
from bot.store import Store
from connectors.exchange import ExchangeFeed, build_exchange
from tests.fake_exchange import TOO_MANY, FakeBinance, make_klines, premium_index, ticker_24hr

START = datetime(2023, 1, 1, tzinfo=UTC)


@pytest.fixture
def fake(fake_binance: FakeBinance) -> FakeBinance:
    """This module's name for the shared fake Binance (tests/conftest.py)."""
    return fake_binance


def test_csv_import_reads_daily_and_hourly_files_and_skips_bad_rows(tmp_path: Path) -> None:
    daily = tmp_path / "d.csv"
    daily.write_text(
        "date,open,high,low,close,volume\n"
        "2024-01-02,10,12,9,11,5\n"
        "2024-01-01,9,10,8,10,4\n"  # out of order: sorted
        "2024-01-03,11,10,9,12,5\n"  # high below close: not a bar
        "2024-01-04,x,1,1,1,1\n"
    )
    got = read_candles_csv(daily, "BTC")
    assert [c.ts.day for c in got.candles] == [1, 2] and got.candles[0].interval == "1d"
    assert got.skipped == 2 and "line 4" in got.first_error
    hourly = tmp_path / "h.csv"
    hourly.write_text(
        "time,open,high,low,close,volume\n"
        "2023-01-01T00:00:00Z,1,2,1,2,1\n2023-01-01T01:00:00Z,2,3,2,3,1\n"
    )
    assert read_candles_csv(hourly, "BTC").candles[1].interval == "1h"


def test_prices_import_cli_is_idempotent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "p.db"
    src = Path(__file__).resolve().parents[1] / "bot" / "demo_data" / "btc_usd_daily.csv"
    for _ in range(2):
        assert main(["--db", str(db), "prices", "import", str(src), "--asset", "btc"]) == 0
    out = capsys.readouterr().out
    assert "BTC 1d: 4327 candles stored, 2014-09-17 00:00 → 2026-07-22 00:00" in out
    store = Store(db)
    try:
        assert store.query("SELECT COUNT(*) FROM prices WHERE asset = 'BTC'") == [(4327,)]
    finally:
        store.close()
    assert main(["--db", str(db), "prices", "import", str(tmp_path / "none.csv")]) == 2


def test_an_implied_volatility_index_imports_beside_the_prices(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """DVOL from a CSV (#17): stored as implied volatility, never as a price."""
    db, src = tmp_path / "iv.db", tmp_path / "dvol.csv"
    src.write_text("date,open,high,low,close\n2026-02-04,70,99,68,97.5\n2026-02-05,97,98,90,91\n")
    argv = ["--db", str(db), "prices", "import", str(src), "--asset", "BTC", "--implied-vol"]
    assert main(argv) == 0
    assert "BTC 1d: 2 implied-volatility bars stored" in capsys.readouterr().out
    store = Store(db)
    try:
        since = datetime(2026, 2, 1, tzinfo=UTC)
        bars = store.implied_vol("BTC", "1d", since, since + timedelta(days=10))
        assert [b.close for b in bars] == [97.5, 91.0] and bars[0].source == "dvol.csv"
        assert store.query("SELECT COUNT(*) FROM prices") == [(0,)]
    finally:
        store.close()


def test_prices_backfill_cli_pages_through_the_exchange_and_survives_a_429(
    tmp_path: Path,
    fake: FakeBinance,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake.klines[("BTCUSDT", "1d")] = make_klines(START, "1d", 1500)  # more than one page
    fake.fail_next(TOO_MANY)
    monkeypatch.setenv("MOODRING_PRICE_API_URL", fake.base_url)
    db = tmp_path / "b.db"
    argv = ["--db", str(db), "prices", "backfill", "BTC", "--since", "2023-01-01"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    store = Store(db)
    try:
        candles = store.candles("BTC", "1d")
    finally:
        store.close()
    # Every closed bar up to now, once, without gaps; the open bar of today is not stored.
    now = datetime.now(UTC)
    closed = (now - START).days
    assert len(candles) == min(closed, 1500)
    assert all(b.ts - a.ts == timedelta(days=1) for a, b in pairwise(candles))
    assert f"BTC 1d: {len(candles)} candles stored, 2023-01-01" in out
    assert len(fake.calls("/api/v3/klines")) >= 2  # 1,000 bars a page
    # A rerun fetches only what is newer than the stored history.
    assert main(["--db", str(db), "prices", "backfill", "BTC"]) == 0
    assert "BTC 1d: 0 candles stored" in capsys.readouterr().out


def test_unknown_exchange_and_unlisted_asset_are_clear_errors(
    tmp_path: Path, fake: FakeBinance, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = str(tmp_path / "e.db")
    assert main(["--db", db, "prices", "backfill", "BTC", "--exchange", "nosuchx"]) == 2
    monkeypatch.setenv("MOODRING_PRICE_API_URL", fake.base_url)
    assert main(["--db", db, "prices", "backfill", "BTCX"]) == 2


def test_the_polling_loop_stores_candles_and_tickers_and_resumes(
    tmp_path: Path, fake: FakeBinance
) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    fake.klines[("BTCUSDT", "1h")] = make_klines(now - timedelta(hours=30), "1h", 30)
    fake.klines[("BTCUSDT", "1d")] = make_klines(now - timedelta(days=40), "1d", 40)
    fake.tickers["BTCUSDT"] = ticker_24hr("BTCUSDT", 74680.0, -3.2, 1234.0, now)
    fake.premium["BTCUSDT"] = premium_index("BTCUSDT", 74650.0, -0.0001, now)
    store = Store(tmp_path / "poll.db")

    async def scenario() -> None:
        exchange = build_exchange("binance", api_url=fake.base_url, timeout_ms=2000)
        exchange.timeout_on_exit = 0
        stopping = asyncio.Event()
        feed = ExchangeFeed(exchange, rng=random.Random(1))
        async with feed:
            task = asyncio.create_task(run_prices(feed, store, ["BTC"], stopping, every_s=0.05))
            for _ in range(200):
                await asyncio.sleep(0.05)
                if store.latest_ticker("BTC") and store.newest_candle_time("BTC", "1h"):
                    break
            stopping.set()
            await task

    try:
        asyncio.run(scenario())
        hours = store.candles("BTC", "1h")
        assert 28 <= len(hours) <= 30 and hours[-1].ts < now
        assert len({c.ts for c in hours}) == len(hours)
        ticker = store.latest_ticker("BTC")
        assert ticker is not None and ticker.last == 74680.0 and ticker.funding_rate == -0.0001
        assert ticker.change_24h_pct == pytest.approx(-3.2)
        first_fetches = len(fake.calls("/api/v3/klines"))
        # A second run asks only for bars after the newest stored one (or nothing at all
        # when no newer bar can have closed yet).
        asyncio.run(scenario())
        later = fake.calls("/api/v3/klines")[first_fetches:]
        hourly = [r for r in later if r.params.get("interval") == "1h"]
        assert all(
            int(r.params["startTime"]) > int(hours[-1].ts.timestamp() * 1000) for r in hourly
        )
        assert len(store.candles("BTC", "1h")) == len(hours)
    finally:
        store.close()


def test_bundled_reference_closes_load_and_serve_a_fresh_database(tmp_path: Path) -> None:
    store = Store(tmp_path / "r.db")
    try:
        # Nothing stored: the bundled file answers (so /corr works on a fresh database).
        igv = daily_closes(store, "IGV", until=datetime(2026, 2, 27, tzinfo=UTC))
        assert igv[-1].ts.date().isoformat() == "2026-02-27" and igv[0].asset == "IGV"
        counts = load_bundled(store)
        assert set(counts) == set(BUNDLED) and counts["BTC"] == 4327
        assert load_bundled(store) == counts  # idempotent
        assert store.query("SELECT COUNT(*) FROM prices") == [(sum(counts.values()),)]
    finally:
        store.close()


def test_reference_quotes_are_refreshed_from_the_last_stored_day(tmp_path: Path) -> None:
    import httpx

    from bot.pipeline.feeds import refresh_quotes
    from connectors.quotes import StooqQuotes

    csv_body = "Date,Open,High,Low,Close,Volume\r\n" + "".join(
        f"2026-07-{d:02d},{100 + d},{101 + d},{99 + d},{100.5 + d},1000\r\n" for d in (23, 24, 27)
    )
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.params["s"] == "gld.us":
            return httpx.Response(200, text="No data")  # one symbol failing: the rest go on
        return httpx.Response(200, text=csv_body)

    store = Store(tmp_path / "q.db")
    try:
        load_bundled(store, ["IGV"])  # stored to 2026-07-22

        async def scenario() -> None:
            stopping = asyncio.Event()
            async with StooqQuotes(
                "https://stooq.test", "key", transport=httpx.MockTransport(handler)
            ) as quotes:
                task = asyncio.create_task(
                    refresh_quotes(quotes, store, ["IGV", "GLD"], stopping, every_s=3600)
                )
                for _ in range(100):
                    await asyncio.sleep(0.01)
                    if len(seen) >= 2:
                        break
                stopping.set()
                await task

        asyncio.run(scenario())
        igv = store.candles("IGV", "1d")
        assert igv[-1].ts.date().isoformat() == "2026-07-27" and len(igv) == 3156 + 3
        assert seen[0].url.params["d1"] == "20260722"  # from the last stored day
        assert store.candles("GLD", "1d") == []
    finally:
        store.close()
