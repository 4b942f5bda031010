"""The supervisor restarts a failing connector with backoff while the others keep running."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest

from bot.pipeline.observer import Observer, Sensor
from bot.pipeline.supervisor import (
    Backoff,
    Health,
    Supervisor,
    health_from_json,
    health_to_json,
)

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def test_backoff_grows_exponentially_with_bounded_jitter() -> None:
    backoff = Backoff(base_s=1.0, max_s=60.0)
    rng = random.Random(7)
    for failures, step in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)]:
        delays = [backoff.delay(failures, rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays)
        # Jitter: connectors that failed together do not all come back at once.
        assert max(delays) - min(delays) > step / 4


def test_a_failing_connector_is_restarted_while_another_keeps_running() -> None:
    async def scenario() -> tuple[Observer, int, int]:
        stopping = asyncio.Event()
        board = Observer()
        sup = Supervisor(board, stopping, backoff=Backoff(base_s=0.01, max_s=0.04))
        attempts = 0
        ticks = 0

        async def flaky() -> None:
            nonlocal attempts
            attempts += 1
            if attempts < 4:
                raise ConnectionError(f"platform down (try {attempts})")
            await stopping.wait()

        async def steady() -> None:
            nonlocal ticks
            while not stopping.is_set():
                ticks += 1
                await asyncio.sleep(0.005)

        tasks = [
            asyncio.create_task(sup.supervise("x", flaky)),
            asyncio.create_task(sup.supervise("telegram", steady)),
        ]
        for _ in range(200):
            await asyncio.sleep(0.01)
            if board.health("x").state == "running" and attempts >= 4:
                break
        ticks_while_x_failed = ticks
        stopping.set()
        await asyncio.gather(*tasks)
        return board, attempts, ticks_while_x_failed

    board, attempts, ticks = asyncio.run(scenario())
    assert attempts == 4
    x = board.health("x")
    assert x.restarts == 3 and x.errors == 3
    assert x.last_error == "ConnectionError: platform down (try 3)"
    assert x.state == "stopped"
    assert ticks > 5  # the other connector kept working all along
    assert board.health("telegram").errors == 0 and board.health("telegram").state == "stopped"


def test_stopping_interrupts_a_backoff_wait() -> None:
    async def scenario() -> float:
        stopping = asyncio.Event()
        sup = Supervisor(Observer(), stopping, backoff=Backoff(base_s=600.0, max_s=600.0))

        async def broken() -> None:
            raise RuntimeError("bad gateway")

        task = asyncio.create_task(sup.supervise("discord", broken))
        await asyncio.sleep(0.05)
        loop = asyncio.get_running_loop()
        start = loop.time()
        stopping.set()
        await task
        return loop.time() - start

    assert asyncio.run(scenario()) < 1.0


def test_a_connector_that_ends_is_done_and_not_restarted() -> None:
    async def scenario() -> tuple[int, Health]:
        board = Observer()
        sup = Supervisor(board, asyncio.Event())
        runs = 0

        async def replay() -> None:
            nonlocal runs
            runs += 1

        await sup.supervise("replay:demo.csv", replay)
        return runs, board.health("replay:demo.csv")

    runs, health = asyncio.run(scenario())
    assert runs == 1 and health.state == "done"


def test_a_long_healthy_run_resets_the_failure_streak() -> None:
    clock = iter([T0 + timedelta(seconds=s) for s in (0, 1, 2, 3, 4, 500, 501, 502)])
    delays: list[int] = []

    class Recording(Backoff):
        def delay(self, failures: int, rng: random.Random) -> float:
            delays.append(failures)
            return 0.0

    async def scenario() -> None:
        stopping = asyncio.Event()
        sup = Supervisor(
            Observer(clock=lambda: T0),
            stopping,
            backoff=Recording(reset_after_s=120.0),
            clock=lambda: next(clock),
        )
        n = 0

        async def connector() -> None:
            nonlocal n
            n += 1
            if n == 4:
                stopping.set()
            raise OSError("reset by peer")

        await sup.supervise("x", connector)

    asyncio.run(scenario())
    # Up 1 s, 1 s, then 496 s (healthy for a while): the third failure starts a new streak.
    assert delays == [1, 2, 1]


def test_max_restarts_marks_the_connector_failed() -> None:
    async def scenario() -> Health:
        board = Observer()
        sup = Supervisor(board, asyncio.Event(), backoff=Backoff(base_s=0.0), max_restarts=2)

        async def broken() -> None:
            raise ValueError("no such exchange")

        await sup.supervise("prices", broken)
        return board.health("prices")

    h = asyncio.run(scenario())
    assert h.state == "failed" and h.restarts == 2 and h.errors == 3


def test_cancellation_is_not_swallowed() -> None:
    async def scenario() -> Health:
        board = Observer()
        sup = Supervisor(board, asyncio.Event())
        task = asyncio.create_task(sup.supervise("telegram", lambda: asyncio.sleep(60)))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return board.health("telegram")

    assert asyncio.run(scenario()).state == "stopped"


def test_observer_counts_messages_and_lag_and_health_round_trips_as_json() -> None:
    board = Observer(clock=lambda: T0)
    board.on_source_off("x", "MOODRING_X_BEARER_TOKEN is not set")
    board.on_messages("telegram", 3, T0 - timedelta(seconds=4))
    board.on_messages("telegram", 2, T0 - timedelta(seconds=1))
    tg = board.health("telegram")
    assert tg.messages == 5 and tg.lag_s == 1.0 and tg.last_message_at == T0
    assert board.counters.seen == 5
    assert [h.name for h in board.health_snapshot()] == ["telegram", "x"]
    for h in board.health_snapshot():
        assert health_from_json(health_to_json(h)) == h
    assert board.health("x").state == "off" and "X_BEARER_TOKEN" in board.health("x").note


def test_observer_fans_events_out_to_sensors_and_pulls_readings_on_refresh() -> None:
    observer = Observer(clock=lambda: T0)
    told: list[tuple[str, int]] = []

    class Counting(Sensor):
        def on_scored(self, n: int) -> None:
            told.append(("scored", n))

        def on_alerts(self, n: int) -> None:
            told.append(("alerts", observer.counters.alerts))  # told after the count

    class Meter(Sensor):
        reads = 0

        def refresh(self, now: datetime) -> None:
            self.reads += 7
            observer.on_reading("x", reads=self.reads, note="polling")

    class Broken(Sensor):
        def refresh(self, now: datetime) -> None:
            raise RuntimeError("gauge down")

    observer.add(Counting())
    observer.add(Broken())  # a failing sensor does not keep the others from reading
    observer.add(Meter())
    observer.on_scored(3)
    observer.on_failed(1)
    observer.on_alerts(2)
    observer.on_tick(4, T0)
    observer.on_stored(added=5, edited=1, late=2)
    observer.on_delivered(2)
    observer.refresh(T0)
    observer.on_reading("x", errors=1)
    assert told == [("scored", 3), ("alerts", 2)]
    c = observer.snapshot()
    assert (c.scored, c.failed, c.alerts, c.ticks, c.last_time) == (3, 1, 2, 4, T0)
    assert (c.added, c.edited, c.late, c.delivered) == (5, 1, 2, 2)
    x = observer.health("x")
    assert x.reads == 7 and x.note == "polling" and x.errors == 1 and x.updated_at == T0
    observer.on_scored(1)
    assert c.scored == 3 and observer.counters.scored == 4  # a snapshot is a copy
