"""The index engine over time: ticks made lazily and empty spans skipped (#13 findings 5 and
14), alerts about old readings kept out of a live run's outbox and away from subscribers who
came later (finding 14), and one owner driving the engine at a time (finding 15)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.pipeline.config import LOOKBACK, PipelineConfig
from bot.pipeline.queue import InProcessQueue
from bot.pipeline.ticks import IndexEngine
from bot.pipeline.work import ScoredChunk
from bot.prefs.subscriptions import Subscription
from bot.store import Store, StoredMessage
from bot.types import Alert, Scope
from connectors.types import Message
from nlp.types import Score
from tests.doubles import RecordingSink
from tests.test_pipeline_e2e import make_pipeline

#: The demo's posts are from mid-2022; a `moodring run` on that database happens today.
POSTED = datetime(2022, 7, 1, 12, tzinfo=UTC)
TODAY = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)
SCORE = Score(0.7, 0.2, 0.1, "negative", "test")


class NoScorer:
    """These tests store scored rows themselves; nothing is scored."""

    def score(self, texts: Sequence[str]) -> list[Score]:
        raise AssertionError("nothing is scored here")


def post(store: Store, n: int, at: datetime) -> None:
    """Store and score ``n`` posts about BTC at ``at``."""
    items = [
        StoredMessage(
            Message("replay", "c", "ch", f"{at:%Y%m%d%H%M}-{i}", f"a{i}", "$BTC down", at),
            "$btc down",
            ("BTC",),
            None,
            None,
        )
        for i in range(n)
    ]
    store.add_messages(items, at)
    keys = [(m.message.platform, m.message.channel, m.message.message_id) for m in items]
    store.save_scores([(k, SCORE) for k in keys], at)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "moodring.db")
    yield s
    s.close()


def test_ticks_are_made_lazily_and_a_gap_of_years_costs_one_lookback(store: Store) -> None:
    post(store, 5, POSTED)
    engine = IndexEngine(store, PipelineConfig())
    ticks = engine.due_ticks(TODAY)
    assert isinstance(ticks, Iterator)  # made as asked for: no list of 38,000 hours up front
    times = list(ticks)
    hour = timedelta(hours=1)
    # Every hour the post can still be read in (the longest window and its baselines), then
    # one tick for now, instead of every hour from July 2022 to today.
    assert times[0] == POSTED + hour
    assert times[-2] == POSTED + LOOKBACK - hour
    assert times[-1] == TODAY.replace(minute=0)
    assert len(times) == LOOKBACK // hour
    assert engine.skipped == (TODAY.replace(minute=0) - POSTED - LOOKBACK) // hour


def test_catch_up_resumes_at_the_first_tick_that_reads_the_next_post(store: Store) -> None:
    post(store, 5, POSTED)
    engine = IndexEngine(store, PipelineConfig())
    engine.load(POSTED)
    ran, _ = engine.advance(POSTED + timedelta(days=40))
    assert ran == LOOKBACK // timedelta(hours=1)
    later = datetime(2024, 3, 2, 8, 20, tzinfo=UTC)
    post(store, 5, later)
    engine.load(later + timedelta(hours=3))
    ran, _ = engine.advance(later + timedelta(hours=3))
    assert ran == 3  # 09:00, 10:00, 11:00: nothing between the gap's end and the post
    # The first tick after the gap read the new posts.
    reading = store.readings(Scope(asset="BTC"), "1h", later, later + timedelta(hours=1))
    assert [r.sample_size for r in reading] == [5]


def alert(at: datetime, n: int = 1) -> Alert:
    return Alert(f"extreme-fear:BTC|*|*:24h:{n}", "extreme-fear", Scope(asset="BTC"), at, "t")


def save(store: Store, engine: IndexEngine, alerts: list[Alert], now: datetime) -> list[Alert]:
    """Store ``alerts`` as a tick does, with the engine's own targeting."""
    return store.save_tick([], alerts, {}, engine._targets(alerts, True), ("t", "x"), now)


def outbox(store: Store) -> list[tuple]:
    return store.query("SELECT alert_key, sink, target FROM outbox ORDER BY alert_key, target")


def test_a_live_run_stores_alerts_about_old_readings_and_sends_them_to_nobody(
    store: Store,
) -> None:
    store.subscribe(Subscription("telegram", "g", "555", "u1"), TODAY - timedelta(days=1))
    engine = IndexEngine(store, PipelineConfig(sinks_targets=(("console", ""),)))
    engine.max_age = timedelta(hours=6)
    engine.clock = lambda: TODAY
    old, fresh = alert(POSTED, 1), alert(TODAY - timedelta(hours=1), 2)
    assert save(store, engine, [old, fresh], TODAY) == [old, fresh]  # both kept for history
    assert outbox(store) == [(fresh.key, "console", ""), (fresh.key, "telegram", "555")]
    assert engine.stale == 1


def test_a_replay_delivers_by_message_time(store: Store) -> None:
    store.subscribe(Subscription("telegram", "g", "555", "u1"), TODAY - timedelta(days=1))
    engine = IndexEngine(store, PipelineConfig(sinks_targets=()))
    assert engine.max_age is None  # only a live run sets it (Pipeline.run)
    save(store, engine, [alert(POSTED)], TODAY)
    assert outbox(store) == [(alert(POSTED).key, "telegram", "555")]


def test_a_subscription_gets_exactly_the_alerts_stored_after_it_was_made(store: Store) -> None:
    engine = IndexEngine(store, PipelineConfig(sinks_targets=()))
    first = alert(TODAY, 1)
    save(store, engine, [first], TODAY)  # stored before anyone subscribed
    # A tick works out its alerts, a member subscribes meanwhile, then the tick stores them:
    # the row is stored after the subscription, so the subscriber gets it.
    second = alert(TODAY + timedelta(minutes=1), 2)
    targets = engine._targets([second], True)
    store.subscribe(Subscription("telegram", "g", "555", "u1"), TODAY + timedelta(seconds=30))
    store.save_tick([], [second], {}, targets, ("t", "x"), TODAY + timedelta(minutes=1))
    assert outbox(store) == [(second.key, "telegram", "555")]


def test_the_index_engine_has_one_owner_at_a_time(store: Store) -> None:
    """The indexing stage and the live clock tick used to call ``run_ticks`` from two
    threads at once (4,695 ticks recorded for 3,278 hours); now they take turns."""
    post(store, 3, TODAY - timedelta(hours=3))
    pipeline = make_pipeline(store, NoScorer(), {"console": RecordingSink()}, tick_to_clock=True)
    inside = 0
    most = 0
    guard = threading.Lock()
    advance = pipeline.index.advance

    def slow_advance(until: datetime, outbox: bool = True) -> tuple[int, list[Alert]]:
        nonlocal inside, most
        with guard:
            inside += 1
            most = max(most, inside)
        time.sleep(0.3)  # long enough for the other caller to arrive while this one runs
        try:
            return advance(until, outbox)
        finally:
            with guard:
                inside -= 1

    pipeline.index.advance = slow_advance  # type: ignore[method-assign]

    async def both() -> None:
        assert isinstance(pipeline.to_index, InProcessQueue)
        indexing = asyncio.create_task(pipeline.indexing())
        await pipeline.to_index.put(ScoredChunk((), TODAY - timedelta(hours=2)))
        await asyncio.sleep(0.05)  # the indexing stage is inside the engine now
        await pipeline._periodic_round()  # the live delivery round's clock tick
        await pipeline.to_index.close()
        await indexing

    asyncio.run(both())
    assert most == 1
    # The clock tick runs up to the wall clock, so the hours (and their midnights, with a 7d
    # reading) depend on the day the test runs: each window is read once per hour, never more.
    ticks = store.query(
        'SELECT at, "window", COUNT(*) FROM readings WHERE scope = ? GROUP BY at, "window"',
        ["*|*|*"],
    )
    assert ticks and all(n == 1 for _, _, n in ticks)
    assert {w for _, w, _ in ticks} >= {"1h", "24h"}


def test_an_erasure_reaches_the_rows_the_running_index_holds(store: Store) -> None:
    """After /forget (or `moodring forget` from another process) the engine reads its held
    rows again: later alerts cannot quote the erased text or name the author from memory."""
    post(store, 3, TODAY - timedelta(hours=2))
    engine = IndexEngine(store, PipelineConfig())
    engine.load(TODAY - timedelta(hours=1))
    assert {p.author for p in engine._points} == {"a0", "a1", "a2"}
    store.forget_author("replay", "a1", TODAY)
    engine.advance(TODAY)
    held = {p.message_key: p for p in engine._points}
    erased = [r for r in held.values() if r.author.startswith("erased:")]
    assert len(erased) == 1 and erased[0].text == ""
    assert {r.author for r in held.values()} - {erased[0].author} == {"a0", "a2"}
    assert all(p.text for p in engine._points if not p.author.startswith("erased:"))
