"""Stage workers: the index's reorder buffer, its lease on PostgreSQL, and two index workers
over real Redis and PostgreSQL (only one ticks; kill it and the other takes over)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from bot.app.cli import main
from bot.app.wiring import NoScorer
from bot.mood.spam import SpamConfig, SpamMarker
from bot.pipeline.config import PipelineConfig
from bot.pipeline.queue import Received
from bot.pipeline.redis_queue import RedisQueueConfig, RedisStreamQueue, redis_queues
from bot.pipeline.runner import Queues
from bot.pipeline.work import ScoreChunk, ScoredChunk
from bot.pipeline.workers import (
    CLOCK_CHECKPOINT,
    INDEX_CHECKPOINT,
    ReorderBuffer,
    StageWorker,
    index_progress,
)
from bot.store import TICK_CHECKPOINT, ScoredRow, Store, parse_ts, runlock
from bot.store.lease import INDEX_KEY, Lease, hold_shared_writer
from bot.store.runlock import DatabaseBusyError
from nlp.assets import AssetTable
from nlp.language import LanguageDetector
from tests.conftest import ROOT

T0 = datetime(2022, 6, 25, 12, 0, tzinfo=UTC)
FAST = RedisQueueConfig(max_backlog=100, claim_idle_ms=400, block_ms=50, retry_s=20.0)
WAIT_S = 20.0  # a bound on what must happen, never a measure of speed
W = TypeVar("W", bound=StageWorker)


# ---------------------------------------------------------------------- the reorder buffer


def test_reorder_buffer_hands_out_in_number_order() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer()
    out: list[str] = []
    for seq in (2, 0, 3, 1, 5, 4):
        assert buffer.offer(seq, f"c{seq}") == "held"
        while (item := buffer.take()) is not None:
            out.append(item)
    assert out == [f"c{k}" for k in range(6)]
    assert buffer.next_seq == 6 and not buffer.waiting


def test_reorder_buffer_tells_redeliveries_and_duplicates() -> None:
    buffer: ReorderBuffer[str] = ReorderBuffer(next_seq=3)
    assert buffer.offer(1, "old") == "stale"  # applied before a restart
    assert buffer.offer(5, "a") == "held"
    assert buffer.offer(5, "b") == "duplicate"
    assert buffer.take() is None and buffer.waiting
    assert buffer.skip() == [3, 4]  # given up for lost
    assert buffer.take() == "a" and buffer.next_seq == 6
    assert buffer.skip() == []


def test_index_progress_reads_its_checkpoint() -> None:
    assert index_progress(None) == (0, None)
    value = json.dumps({"next": 7, "watermark": "2022-06-25T12:00:00Z"})
    assert index_progress(value) == (7, T0)


# ---------------------------------------------------------------------- the leases


def test_one_lease_holder_at_a_time_and_a_dead_holders_lease_is_freed(pg_url: str) -> None:
    first, second = Lease(pg_url, INDEX_KEY, "a"), Lease(pg_url, INDEX_KEY, "b")
    try:
        assert first.try_take() and first.alive()
        assert not second.try_take()
        # A holder whose process dies: the server frees the lock with the connection.
        holder = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys, time; from bot.store.lease import Lease, INDEX_KEY;"
                f" lease = Lease({pg_url!r}, 'other-key', 'child');"
                " assert lease.try_take(); print('held', flush=True); time.sleep(60)",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            other = Lease(pg_url, "other-key", "c")
            assert not other.try_take()
            holder.send_signal(signal.SIGKILL)
            holder.wait(10)
            wait_for(other.try_take, "the dead holder's lease to be free")
            other.release()
        finally:
            holder.kill()
            holder.wait(10)
        first.release()
        assert not first.alive()
        assert second.try_take()
    finally:
        first.release()
        second.release()


def test_workers_share_the_database_but_never_with_moodring_run(pg_url: str) -> None:
    Store(pg_url).close()
    workers = (hold_shared_writer(pg_url, "worker score"), hold_shared_writer(pg_url, "worker"))
    with workers[0], workers[1], pytest.raises(DatabaseBusyError), runlock.hold(pg_url, "run"):
        pass
    with (
        runlock.hold(pg_url, "run"),
        pytest.raises(DatabaseBusyError, match="moodring run"),
        hold_shared_writer(pg_url, "worker index"),
    ):
        pass


def test_worker_refuses_sqlite_and_a_missing_queue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("MOODRING_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    assert main(["--db", "x.db", "worker", "score"]) == 2
    assert "MOODRING_QUEUE" in capsys.readouterr().err
    assert main(["--db", "x.db", "--queue", "redis://127.0.0.1:1/0", "worker", "index"]) == 2
    assert "postgresql://" in capsys.readouterr().err
    assert main(["--db", "x.db", "--queue", "http://h/0", "worker", "index"]) == 2
    assert "not a Redis URL" in capsys.readouterr().err


# ---------------------------------------------------------------------- index workers


class RecordingWorker(StageWorker):
    """An index worker that records the chunk numbers it applies, in order."""

    applied: list[int]

    async def _apply(self, received: Received[ScoredChunk]) -> None:
        assert received.item.seq is not None
        self.applied.append(received.item.seq)
        await super()._apply(received)


def stage_worker(
    cls: type[W], pg_url: str, redis_url: str, prefix: str, name: str, config: PipelineConfig
) -> W:
    """A stage worker of class ``cls`` on its own store, over the test's Redis streams."""
    return cls(
        store=Store(pg_url),
        scorer=NoScorer(),
        assets=AssetTable.load(),
        language=LanguageDetector(),
        spam=SpamMarker(SpamConfig()),
        sinks={},
        queues=redis_queues(redis_url, prefix, FAST, consumer=name),
        config=config,
    )


def index_worker(
    pg_url: str, redis_url: str, prefix: str, name: str, config: PipelineConfig | None = None
) -> RecordingWorker:
    worker = stage_worker(
        RecordingWorker, pg_url, redis_url, prefix, name, config or PipelineConfig()
    )
    worker.role = "index"
    worker.applied = []
    worker.lease = Lease(pg_url, INDEX_KEY, name)
    return worker


def row(i: int) -> ScoredRow:
    return ScoredRow(
        key=f"replay:c:{i}",
        created_at=T0 + timedelta(minutes=i),
        author=f"a{i % 7}",
        community="test",
        platform="replay",
        polarity=0.5,
        engagement=0,
        spam=False,
        set_aside=False,
        public=True,
        text=f"post {i}",
        assets=("BTC",),
    )


def chunk(seq: int) -> ScoredChunk:
    return ScoredChunk((row(seq),), T0 + timedelta(minutes=seq), seq)


def wait_for(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


async def async_wait_for(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def holds(worker: StageWorker) -> bool:
    return isinstance(worker.lease, Lease) and worker.lease.held


async def close_all(queues: Queues) -> None:
    for queue in (queues.to_score, queues.to_index):
        assert isinstance(queue, RedisStreamQueue)
        await queue.aclose()


def checkpoint(pg_url: str) -> tuple[int, datetime | None]:
    store = Store(pg_url)
    try:
        return index_progress(store.checkpoint(INDEX_CHECKPOINT))
    finally:
        store.close()


def test_one_index_worker_ticks_in_order_and_a_survivor_takes_over(
    pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    Store(pg_url).close()
    first = index_worker(pg_url, redis_url, redis_prefix, "index-a")
    second = index_worker(pg_url, redis_url, redis_prefix, "index-b")
    producer = redis_queues(redis_url, redis_prefix, FAST, consumer="scorer")

    async def scenario() -> None:
        tasks = {w: asyncio.create_task(w.run([])) for w in (first, second)}
        await async_wait_for(lambda: holds(first) or holds(second), "a lease holder")
        holder, standby = (first, second) if holds(first) else (second, first)
        # Chunk 4 is still being scored (unacked on to_score), so the index must wait for it.
        await producer.to_score.put(ScoreChunk((), None, 4))
        scoring = await producer.to_score.get()
        # Scorers finish out of order: 2, 0, 3, 1, then 6, 5.
        for seq in (2, 0, 3, 1, 6, 5):
            await producer.to_index.put(chunk(seq))
        await async_wait_for(lambda: holder.applied == [0, 1, 2, 3], "chunks 0-3 in order")
        await asyncio.sleep(1.5)  # 5 and 6 wait in the buffer for 4, past a gap check
        assert holder.applied == [0, 1, 2, 3] and standby.applied == []
        # The holder dies: its lease connection drops and its task ends without a word,
        # leaving 5 and 6 pending on it in Redis.
        assert isinstance(holder.lease, Lease)
        holder.lease._drop()
        tasks[holder].cancel()
        await asyncio.gather(tasks[holder], return_exceptions=True)
        await async_wait_for(lambda: holds(standby), "the take-over")
        await producer.to_index.put(chunk(4))
        await producer.to_score.ack(scoring)
        # The survivor resumes at 4 and takes 5 and 6 over from the dead holder.
        await async_wait_for(lambda: standby.applied == [4, 5, 6], "4, 5, 6 on the survivor")
        standby.stop()
        await tasks[standby]
        assert isinstance(producer.to_index, RedisStreamQueue)
        stats = await producer.to_index.stats()
        assert stats.backlog == 0 and stats.dead_lettered == 0
        await close_all(producer)

    try:
        asyncio.run(scenario())
    finally:
        first.store.close()
        second.store.close()
    assert checkpoint(pg_url) == (7, T0 + timedelta(minutes=6))


def test_a_chunk_number_no_queue_holds_is_skipped_and_its_rows_count_late(
    pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    Store(pg_url).close()
    worker = index_worker(pg_url, redis_url, redis_prefix, "index-a")
    producer = redis_queues(redis_url, redis_prefix, FAST, consumer="scorer")

    async def scenario() -> None:
        task = asyncio.create_task(worker.run([]))
        # 1 was numbered by an intake that crashed before putting it: nothing holds it.
        for seq in (0, 2, 3):
            await producer.to_index.put(chunk(seq))
        await async_wait_for(lambda: worker.applied == [0, 2, 3], "the gap skipped")
        # A scorer still holding a chunk holds the index back: 5 waits while 4 is unacked
        # on to_score, then goes once 4 arrives.
        await producer.to_score.put(ScoreChunk((), None, 4))
        await producer.to_index.put(chunk(5))
        await asyncio.sleep(2.5)  # past two gap checks
        assert worker.applied == [0, 2, 3]
        got = await producer.to_score.get()
        await producer.to_index.put(chunk(4))
        await producer.to_score.ack(got)
        await async_wait_for(lambda: worker.applied == [0, 2, 3, 4, 5], "4 then 5")
        # 1 turns up after all (a scorer that hung): its rows are taken as late ones.
        await producer.to_index.put(chunk(1))
        assert isinstance(producer.to_index, RedisStreamQueue)
        index_stream = producer.to_index
        for _ in range(100):
            if (await index_stream.stats()).backlog == 0:
                break
            await asyncio.sleep(0.05)
        assert (await index_stream.stats()).backlog == 0
        assert worker.applied == [0, 2, 3, 4, 5]
        held = worker.index.held(T0, T0 + timedelta(hours=1))
        assert held is not None and len(held[0]) == 6
        worker.stop()
        await task
        await close_all(producer)

    try:
        asyncio.run(scenario())
    finally:
        worker.store.close()
    assert checkpoint(pg_url)[0] == 6


def test_status_shows_each_queues_counts(redis_url: str, redis_prefix: str) -> None:
    from bot.app.wiring import queue_report
    from bot.settings import Settings

    settings = Settings(queue=redis_url, queue_prefix=redis_prefix)
    producer = redis_queues(redis_url, redis_prefix, FAST, consumer="intake")

    async def scenario() -> str:
        await producer.to_score.put(ScoreChunk((), None, 0))
        await close_all(producer)
        return await queue_report(settings)

    report = asyncio.run(scenario())
    assert "to_score: 1 waiting (1 undelivered, 0 pending), 0 dead-lettered, 0 lost" in report
    assert "to_index: 0 waiting" in report
    unreachable = Settings(queue="redis://127.0.0.1:1/0", queue_prefix=redis_prefix)
    assert "cannot reach Redis" in asyncio.run(queue_report(unreachable))


def test_the_index_worker_ticks_on_the_clock_only_behind_a_live_intake(
    pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    """A quiet live chat still gets its hourly readings from the index worker, as from
    `moodring run`; behind a replay (message time only) the clock moves nothing."""
    last_tick = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=5)
    store = Store(pg_url)
    store.set_checkpoint(TICK_CHECKPOINT, last_tick.isoformat(), last_tick)
    store.set_checkpoint(CLOCK_CHECKPOINT, "0", last_tick)  # an intake replaying a file
    worker = index_worker(
        pg_url, redis_url, redis_prefix, "index-a", PipelineConfig(delivery_s=0.1)
    )

    def ticked() -> datetime:
        return parse_ts(store.checkpoint(TICK_CHECKPOINT) or "")

    async def scenario() -> None:
        task = asyncio.create_task(worker.run([]))
        await async_wait_for(lambda: holds(worker), "the lease")
        await asyncio.sleep(1.0)  # several quiet rounds
        assert ticked() == last_tick
        assert worker.index.max_age is None  # a replay's alerts are sent whatever their age
        # A live intake takes over (it writes the checkpoint when it starts).
        store.set_checkpoint(CLOCK_CHECKPOINT, "1", datetime.now(UTC))
        await async_wait_for(lambda: ticked() > datetime.now(UTC) - timedelta(hours=1), "tick")
        assert worker.index.max_age == timedelta(seconds=worker.config.alert_max_age_s)
        worker.stop()
        await task

    try:
        asyncio.run(scenario())
    finally:
        worker.store.close()
        store.close()


# ---------------------------------------------------------------------- the intake's fence


def test_an_intake_that_loses_its_lease_stops_and_puts_no_chunk_after(
    pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The server ends the intake's lease connection (a PostgreSQL restart or failover does):
    another intake may take the lease at once, so this one must number and put nothing more.
    It stops; every chunk it put carries a number below the saved one, no number twice; what
    it stored but did not queue stays unscored, for the next intake to queue."""
    import psycopg

    from bot.pipeline.intake import SEQ_CHECKPOINT
    from bot.store.lease import INTAKE_KEY
    from connectors.types import Message
    from tests.doubles import ListSource

    config = PipelineConfig(score_chunk=4, batch_size=4, flush_s=0.05)
    worker = stage_worker(StageWorker, pg_url, redis_url, redis_prefix, "intake-a", config)
    store = worker.store
    worker.role = "intake"
    worker.lease = Lease(pg_url, INTAKE_KEY, "intake-a")
    assert worker.lease.try_take()
    posts = [
        Message(
            "replay", "c", "g", str(i), f"u{i % 5}", f"$BTC post {i}", T0 + i * timedelta(minutes=1)
        )
        for i in range(400)
    ]
    source = ListSource(posts, name="slow", gap_s=0.01)

    def saved() -> int:
        return int(store.checkpoint(SEQ_CHECKPOINT) or 0)

    async def main() -> int:
        run = asyncio.create_task(worker.run([source]))
        await async_wait_for(lambda: saved() >= 3, "a few chunks queued")
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name = 'moodring intake-a'"
            )
        await asyncio.wait_for(run, WAIT_S)
        backlog = (await worker.score_stream.stats()).backlog
        for queue in (worker.score_stream, worker.index_stream):
            await queue.aclose()
        return backlog

    put = asyncio.run(main())
    assert worker.lease_lost and not worker.lease.held and source.yielded < len(posts)
    assert put == saved() >= 3  # each number saved before its put; none put after the loss
    stored = store.query("SELECT COUNT(*) FROM messages")[0][0]
    assert store.query("SELECT COUNT(*) FROM scores") == [(0,)]
    assert len(store.unscored(1000)) == stored >= 4 * put  # queued or not, none is lost
    other = Lease(pg_url, INTAKE_KEY, "intake-b")
    assert other.try_take()  # the standby can take over
    other.release()
    store.close()


def test_an_index_worker_rides_out_a_redis_outage_and_applies_each_chunk_once(
    pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    """Redis goes away under a running index worker (every connection dropped, new ones
    refused) for a few seconds while chunks keep arriving, then comes back: the worker
    retries, resumes, and applies every chunk once, in order; nothing is dead-lettered."""
    from urllib.parse import urlsplit, urlunsplit

    from tests.test_postgres_store import Cuttable

    Store(pg_url).close()
    parts = urlsplit(redis_url)
    relay = Cuttable(parts.hostname or "127.0.0.1", parts.port or 6379)
    via = urlunsplit(parts._replace(netloc=f"127.0.0.1:{relay.port}"))
    worker = index_worker(pg_url, via, redis_prefix, "index-a")
    producer = redis_queues(redis_url, redis_prefix, FAST, consumer="scorer")  # not cut

    async def scenario() -> None:
        task = asyncio.create_task(worker.run([]))
        await async_wait_for(lambda: holds(worker), "the lease")
        for seq in range(4):
            await producer.to_index.put(chunk(seq))
        await async_wait_for(lambda: worker.applied == [0, 1, 2, 3], "chunks 0-3")
        relay.cut()
        for seq in range(4, 8):  # scorers go on while the index worker cannot reach Redis
            await producer.to_index.put(chunk(seq))
        await asyncio.sleep(3.0)
        assert worker.applied == [0, 1, 2, 3] and not task.done()
        relay.restore()
        await async_wait_for(lambda: worker.applied == list(range(8)), "chunks 4-7 after it")
        worker.stop()
        await task
        assert isinstance(producer.to_index, RedisStreamQueue)
        stats = await producer.to_index.stats()
        assert stats.backlog == 0 and stats.dead_lettered == 0
        await close_all(producer)

    try:
        asyncio.run(scenario())
    finally:
        relay.cut()
        worker.store.close()
    assert checkpoint(pg_url) == (8, T0 + timedelta(minutes=7))
