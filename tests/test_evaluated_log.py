"""The index's DEBUG line "index evaluated to MINUTE at WALL" after each committed tick and
batch of minutes: scripts/bench_workers.py times each message's minute by it."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.pipeline.config import PipelineConfig
from bot.pipeline.ticks import IndexEngine
from bot.store import MINUTE_CHECKPOINT, TICK_CHECKPOINT, ScoredRow, Store, iso, parse_ts

H = datetime(2026, 3, 1, 12, tzinfo=UTC)
LINE = re.compile(r"index evaluated to (\S+) at (\S+)")


def post(key: str, at: datetime) -> ScoredRow:
    return ScoredRow(
        key=key,
        created_at=at,
        author="u1",
        community="c",
        platform="replay",
        polarity=0.5,
        engagement=0,
        spam=False,
        set_aside=False,
        public=True,
        text="$btc up",
        assets=("BTC",),
    )


def lines(caplog: pytest.LogCaptureFixture) -> list[tuple[datetime, datetime]]:
    found = [LINE.fullmatch(r.getMessage()) for r in caplog.records]
    return [(parse_ts(m[1]), parse_ts(m[2])) for m in found if m]


def test_each_commit_of_the_index_is_logged_with_its_message_time_and_wall_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "m.db")
    eng = IndexEngine(store, PipelineConfig(assets=("BTC",)))
    caplog.set_level(logging.DEBUG, logger="bot.pipeline.ticks")
    before = datetime.now(UTC)
    eng.add([post("a", H + timedelta(seconds=10)), post("b", H + timedelta(minutes=3))])
    eng.advance(H + timedelta(minutes=5))
    after = datetime.now(UTC)
    logged = lines(caplog)
    # The minutes of both posts (12:01 and 12:03), then no tick (13:00 is not due yet).
    assert [m for m, _ in logged] == [H + timedelta(minutes=3)]
    assert all(before - timedelta(milliseconds=1) <= wall <= after for _, wall in logged)
    assert store.checkpoint(MINUTE_CHECKPOINT) == iso(H + timedelta(minutes=3))
    # An hourly tick logs its hour, as committed with the tick checkpoint.
    eng.tick(H + timedelta(hours=1))
    assert [m for m, _ in lines(caplog)][-1] == H + timedelta(hours=1)
    assert store.checkpoint(TICK_CHECKPOINT) == iso(H + timedelta(hours=1))


def test_no_line_below_debug(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    eng = IndexEngine(Store(tmp_path / "m.db"), PipelineConfig(assets=("BTC",)))
    caplog.set_level(logging.INFO, logger="bot.pipeline.ticks")
    eng.add([post("a", H + timedelta(seconds=10))])
    eng.advance(H + timedelta(minutes=5))
    assert lines(caplog) == []
