"""The minute alert rules on a dense scope (a firehose's alert window): re-evaluated once its
new messages reach a share of the window, or a wait passed, not every minute, so their cost
stays flat as the window fills; small scopes are still evaluated every minute with news."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.pipeline.config import PipelineConfig
from bot.pipeline.ticks import IndexEngine
from bot.store import MINUTE_CHECKPOINT, ScoredRow, Store, iso

H = datetime(2026, 3, 1, 12, tzinfo=UTC)
SCOPES = 2  # all sources, and BTC (the one asset configured)


def posts(first: int, n: int, at: datetime) -> list[ScoredRow]:
    return [
        ScoredRow(
            key=f"k{first + i}",
            created_at=at,
            author=f"u{(first + i) % 20}",
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
        for i in range(n)
    ]


def engine(tmp_path: Path, dense: int) -> IndexEngine:
    config = PipelineConfig(
        assets=("BTC",), dense_messages=dense, dense_share=0.05, dense_wait_s=900
    )
    return IndexEngine(Store(tmp_path / "m.db"), config)


def step(eng: IndexEngine, first: int, n: int, at: datetime) -> tuple[int, int]:
    """``n`` posts at ``at``, evaluated: how many scope evaluations ran and were deferred."""
    runs, deferred = eng.evaluations, eng.deferred
    eng.add(posts(first, n, at))
    eng.advance(at)
    return eng.evaluations - runs, eng.deferred - deferred


def test_a_dense_scope_waits_for_a_share_of_its_window_or_the_wait(tmp_path: Path) -> None:
    eng = engine(tmp_path, dense=100)
    # Two posts a minute for an hour: every minute is evaluated until the window holds 100,
    # then two posts (under 5 % of it) are put off.
    for m in range(60):
        step(eng, 2 * m, 2, H + timedelta(minutes=m))
    assert eng.evaluations + eng.deferred == SCOPES * 60
    assert eng.evaluations >= SCOPES * 49  # the window reached 100 posts at minute 50
    assert eng.deferred > 0
    # A burst of 10 (over 5 % of ~120) is evaluated at once, in both scopes.
    at = H + timedelta(minutes=61)
    assert step(eng, 1000, 10, at) == (SCOPES, 0)
    # Then one post a minute waits...
    assert step(eng, 2000, 1, at + timedelta(minutes=1)) == (0, SCOPES)
    assert step(eng, 2001, 1, at + timedelta(minutes=2)) == (0, SCOPES)
    # ...until its pending posts reach the share (1 + 1 + 5 = 7 ≥ 5 % of 130)...
    assert step(eng, 2002, 5, at + timedelta(minutes=3)) == (SCOPES, 0)
    # ...or 15 minutes passed since the last evaluation.
    assert step(eng, 3000, 1, at + timedelta(minutes=4)) == (0, SCOPES)
    assert step(eng, 3001, 1, at + timedelta(minutes=17)) == (0, SCOPES)
    assert step(eng, 3002, 1, at + timedelta(minutes=18)) == (SCOPES, 0)
    assert eng.sizes()["evaluated"] == SCOPES


def test_a_scope_under_the_density_is_evaluated_every_minute_with_news(tmp_path: Path) -> None:
    eng = engine(tmp_path, dense=10_000)
    for m in range(90):
        assert step(eng, 2 * m, 2, H + timedelta(minutes=m)) == (SCOPES, 0)
    assert eng.deferred == 0


def test_a_stop_ends_the_minute_backlog_after_the_minute_in_hand(tmp_path: Path) -> None:
    eng = engine(tmp_path, dense=10_000)
    for m in range(10):
        eng.add(posts(2 * m, 2, H + timedelta(minutes=m)))
    calls = 0

    def stop() -> bool:
        nonlocal calls
        calls += 1
        return calls > 2  # two minutes, then the run stops

    eng.stop = stop
    eng.advance(H + timedelta(minutes=9))
    assert eng.evaluations == SCOPES * 3  # the minute in hand when the stop came, too
    assert eng.last_minute == H + timedelta(minutes=2)
    assert eng.sizes()["due_minutes"] == 7  # left due, as the checkpoint says
    assert eng.store.checkpoint(MINUTE_CHECKPOINT) == iso(H + timedelta(minutes=2))
    eng.stop = lambda: False
    eng.advance(H + timedelta(minutes=9))
    assert eng.evaluations == SCOPES * 10 and eng.sizes()["due_minutes"] == 0
