"""Stage workers: one pipeline stage per process over Redis Streams and one PostgreSQL store,
with the index's reorder buffer and its one-ticker lease (docs/ARCHITECTURE.md, "Stage
workers")."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime, timedelta
from typing import Generic, Literal, Protocol, TypeVar

from bot.mood.index import Point
from bot.pipeline.intake import SEQ_CHECKPOINT
from bot.pipeline.observer import Counters
from bot.pipeline.queue import Closed, Queue, Received
from bot.pipeline.redis_queue import QueueUnavailable, RedisStreamQueue
from bot.pipeline.runner import Pipeline
from bot.pipeline.ticks import IndexEngine
from bot.pipeline.work import ScoreChunk, ScoredChunk
from bot.store import StoredMessage, iso, parse_ts
from connectors.base import Source
from connectors.retry import wait_or_stop

log = logging.getLogger(__name__)

T = TypeVar("T")

Role = Literal["intake", "score", "index", "deliver"]
ROLES: tuple[Role, ...] = ("intake", "score", "index", "deliver")

#: The index worker's progress: the next chunk number to apply, and the watermark ticked to.
INDEX_CHECKPOINT = "index_next_seq"
#: Whether the running intake reads live sources ("1": the index ticks on the wall clock
#: when the chats are quiet, as `moodring run` does) or a replay ("0": message time only).
#: The intake knows; the index worker, in another process, reads it here.
CLOCK_CHECKPOINT = "intake_ticks_to_clock"
#: How often a standby index worker tries the lease, and a holder checks it still holds it.
LEASE_POLL_S = 1.0
#: The longest a lease check may take before the lease counts as lost.
LEASE_CHECK_S = 10.0
#: How often an idle stage looks up from its queue (to notice a stop, a lost lease, a gap).
IDLE_S = 1.0
#: A restarted intake checks this often whether the queues behind it have drained.
DRAIN_POLL_S = 0.5


class LeaseLike(Protocol):
    """What the index worker needs of its lease (``bot.store.lease.Lease`` fits)."""

    def try_take(self) -> bool: ...

    def alive(self) -> bool: ...

    def release(self) -> None: ...


class ReorderBuffer(Generic[T]):
    """Items numbered 0, 1, 2, … arriving in any order (and some more than once), handed
    out strictly in number order: item k only after item k-1."""

    def __init__(self, next_seq: int = 0) -> None:
        #: The number of the next item to hand out.
        self.next_seq = next_seq
        self._held: dict[int, T] = {}

    def offer(self, seq: int, item: T) -> Literal["held", "stale", "duplicate"]:
        """Take ``item`` numbered ``seq``: "stale" if its number was handed out already (a
        redelivery), "duplicate" if one with its number is held, else "held"."""
        if seq < self.next_seq:
            return "stale"
        if seq in self._held:
            return "duplicate"
        self._held[seq] = item
        return "held"

    def take(self) -> T | None:
        """The next item in order, if it is here (the number then moves on)."""
        item = self._held.pop(self.next_seq, None)
        if item is not None:
            self.next_seq += 1
        return item

    def skip(self) -> list[int]:
        """Give up the missing numbers before the lowest one held; return them."""
        if not self._held:
            return []
        lowest = min(self._held)
        missing = list(range(self.next_seq, lowest))
        self.next_seq = lowest
        return missing

    def held(self) -> list[T]:
        return [self._held[k] for k in sorted(self._held)]

    @property
    def waiting(self) -> bool:
        """Whether items are held behind a missing one."""
        return bool(self._held)

    def __len__(self) -> int:
        return len(self._held)


class Getter(Generic[T]):
    """``queue.get()`` that can be waited on with a timeout without losing an item: the get
    stays in flight across waits (cancelling one could drop an entry Redis had already
    handed over, which would then wait ``claim_idle_ms`` to be taken over)."""

    def __init__(self, queue: Queue[T]) -> None:
        self.queue = queue
        self._task: asyncio.Future[Received[T]] | None = None

    async def next(self, timeout: float) -> Received[T] | None:
        """The next item, or None after ``timeout`` seconds; ``Closed`` at the end."""
        if self._task is None:
            self._task = asyncio.ensure_future(self.queue.get())
        done, _ = await asyncio.wait({self._task}, timeout=timeout)
        if not done:
            return None
        task, self._task = self._task, None
        return task.result()

    async def cancel(self, wait_s: float = 10.0) -> None:
        """Cancel the get in flight and wait for it, at most ``wait_s`` seconds: a get that
        does not end (a read stuck in the client library) must not hold up a shutdown or a
        lease hand-over; what it had read stays pending and is taken over."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=wait_s)
        if not done:
            name = getattr(self.queue, "stream", type(self.queue).__name__)
            log.warning(
                "a read of %s did not end %.0f s after its cancel; left behind", name, wait_s
            )
            # Whatever it ends with later is retrieved here, not reported as never retrieved.
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            return
        if not task.cancelled() and task.exception() is not None:
            log.debug("the cancelled queue read ended with %r", task.exception())


def index_progress(value: str | None) -> tuple[int, datetime | None]:
    """The index worker's checkpoint: the next chunk number and the watermark ticked to."""
    if not value:
        return 0, None
    data = json.loads(value)
    mark = data.get("watermark")
    return int(data["next"]), parse_ts(mark) if mark else None


class CommandsEngine(IndexEngine):
    """The engine a worker that does not index lends to the chat commands it answers (an
    intake worker's): it is never fed, so it never vouches for what it holds, and commands
    read the store."""

    def held(
        self, since: datetime, until: datetime
    ) -> tuple[list[Point], list[tuple[str, ...]]] | None:
        return None


class StageWorker(Pipeline):
    """The pipeline running one stage (``role``) over shared queues, in its own process.

    ``run`` (and so ``run_until_signalled`` and ``serve``) runs only that stage; everything
    else about the stages (what they store, when they ack) is the one-process pipeline's.
    """

    role: Role = "intake"
    #: The index and intake roles' lease; the others have none.
    lease: LeaseLike | None = None
    #: The intake found its lease gone and stopped (its process stands by again).
    lease_lost: bool = False
    #: Seconds a missing chunk may hold the index back while later ones wait, before it is
    #: given up for lost (the last resort for a gap no quiet moment proves; see ``_gap``).
    gap_timeout_s: float = 1800.0
    #: Most chunks the reorder buffer holds off the queue's bound (``RedisStreamQueue.hold``).
    max_held: int = 512
    #: The index role: the watermark ticked to, and chunk numbers given up for lost.
    _mark: datetime | None = None
    _skipped: set[int]
    _applying: Received[ScoredChunk] | None = None

    @property
    def score_stream(self) -> RedisStreamQueue[ScoreChunk]:
        queue = self.to_score
        assert isinstance(queue, RedisStreamQueue), "stage workers run over Redis Streams"
        return queue

    @property
    def index_stream(self) -> RedisStreamQueue[ScoredChunk]:
        queue = self.to_index
        assert isinstance(queue, RedisStreamQueue), "stage workers run over Redis Streams"
        return queue

    async def run(self, sources: Sequence[Source], live: bool = False) -> Counters:
        try:
            if self.role == "intake":
                await self._run_intake(sources, live)
            elif self.role == "score":
                await self._run_scoring()
            elif self.role == "index":
                await self._run_index()
            else:
                await self._run_delivery()
        finally:
            await self._release_claims()
            for queue in (self.score_stream, self.index_stream):
                await queue.aclose()
        return self.observer.counters

    # ------------------------------------------------------------------ intake

    async def _run_intake(self, sources: Sequence[Source], live: bool) -> None:
        """Intake only: wait until what an earlier intake queued has gone through, number the
        chunks on from the saved number, recover what was stored but never queued, then read
        the sources (live: each under the supervisor, health and periodic jobs beside)."""
        self._live = live
        if live:
            self.watermark.lateness_s = self.config.lateness_s
        await self.score_stream.reopen()
        if not await self._drained():
            return
        saved = await asyncio.to_thread(self.store.checkpoint, SEQ_CHECKPOINT)
        self._next_seq = int(saved) if saved else 0
        clock = "1" if self.config.tick_to_clock else "0"
        await asyncio.to_thread(
            self.store.set_checkpoint, CLOCK_CHECKPOINT, clock, datetime.now(UTC)
        )
        # Everything queued before is scored and applied now, so what is unscored was never
        # queued (or was set aside as poison): queue it once, from the next number on.
        await self._requeue_unscored()
        periodic = asyncio.create_task(self.delivery_loop()) if live else None
        watch = asyncio.create_task(self._watch_intake_lease()) if self.lease else None
        try:
            await self.intake_all(sources, live)
        finally:
            if not self._stopping.is_set():
                await self.cut_chunks(partial=True)
            if watch is not None:
                watch.cancel()
                with suppress(asyncio.CancelledError):
                    await watch
            if periodic is not None:
                self.stop()
                await periodic
                await self.save_health()

    async def _intake_lease_held(self) -> bool:
        """Whether this intake still holds its lease (a connection that does not answer
        within ``LEASE_CHECK_S`` counts as lost); when not, it stops: another intake may be
        numbering chunks and polling Telegram now."""
        assert self.lease is not None
        if self.lease_lost:
            return False
        try:
            held = await asyncio.wait_for(asyncio.to_thread(self.lease.alive), LEASE_CHECK_S)
        except TimeoutError:
            held = False
        if not held:
            log.error("intake lease lost: this intake stops and stands by again")
            self.lease_lost = True
            self.stop()
        return held

    async def _watch_intake_lease(self) -> None:
        """Check the lease every ``LEASE_POLL_S`` while the sources are read (a quiet live
        intake puts no chunks, yet it polls Telegram)."""
        while not self._stopping.is_set():
            await wait_or_stop(self._stopping, LEASE_POLL_S)
            if not self._stopping.is_set() and not await self._intake_lease_held():
                return

    async def _put_numbered(self, chunk: tuple[StoredMessage, ...], mark: datetime) -> None:
        """The fence: each chunk is numbered and put only right after the lease answered, so
        an intake that lost it puts nothing more. Its messages are stored; the next intake
        queues them (``_requeue_unscored``)."""
        if self.lease is not None and not await self._intake_lease_held():
            return
        await super()._put_numbered(chunk, mark)

    async def _drained(self) -> bool:
        """Wait until both queues are empty (scorers and the index took all an earlier intake
        queued); False if the run was stopped first.

        Why: a crashed intake's chunks stay in Redis, and the store cannot tell them from
        messages stored but never queued. Once the queues are empty it can: every unscored
        message is one that no queue holds. And a chunk number the crash left unused (saved,
        never put) is then provably lost, which lets the index skip it at once (``_gap``)."""
        said = False
        while not self._stopping.is_set():
            ahead = await self.score_stream.stats()
            behind = await self.index_stream.stats()
            if ahead.backlog == 0 and behind.backlog == 0:
                return True
            if not said:
                log.info(
                    "intake waits for %d chunks to score and %d to index, queued before it"
                    " started (scoring and index workers must be running)",
                    ahead.backlog,
                    behind.backlog,
                )
                said = True
            await wait_or_stop(self._stopping, DRAIN_POLL_S)
        return False

    async def _periodic_round(self) -> None:
        if self.role == "intake":
            # Health for `moodring status` and the periodic jobs (digests, inbox retention,
            # the state log); ticking and delivery are other workers' work.
            await self.save_health()
            for job in self.periodic:
                try:
                    await job(datetime.now(UTC))
                except Exception:  # one failing job must not stop the others
                    log.exception("periodic job failed")
        else:
            await super()._periodic_round()

    # ------------------------------------------------------------------ scoring

    async def _run_scoring(self) -> None:
        """Score chunks until stopped: commit the scores, put the scored chunk, then ack
        (a worker killed anywhere before the ack leaves the chunk pending in Redis, and
        another scorer takes it over after ``claim_idle_ms``)."""
        await self.index_stream.reopen()
        getter = Getter(self.to_score)
        try:
            while not self._stopping.is_set():
                try:
                    received = await getter.next(IDLE_S)
                except Closed:
                    break
                if received is None:
                    continue
                scored = await asyncio.to_thread(self.score_chunk, received.item)
                await self.to_index.put(scored)
                await self.to_score.ack(received)
        finally:
            await getter.cancel()

    # ------------------------------------------------------------------ delivery

    async def _run_delivery(self) -> None:
        """The delivery loop alone: claim unsent outbox rows, send, mark them sent."""
        await self.deliver()
        while not await wait_or_stop(self._stopping, self.config.delivery_s):
            try:
                await self.deliver()
            except Exception:  # a bad round (the database away too long) must not end it
                log.exception("delivery round failed; retrying in %.0fs", self.config.delivery_s)

    # ------------------------------------------------------------------ index

    async def _run_index(self) -> None:
        """Wait for the index lease (a standby polls every ``LEASE_POLL_S``), then tick
        until stopped or the lease is lost (then wait for it again)."""
        assert self.lease is not None
        standby = False
        while not self._stopping.is_set():
            if await asyncio.to_thread(self.lease.try_take):
                log.info("index lease taken: this worker is the ticker")
                standby = False
                try:
                    await self._tick_while_held()
                finally:
                    await asyncio.to_thread(self.lease.release)
            else:
                if not standby:
                    log.info("index lease held by another worker: standing by")
                    standby = True
                await wait_or_stop(self._stopping, LEASE_POLL_S)

    async def _resume(self) -> ReorderBuffer[Received[ScoredChunk]]:
        """A fresh engine from the store's checkpoints, as the last holder left them."""
        self.index = IndexEngine(self.store, self.config)
        self.index.stop = self._stopping.is_set
        await self._read_clock()
        saved = await asyncio.to_thread(self.store.checkpoint, INDEX_CHECKPOINT)
        next_seq, mark = index_progress(saved)
        self._mark = mark
        # Every scored message, not only those up to the mark: an applied chunk may hold
        # messages past its watermark, and their chunk is acked, never to come again.
        newest = await asyncio.to_thread(self.store.newest_scored_time)
        async with self._indexing:
            if newest is not None:
                await asyncio.to_thread(self.index.load, newest)
            if mark is not None:
                await asyncio.to_thread(self.run_ticks, mark)
        log.info("index resumes at chunk %d, ticked to %s", next_seq, mark)
        return ReorderBuffer(next_seq)

    async def _read_clock(self) -> bool:
        """Whether the intake reads live sources (``CLOCK_CHECKPOINT``). Live, an alert about
        a reading older than ``alert_max_age_s`` (a catch-up after a gap) is history, stored
        and never sent, as in a live `moodring run`."""
        clock = await asyncio.to_thread(self.store.checkpoint, CLOCK_CHECKPOINT) == "1"
        self.index.max_age = timedelta(seconds=self.config.alert_max_age_s) if clock else None
        return clock

    async def _clock_tick(self, buffer: ReorderBuffer[Received[ScoredChunk]]) -> None:
        """A quiet live chat still ticks on the wall clock, as in `moodring run`: but only
        when nothing is on its way to the index (stored and unscored, queued to score or to
        index, or held here), or its hour would be read without those messages."""
        if not await self._read_clock() or len(buffer):
            return
        if await asyncio.to_thread(self.store.unscored, 1):
            return
        if (await self.score_stream.stats()).backlog or (await self.index_stream.stats()).backlog:
            return
        await self.advance_index(datetime.now(UTC))

    async def _tick_while_held(self) -> None:
        assert self.lease is not None
        buffer = await self._resume()
        self._skipped = set()
        getter = Getter(self.to_index)
        gap_since: float | None = None
        clock_at = time.monotonic()
        touch_s = self.index_stream.config.claim_idle_ms / 4000
        keeper = asyncio.create_task(self._keep_held(buffer, touch_s))
        try:
            while not self._stopping.is_set():
                try:
                    received = await getter.next(min(IDLE_S, touch_s))
                except Closed:
                    break
                if not await asyncio.to_thread(self.lease.alive):
                    # Another worker may hold it now: stop at once; what this one holds
                    # unacked is taken over by the next holder.
                    return
                if received is not None:
                    await self._offer(buffer, received)
                    while (ready := buffer.take()) is not None:
                        await self._apply(ready)
                        if self._stopping.is_set():
                            return
                    await self.index_stream.hold(min(len(buffer), self.max_held))
                elif time.monotonic() - clock_at >= self.config.delivery_s:
                    clock_at = time.monotonic()  # quiet: the live bot's delivery round
                    await self._clock_tick(buffer)
                if not buffer.waiting:
                    gap_since = None
                    continue
                now = time.monotonic()
                gap_since = gap_since or now
                # Looked into when the queue is quiet, or once the timeout passed in a stream.
                quiet = received is None or now - gap_since >= self.gap_timeout_s
                if quiet and await self._gap(now - gap_since, len(buffer)):
                    missing = buffer.skip()
                    self._skipped.update(missing)
                    log.warning(
                        "index: chunks %s are lost (no queue holds them); going on without"
                        " them (their messages, if scored later, count as late)",
                        missing,
                    )
                    while (ready := buffer.take()) is not None:
                        await self._apply(ready)
                    await self.index_stream.hold(min(len(buffer), self.max_held))
                    gap_since = None
        finally:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            await getter.cancel()

    async def _keep_held(
        self, buffer: ReorderBuffer[Received[ScoredChunk]], every_s: float
    ) -> None:
        """Touch the entries this worker holds unacked on purpose (those in the buffer and the
        one being applied, which a long catch-up may take minutes over) every quarter of
        ``claim_idle_ms``, so no ``get`` (this worker's own included) takes them over as a
        dead consumer's: that would count deliveries until they were set aside as poison, and
        hand the chunk in progress back as a redelivery to be acked before its work is done."""
        while True:
            await asyncio.sleep(every_s)
            held = [r.tag for r in buffer.held()]
            if self._applying is not None:
                held.append(self._applying.tag)
            try:
                await self.index_stream.touch(held)
            except QueueUnavailable as exc:  # Redis away: the main loop meets it too
                log.warning("index: could not touch held chunks: %s", exc)

    async def _offer(
        self, buffer: ReorderBuffer[Received[ScoredChunk]], received: Received[ScoredChunk]
    ) -> None:
        seq = received.item.seq
        if seq is None:  # from a one-process producer: nothing to order it by
            log.warning("index: an unnumbered chunk; applied as it came")
            await self.advance_index(received.item.watermark, rows=received.item.rows)
            await self.to_index.ack(received)
            return
        verdict = buffer.offer(seq, received)
        if verdict == "stale":
            if seq in self._skipped:  # given up for lost, and here after all: late rows
                self._skipped.discard(seq)
                await self.advance_index(None, rows=received.item.rows)
            # Otherwise applied already (a redelivery after a crash): its rows are held.
            await self.to_index.ack(received)
        elif verdict == "duplicate":
            held = next(r for r in buffer.held() if r.item.seq == seq)
            if held.tag != received.tag:  # the same chunk put twice (a retried put)
                await self.to_index.ack(received)

    async def _apply(self, received: Received[ScoredChunk]) -> None:
        """Add the chunk's rows, tick to its watermark, save the progress, then ack."""
        chunk = received.item
        assert chunk.seq is not None
        self._applying = received
        try:
            await self.advance_index(chunk.watermark, rows=chunk.rows)
        finally:
            self._applying = None
        if chunk.watermark is not None:
            self._mark = chunk.watermark
        progress = {"next": chunk.seq + 1, "watermark": iso(self._mark) if self._mark else None}
        await asyncio.to_thread(
            self.store.set_checkpoint, INDEX_CHECKPOINT, json.dumps(progress), datetime.now(UTC)
        )
        await self.to_index.ack(received)

    async def _gap(self, waited_s: float, held: int) -> bool:
        """Whether the missing chunk can no longer come (``held``: chunks in the buffer).

        It cannot once no chunk waits to be scored (so every chunk intake ever put has been
        scored and put on ``to_index``, or set aside as poison), and then nothing on
        ``to_index`` is undelivered, pending on another consumer, or pending on this one
        beyond what the buffer holds (an entry a ``get`` still in flight has just taken over
        from a dead holder). So all of it is in the buffer. The reads in that order close the
        race with a scorer between its put and its ack. A crash between intake's numbering and
        its put is such a gap; a restarted intake waits for empty queues, which lets this see
        it. Past ``gap_timeout_s`` the chunk is given up anyway, so a gap nothing proves
        cannot stall the index for ever."""
        if waited_s >= self.gap_timeout_s:
            return True
        if (await self.score_stream.stats()).backlog:
            return False
        if (await self.index_stream.stats()).undelivered:
            return False
        mine, others = await self.index_stream.pending_split()
        return others == 0 and mine <= held
