"""The intake watermark: lagging, idle and ended sources, and the live wall-clock floor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.pipeline.config import PipelineConfig
from bot.pipeline.intake import Watermark

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)


class Clock:
    """Monotonic seconds and a wall clock that the test moves by hand."""

    def __init__(self) -> None:
        self.s = 0.0

    def mono(self) -> float:
        return self.s

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.s)


def test_the_lagging_busy_source_holds_the_mark_until_it_goes_idle() -> None:
    clock = Clock()
    mark = Watermark(idle_timeout_s=10.0, clock=clock.mono)
    mark.opened("chat")
    mark.opened("x")
    assert mark.value() is None  # a busy source has delivered nothing yet
    mark.delivered("chat", T0)
    mark.delivered("x", T0 - timedelta(hours=2))
    assert mark.value() == T0 - timedelta(hours=2)
    clock.s = 5.0
    mark.delivered("chat", T0 + timedelta(seconds=5))
    assert mark.value() == T0 - timedelta(hours=2)  # x is slow, not idle
    clock.s = 11.0
    mark.delivered("chat", T0 + timedelta(seconds=11))
    assert mark.value() == T0 + timedelta(seconds=11)  # x idle for 11 s: it holds nothing


def test_live_runs_never_hold_the_mark_behind_the_wall_clock_less_lateness() -> None:
    clock = Clock()
    mark = Watermark(idle_timeout_s=10.0, clock=clock.mono, lateness_s=120.0, wall=clock.wall)
    mark.opened("chat")
    mark.opened("x")
    # Nothing delivered yet: the floor alone (a chunk's mark is capped at its newest post).
    assert mark.value() == T0 - timedelta(seconds=120)
    mark.delivered("chat", T0)
    mark.delivered("x", T0 - timedelta(hours=2))  # an X search catching up on the past
    assert mark.value() == T0 - timedelta(seconds=120)
    clock.s = 5.0
    # Both current: the sources' own mark, which is newer than the floor, wins.
    mark.delivered("x", T0 + timedelta(seconds=4))
    mark.delivered("chat", T0 + timedelta(seconds=5))
    assert mark.value() == T0 + timedelta(seconds=4)


def test_replays_have_no_wall_clock_floor_and_live_runs_have_the_configured_one() -> None:
    clock = Clock()
    mark = Watermark(clock=clock.mono, wall=clock.wall)
    mark.opened("replay")
    mark.delivered("replay", datetime(2022, 7, 1, tzinfo=UTC))
    # A replay of 2022 posts must not be pushed to today's clock: every post would be late.
    assert mark.value() == datetime(2022, 7, 1, tzinfo=UTC)
    assert PipelineConfig().lateness_s > 0
