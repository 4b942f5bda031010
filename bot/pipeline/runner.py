"""The pipeline: intake → scoring → index and alerts → delivery, joined by injected queues.

Each stage's work is keyed and committed before it acks its queue item, so a crash anywhere
loses nothing and a restart repeats nothing (except, at most, the one chat send that a crash
interrupted). Intake stores raw messages first and never waits on the model; the scorer
scores the chunks intake cut; the index ticks once per hour of message time, as of that hour
(no look-ahead), and stores each tick with its alerts atomically.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from bot.errors import StoreError
from bot.mood.spam import SpamMarker
from bot.pipeline.config import PipelineConfig, ScorerLike
from bot.pipeline.delivery import DeliveryStage
from bot.pipeline.intake import IntakeStage, Watermark
from bot.pipeline.observer import Counters, Observer
from bot.pipeline.queue import Closed, InProcessQueue, Queue
from bot.pipeline.scoring import ScoringStage
from bot.pipeline.supervisor import Supervisor, health_to_json
from bot.pipeline.ticks import IndexEngine
from bot.pipeline.work import ScoreChunk, ScoredChunk
from bot.store import ScoredRow, Store, StoredMessage
from connectors.base import Sink, Source
from connectors.retry import wait_or_stop
from nlp.assets import AssetTable
from nlp.language import LanguageDetector

log = logging.getLogger(__name__)

#: At most this many unscored messages are read back at start-up (the rest on the next start).
RECOVERY_LIMIT = 1_000_000


def process_name() -> str:
    """A name unique to this process, ``host:pid:random``: what it claims outbox rows and
    reads Redis streams under (the random part tells a restarted pid from the old one)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


@dataclass(frozen=True, slots=True)
class Queues:
    """The two queues between the stages; the composition root chooses their backend."""

    to_score: Queue[ScoreChunk]
    to_index: Queue[ScoredChunk]

    @classmethod
    def in_process(cls, size: int) -> Queues:
        """Bounded in-process queues (one process runs every stage)."""
        return cls(InProcessQueue(size), InProcessQueue(size))


class Pipeline(IntakeStage, ScoringStage, DeliveryStage):
    """Runs the stages over one or more sources until they end or ``stop()`` is called."""

    def __init__(
        self,
        store: Store,
        scorer: ScorerLike,
        assets: AssetTable,
        language: LanguageDetector,
        spam: SpamMarker,
        sinks: dict[str, Sink],
        queues: Queues,
        config: PipelineConfig | None = None,
        observer: Observer | None = None,
        index: IndexEngine | None = None,
        watermark: Watermark | None = None,
    ) -> None:
        self.store = store
        self.scorer = scorer
        self.assets = assets
        self.language = language
        self.spam = spam
        self.sinks = sinks
        self.config = config or PipelineConfig()
        #: Counters and each connector's health, told by the stages and the supervisor; its
        #: sensors (a progress bar, the X and price readings) are told in turn.
        self.observer = observer or Observer()
        self.index = index or IndexEngine(store, self.config)
        self.to_score = queues.to_score
        self.to_index = queues.to_index
        self.watermark = watermark or Watermark()
        self._unchunked: list[StoredMessage] = []
        self._live = False
        self._waiting_since: float | None = None
        self._stopping = asyncio.Event()
        #: Live mode: jobs run every ``delivery_s`` with the time (the daily digests).
        self.periodic: list[Callable[[datetime], Awaitable[object]]] = []
        self._retry_at: dict[tuple[str, str], datetime] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self._delivering = asyncio.Lock()
        self.worker = process_name()
        #: The index engine has one owner at a time: the indexing stage and the live clock
        #: tick both drive it only under this lock (it is not thread-safe, and two runs of the
        #: same ticks from two threads stored each hour twice).
        self._indexing = asyncio.Lock()
        #: Live runs restart failed sources through ``supervisor``.
        self.supervisor = Supervisor(self.observer, self._stopping)
        self._warm_spam()

    def _warm_spam(self) -> None:
        newest = self.store.newest_message_time()
        if newest is not None:
            self.spam.warm(self.store.recent_messages(newest - timedelta(hours=6)))

    def stop(self) -> None:
        """Ask the stages to stop after the unit of work each is in (a chunk, a tick).

        Everything done so far is committed and keyed, so the next run resumes from there.
        """
        self._stopping.set()

    @property
    def stopping(self) -> asyncio.Event:
        """Set when the run should end; long-running connectors watch it too."""
        return self._stopping

    @property
    def stopped(self) -> bool:
        """Whether ``stop()`` was called (the run ended early)."""
        return self._stopping.is_set()

    def state_sizes(self) -> dict[str, int]:
        """Sizes of the pipeline's long-lived in-memory state (the index engine, the spam
        marker, the scorer's cache, the queues, delivery's backoff), for the periodic
        "state sizes" log line of a live run."""
        sizes = {f"index_{k}": v for k, v in self.index.sizes().items()}
        sizes |= {f"spam_{k}": v for k, v in self.spam.sizes().items()}
        cached = getattr(self.scorer, "cached", None)  # nlp.Scorer's LRU; a stand-in has none
        if isinstance(cached, int):
            sizes["scorer_cache"] = cached
        sizes["to_score"] = self.to_score.qsize()
        sizes["to_index"] = self.to_index.qsize()
        sizes["unchunked"] = len(self._unchunked)
        sizes["backoff"] = self.backoff_held()
        sizes["health"] = len(self.observer.health_snapshot())
        return sizes

    async def run_until_signalled(self, sources: Sequence[Source], live: bool = False) -> Counters:
        """``run`` with SIGINT/SIGTERM turned into a graceful ``stop()``."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        try:
            return await self.run(sources, live=live)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    # ------------------------------------------------------------------ index, alerts

    def run_ticks(self, until: datetime) -> int:
        """Run every due hourly tick and alert minute up to ``until``; return how many
        alerts were new."""
        ticks, raised = self.index.advance(until)
        new = len(raised)
        if new:
            self.observer.on_alerts(new)
        self.observer.on_tick(ticks, self.index.last_tick)
        if self.config.retention_days is not None and self.index.last_tick is not None:
            # Message time, not wall time: a replayed month keeps its own calendar.
            cutoff = self.index.last_tick - timedelta(days=self.config.retention_days)
            purged = self.store.purge_texts(cutoff)
            if purged:
                log.info("retention: purged the text of %d messages before %s", purged, cutoff)
        return new

    async def indexing(self) -> None:
        """Take scored chunks, tick up to each chunk's watermark, deliver what was raised."""
        # A restart after messages were scored but before the index caught up (a crash
        # between the two stages): start from what the store already has scored.
        scored = self.store.newest_scored_time()
        if scored is not None:
            await self.advance_index(scored, load=True)
        while True:
            try:
                received = await self.to_index.get()
            except Closed:
                break
            chunk = received.item
            until = None if self._stopping.is_set() else chunk.watermark
            raised = await self.advance_index(until, rows=chunk.rows)
            await self.to_index.ack(received)  # the ticks are committed
            if raised:
                await self.deliver()
        newest = self.store.newest_message_time()
        if newest is not None and not self._stopping.is_set():
            await self.advance_index(newest, load=True)
        await self.deliver()

    async def advance_index(
        self, until: datetime | None, rows: Sequence[ScoredRow] = (), load: bool = False
    ) -> int:
        """The one way into the index engine: hold it, take ``rows``, then (in a worker
        thread) load what the store has scored up to ``until`` if ``load``, and tick up to
        ``until``; return how many alerts were new."""
        async with self._indexing:
            self.index.add(rows)
            if until is None:
                return 0
            work = self._catch_up if load else self.run_ticks
            return await asyncio.to_thread(work, until)

    def _catch_up(self, until: datetime) -> int:
        """Load from the store what is scored up to ``until`` (the scoring stage's rows are
        lost with an in-process queue on a crash), then tick."""
        self.index.load(until)
        return self.run_ticks(until)

    # ------------------------------------------------------------------ run

    async def save_health(self) -> None:
        """Store every connector's health, for ``moodring status`` and ``/status``, after the
        observer's sensors took their pull-style readings (X reads, the price feed's state).

        The board is read here, on the event loop that updates it; only the write goes to a
        worker thread."""
        now = datetime.now(UTC)
        self.observer.refresh(now)
        rows = [(h.name, health_to_json(h)) for h in self.observer.health_snapshot()]
        if rows:
            await asyncio.to_thread(self.store.save_health, rows, now)

    async def delivery_loop(self) -> None:
        """Live mode: retry unsent alerts (platform outages, quiet hours ending) regularly."""
        # Once the connectors have started, so `moodring status` sees them from the start.
        await wait_or_stop(self._stopping, min(1.0, self.config.delivery_s))
        await self.save_health()
        while not await wait_or_stop(self._stopping, self.config.delivery_s):
            try:
                await self._periodic_round()
            except Exception:  # a bad round (say the disk is full) must not end the loop
                log.exception("delivery round failed; retrying in %.0fs", self.config.delivery_s)

    async def _periodic_round(self) -> None:
        await self.save_health()
        # A quiet chat still ticks on the clock, but not past messages that wait to be
        # scored (their hour would be read without them); scoring wakes the index.
        if self.config.tick_to_clock and not await asyncio.to_thread(self.store.unscored, 1):
            await self.advance_index(datetime.now(UTC))
        await self.deliver()
        for job in self.periodic:
            try:
                await job(datetime.now(UTC))
            except Exception:  # one failing job must not stop delivery
                log.exception("periodic job failed")

    async def _requeue_unscored(self) -> None:
        """Start-up recovery: what was stored but not scored (a crash lost the in-process
        queue, or the last run stopped early) is cut into chunks again, oldest first, at the
        positions an uninterrupted run would have cut them."""
        todo = await asyncio.to_thread(self.store.unscored_messages, RECOVERY_LIMIT)
        if todo:
            log.info("queueing %d stored, unscored messages for scoring", len(todo))
            self._unchunked = todo + self._unchunked
            await self.cut_chunks(partial=False)

    async def run(self, sources: Sequence[Source], live: bool = False) -> Counters:
        """Run all stages until every source ends (or ``stop()``), then drain.

        ``live`` adds the periodic delivery loop (a replay delivers after each tick), and runs
        each source under the supervisor: one that fails is restarted with backoff while the
        others go on."""
        self._live = live
        if live:
            self.watermark.lateness_s = self.config.lateness_s
        if live and self.config.tick_to_clock:
            # A live run (no replay) goes by the wall clock: an alert about a reading this old
            # (catch-up after a gap) is history. Replays deliver by message time.
            self.index.max_age = timedelta(seconds=self.config.alert_max_age_s)
        # A stop ends the index's catch-up after its current tick or minute, not its backlog.
        self.index.stop = self._stopping.is_set
        workers = [asyncio.create_task(self.scoring()), asyncio.create_task(self.indexing())]
        await self._requeue_unscored()
        delivery = asyncio.create_task(self.delivery_loop()) if live else None
        try:
            await self.intake_all(sources, live)
        finally:
            if not self._stopping.is_set():
                await self.cut_chunks(partial=True)
            await self.to_score.close()
            await asyncio.gather(*workers)
            if delivery is not None:
                self.stop()
                await delivery
                await self.save_health()
            await self._release_claims()
        return self.observer.counters

    async def intake_all(self, sources: Sequence[Source], live: bool) -> None:
        """Every source's intake at once; in a live run each (but the internal ones) under
        the supervisor, which restarts a source that fails while the others go on."""
        if live:
            await asyncio.gather(
                *(
                    self.intake(s)
                    if getattr(s, "internal", False)
                    else self.supervisor.supervise(s.name, partial(self._fresh_intake, s))
                    for s in sources
                )
            )
        else:
            await asyncio.gather(*(self.intake(s) for s in sources))

    async def _release_claims(self) -> None:
        """Hand back the outbox rows this run claimed and did not send, so another deliverer
        takes them now rather than when their lease ends (if this fails, the lease ends)."""
        try:
            await asyncio.to_thread(self.store.release_claims, self.worker)
        except StoreError as exc:
            log.warning("outbox claims not released (%s); they lapse with their lease", exc)
