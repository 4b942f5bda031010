"""`moodring backtest`: the composite over the bundled history, the social mood joined in,
lead/lag with confidence intervals, the CSV and chart, and a JSON summary last."""

from __future__ import annotations

import csv
import json
import math
import random
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest

from bot.app.cli import main
from bot.chat.charts import PNG_SIGNATURE
from bot.market.backtest import follows_price, run_backtest, verdict
from connectors.types import Candle
from tests.doubles import RecordingSink
from tests.test_pipeline_e2e import run_once, write_stream


def walk(days: int, seed: int = 1) -> list[Candle]:
    rng = random.Random(seed)
    price, out = 100.0, []
    start = datetime(2020, 1, 1, tzinfo=UTC)
    for i in range(days):
        close = price * math.exp(rng.gauss(0, 0.03))
        hi, lo = max(price, close) * 1.01, min(price, close) * 0.99
        out.append(Candle("BTC", "1d", start + timedelta(days=i), price, hi, lo, close, 1000.0))
        price = close
    return out


def test_a_mood_that_leads_returns_is_found_and_one_that_does_not_is_not() -> None:
    candles = walk(500)
    closes = {c.ts.date(): c.close for c in candles}
    days = sorted(closes)
    returns = {b: closes[b] / closes[a] - 1 for a, b in pairwise(days)}
    # Mood today = tomorrow's return (plus noise): it leads by construction.
    rng = random.Random(2)
    leading = [
        (d, 50 + 500 * returns[d + timedelta(days=1)] + rng.gauss(0, 2)) for d in days[400:-1]
    ]
    result = run_backtest(candles, leading)
    nxt = next(c for c in result.returns if c.lag == 1)
    assert nxt.r is not None and nxt.r > 0.8 and nxt.ci_low > 0
    assert verdict(result.returns, "return").startswith("mood leads next-day return")
    # Mood from noise alone: the interval straddles zero and the report says so.
    noise = [(d, 50 + rng.gauss(0, 10)) for d in days[400:-1]]
    plain = run_backtest(candles, noise)
    assert verdict(plain.returns, "return").startswith(
        "on this data, social mood does not lead next-day return"
    )
    # Mood that follows yesterday's return is named as following price.
    following = [(d, 50 + 500 * returns[d - timedelta(days=1)]) for d in days[400:-1]]
    assert "mood follows price" in follows_price(run_backtest(candles, following).returns)


def test_composite_days_and_bands_add_up_and_the_social_mood_joins_in() -> None:
    candles = walk(500)
    day = candles[450].ts.date()
    result = run_backtest(candles, [(day, 90.0)])
    scored = [r for r in result.rows if r.composite is not None]
    assert 100 < len(scored) < 500  # a year of history first
    assert sum(result.bands.values()) == len(scored)
    joined = next(r for r in result.rows if r.day == day)
    assert joined.social == 90.0 and "social" in joined.components
    alone = run_backtest(candles, [])
    before = next(r for r in alone.rows if r.day == day)
    assert joined.composite > before.composite  # a greedy crowd lifts the composite


@pytest.fixture(scope="module")
def scored_db(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("backtest")
    stream = folder / "posts.jsonl"
    write_stream(stream)
    db = folder / "m.db"
    run_once(db, stream, tiny_model_dir, RecordingSink())
    return db


@pytest.mark.sqlite_only
def test_backtest_cli_report_csv_chart_and_json(
    scored_db: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, png = tmp_path / "daily.csv", tmp_path / "bt.png"
    argv = ["backtest", "--db", str(scored_db), "--out", str(out), "--chart", str(png)]
    assert main(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["asset"] == "BTC" and summary["version"] == "market-v1"
    assert summary["days"] > 3900 and sum(summary["bands"].values()) == summary["days"]
    assert summary["from"] == "2015-09-17" and summary["to"] == "2026-07-22"
    assert summary["social_days"] >= 2
    assert any(line.startswith("Market composite (market-v1) daily") for line in lines)
    assert any("Extreme Fear" in line and "%" in line for line in lines)
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows[0].keys() >= {"date", "close", "composite", "volatility", "social_mood"}
    assert len(rows) == 4327
    social = [r for r in rows if r["social_mood"]]
    assert len(social) == summary["social_days"]
    assert all(date.fromisoformat(r["date"]).year == 2022 for r in social)


def test_backtest_without_social_and_with_bad_inputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    png = tmp_path / "m.png"
    assert main(["backtest", "--no-social", "--chart", str(png)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["social_days"] == 0 and summary["mood_vs_return"] == []
    assert main(["backtest", "--db", str(tmp_path / "none.db")]) == 2
    assert main(["backtest", "--prices", str(tmp_path / "none.csv")]) == 2
