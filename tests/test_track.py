"""The track record (#17): outcomes and statistics on constructed series, a planted edge found
and noise called "no edge", no look-ahead (in the measure, the market replay and a live
alert's line), and `moodring track` on the bundled history."""

from __future__ import annotations

import csv
import json
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from bot.app.cli import main
from bot.chat.charts import PNG_SIGNATURE
from bot.market.alerts import MarketAlertParams, level_alerts
from bot.market.candles import bundled_path, closed_by, read_candles_csv
from bot.store import Store
from bot.track.hypotheses import BY_KIND, HORIZONS, HYPOTHESES, case_kind
from bot.track.record import TrackRecord, record_line
from bot.track.replay import replay_market
from bot.track.stats import (
    Prices,
    block_bootstrap,
    measure,
    outcomes,
    verdict,
)
from connectors.types import Candle
from tests.doubles import RecordingSink
from tests.test_pipeline_e2e import run_once, write_stream

START = datetime(2020, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


def bars(closes: list[float] | np.ndarray, start: datetime = START) -> list[Candle]:
    return [
        Candle(
            "BTC", "1d", start + i * DAY, float(c), float(c) * 1.01, float(c) * 0.99, float(c), 1e3
        )
        for i, c in enumerate(closes)
    ]


def walk(days: int, seed: int, planted: list[int] = (), lift: float = 0.0) -> np.ndarray:
    """A random walk of daily closes; after each planted day the next 7 closes rise by
    ``lift`` each (in log terms)."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 0.03, days)
    for day in planted:
        steps[day + 1 : day + 8] += lift
    return 100.0 * np.exp(np.cumsum(steps))


def close_time(i: int) -> datetime:
    """When bar ``i`` of ``bars`` closes."""
    return START + (i + 1) * DAY


def test_outcomes_of_a_constructed_series_and_a_gap_is_missing_data() -> None:
    closes = [100 * 1.01**i for i in range(60)]
    out = outcomes(Prices.of(bars(closes)), 7)
    assert np.allclose(out.returns[:53], 1.01**7 - 1)
    assert np.allclose(out.volatility[:53], math.sqrt(365) * math.log(1.01))
    assert np.isnan(out.returns[53:]).all() and np.isnan(out.exits[53:]).all()
    # Days 20..39 missing: a horizon that would span the hole is not measured as a long one.
    gappy = bars(closes[:20]) + bars(closes[40:], START + 40 * DAY)
    out = outcomes(Prices.of(gappy), 7)
    assert np.isfinite(out.returns[:13]).all() and np.isnan(out.returns[13:20]).all()
    with pytest.raises(ValueError, match="positive"):
        Prices.of(bars([100.0, 0.0, 101.0]))


def test_a_planted_edge_is_found_noise_is_no_edge_and_few_cases_say_so() -> None:
    planted = list(range(60, 1400, 45))  # 30 cases
    prices = Prices.of(bars(walk(1500, seed=3, planted=planted, lift=0.02)))
    out = outcomes(prices, 7)
    at = [close_time(i) - timedelta(hours=3) for i in planted]  # intraday: enters at close i
    end = datetime.fromtimestamp(prices.times[-1], UTC)
    up, down = BY_KIND["level-up"], BY_KIND["level-down"]

    found = measure(prices, out, at, START, end, end, up)
    assert found.n == 30 and found.hit is not None and found.hit > 0.9
    assert found.ret is not None and found.ret.median == pytest.approx(math.exp(0.14) - 1, abs=0.1)
    assert found.ci is not None and found.ci[0] > 0.05
    assert verdict(found, up) == "edge, as hypothesised"
    assert verdict(measure(prices, out, at, START, end, end, down), down) == (
        "edge against the hypothesis"
    )
    line = record_line("BTC", up, found)
    assert line.startswith("track record: after the 30 past BTC breaks up through resistance")
    assert "edge, as hypothesised" in line

    noise = Prices.of(bars(walk(1500, seed=4)))
    plain = measure(noise, outcomes(noise, 7), at, START, end, end, up)
    assert plain.n == 30 and plain.ci is not None and plain.ci[0] <= 0 <= plain.ci[1]
    assert verdict(plain, up) == "no edge" and "no edge (difference" in record_line(
        "BTC", up, plain
    )

    few = measure(prices, out, at[:9], START, end, end, up)
    assert few.n == 9 and few.ci is None and verdict(few, up) == "too few cases"
    assert "too few cases (9 past BTC" in record_line("BTC", up, few)


def test_the_block_bootstrap_widens_for_overlapping_horizons_and_is_reproducible() -> None:
    prices = Prices.of(bars(walk(2000, seed=5)))
    values = outcomes(prices, 30).returns
    values = values[np.isfinite(values)]
    cases = np.zeros(len(values), dtype=bool)
    for start in range(100, 1900, 300):  # alerts come in clusters of consecutive days
        cases[start : start + 5] = True
    iid = block_bootstrap(values, cases, block=1)
    blocks = block_bootstrap(values, cases, block=30)
    assert iid is not None and blocks is not None
    assert blocks[1] - blocks[0] > 1.5 * (iid[1] - iid[0])
    assert block_bootstrap(values, cases, block=30) == blocks  # seeded
    assert block_bootstrap(values[:100], cases[:100], block=30) is None  # under 5 blocks


def test_the_measure_reads_nothing_after_now() -> None:
    closes = walk(1200, seed=6)
    cases = [close_time(i) for i in range(50, 1150, 20)]
    now = close_time(800)
    changed = closes.copy()
    changed[801:] *= np.exp(np.random.default_rng(7).normal(0, 0.2, len(closes) - 801))  # after now
    for hypothesis in (BY_KIND["level-up"], BY_KIND["swing"], BY_KIND["composite-extreme-fear"]):
        got = []
        for series in (closes, changed):
            prices = Prices.of(bars(series))
            out = outcomes(prices, hypothesis.horizon)
            got.append(measure(prices, out, cases, START, now, now, hypothesis))
        assert got[0] == got[1] and got[0].n > 10
        # Only cases whose horizon closed by now count.
        assert got[0].n == sum(
            1 for t in cases if t + (hypothesis.horizon + 1) * DAY <= now + DAY and t < now
        )


@pytest.fixture(scope="module")
def btc() -> list[Candle]:
    return read_candles_csv(bundled_path("BTC"), "BTC", "1d").candles


def test_the_market_replay_sees_only_closed_candles(btc: list[Candle]) -> None:
    start, alerts = replay_market("BTC", btc)
    assert start is not None and len(alerts) > 300
    kinds = {case_kind(a) for a in alerts}
    assert kinds == {"level-up", "level-down", "composite-extreme-fear", "composite-extreme-greed"}
    # A replay cut at a close raises exactly the full replay's alerts up to that close.
    cut = btc[:2200]
    end = cut[-1].ts + DAY
    _, early = replay_market("BTC", cut)
    assert early == [a for a in alerts if a.at <= end]
    # One level_alerts call over the span gives what the live rules' daily calls give.
    params = MarketAlertParams()
    stretch = [c.ts + DAY for c in btc[2160:2200]]
    daily = []
    for close in stretch:
        daily += level_alerts("BTC", closed_by(btc, close), close - DAY, close, None, None, params)
    replayed = [a for a in alerts if case_kind(a) in ("level-up", "level-down")]
    assert daily and daily == [a for a in replayed if stretch[0] - DAY < a.at <= stretch[-1]]


def test_a_live_alerts_line_uses_only_prices_and_alerts_closed_by_its_time(
    tmp_path: Path, btc: list[Candle]
) -> None:
    _, alerts = replay_market("BTC", btc)
    alert = [a for a in alerts if case_kind(a) == "composite-extreme-fear"][-1]
    lines = []
    for name, candles in (("then", closed_by(btc, alert.at)), ("later", btc)):
        store = Store(tmp_path / f"{name}.db")
        store.add_candles(candles, "test")
        lines.append(TrackRecord(store).line(alert))
        store.close()
    assert lines[0] == lines[1]
    closed = [
        a
        for a in alerts
        if case_kind(a) == "composite-extreme-fear" and a.at + 31 * DAY <= alert.at
    ]
    assert f"after the {len(closed)} past BTC composite extreme-fear entries" in lines[0]
    assert "30-day return" in lines[0]
    # A live composite alert is market-v2's; its record is market-v1's replay, and says so.
    store = Store(tmp_path / "later.db")
    live = replace(alert, detail="components: volatility 23, momentum 2 (market-v2)")
    assert TrackRecord(store).line(live).startswith("track record (market-v1, price only): after")
    store.close()
    assert TrackRecord(Store(tmp_path / "empty.db")).line(alert) == (
        "track record: none yet (no daily prices of BTC)"
    )


@pytest.mark.sqlite_only
def test_track_cli_table_csv_chart_and_json(
    tmp_path: Path, tiny_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stream, db = tmp_path / "posts.jsonl", tmp_path / "m.db"
    write_stream(stream)
    run_once(db, stream, tiny_model_dir, RecordingSink())
    out, png = tmp_path / "track.csv", tmp_path / "track.png"
    assert main(["track", "--db", str(db), "--out", str(out), "--chart", str(png)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    summary = json.loads(lines[-1])
    assert summary["asset"] == "BTC" and summary["replay_from"].startswith("2015-09-18")
    assert summary["stored_from"] is not None and set(summary["kinds"]) == set(BY_KIND)
    level = summary["kinds"]["level-up"]
    assert level["cases"] > 300 and level["verdict"] in ("no edge", "edge, as hypothesised")
    assert level["primary"]["ci"][0] < level["primary"]["ci"][1]
    assert any(line.startswith("level break up") for line in lines)
    assert any(line.startswith("level break up: after the") for line in lines)
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    measured = [h for h in HYPOTHESES if summary["kinds"][h.kind]["verdict"] != h.pending]
    assert len(rows) >= len(HORIZONS) * sum(1 for h in measured if h.replayed)
    assert {r["kind"] for r in rows} == set(BY_KIND)

    assert main(["track", "--no-social", "--chart", str(png)]) == 0
    social = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["kinds"]["hype"]
    assert social["cases"] == 0 and social["verdict"] == "not measured (--no-social)"
    assert main(["track", "--db", str(tmp_path / "none.db")]) == 2
