"""The intake stage: messages from sources stored in batches, then cut into scoring chunks by
their position in the stream, each carrying the sources' watermark."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from bot.errors import SourceFailed
from bot.mood.spam import SpamMarker, author_weight
from bot.pipeline.config import Acking, PipelineConfig, Resettable
from bot.pipeline.observer import Observer
from bot.pipeline.queue import Queue
from bot.pipeline.work import ScoreChunk
from bot.store import Store, StoredMessage
from bot.types import CHAT_PLATFORMS
from connectors.base import Source
from connectors.errors import ConnectorError
from connectors.types import Message
from nlp import spamtext
from nlp.assets import AssetTable
from nlp.language import LanguageDetector, detect_language, is_english
from nlp.normalize import normalize

log = logging.getLogger(__name__)

#: Stage workers: the checkpoint holding the next ``ScoreChunk.seq`` intake will give.
SEQ_CHECKPOINT = "intake_next_seq"


class Watermark:
    """How far message time has got: the oldest of the live sources' newest messages.

    The index may evaluate a minute only once every source has delivered past it. A source
    that has ended, or been idle (nothing delivered) for ``idle_timeout_s`` of wall-clock
    time, no longer holds it back, so a quiet chat does not stall alerts from a busy one.
    Live runs also set ``lateness_s``: the watermark is then never older than the wall clock
    less that, so a source that streams old posts (an X search catching up on the past
    hours) cannot hold back the alerts of chats that speak now. Its posts stamped before a
    minute already evaluated are late: stored, scored and counted, not evaluated again.
    """

    def __init__(
        self,
        idle_timeout_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        lateness_s: float | None = None,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.idle_timeout_s = idle_timeout_s
        #: None on replays: their message time has nothing to do with the wall clock.
        self.lateness_s = lateness_s
        self._clock = clock
        self._wall = wall
        self._newest: dict[str, datetime] = {}
        self._heard: dict[str, float] = {}  # source → when it last delivered (or opened)
        self._open: set[str] = set()
        self._ended: datetime | None = None  # the newest message of any source that ended

    def opened(self, source: str) -> None:
        self._open.add(source)
        self._heard[source] = self._clock()

    def closed(self, source: str) -> None:
        self._open.discard(source)
        newest = self._newest.get(source)
        if newest is not None and (self._ended is None or newest > self._ended):
            self._ended = newest

    def delivered(self, source: str, newest: datetime) -> None:
        held = self._newest.get(source)
        if held is None or newest > held:
            self._newest[source] = newest
        self._heard[source] = self._clock()

    def value(self) -> datetime | None:
        """The watermark; ``None`` while a busy source has delivered nothing yet."""
        now = self._clock()
        busy = [s for s in self._open if now - self._heard[s] < self.idle_timeout_s]
        mark: datetime | None
        if any(s not in self._newest for s in busy):
            mark = None
        elif busy:
            mark = min(self._newest[s] for s in busy)
        else:  # every source ended or idle: nothing holds message time back
            known = [*self._newest.values(), *([self._ended] if self._ended else [])]
            mark = max(known) if known else None
        if self.lateness_s is not None:
            floor = self._wall() - timedelta(seconds=self.lateness_s)
            mark = floor if mark is None else max(mark, floor)
        return mark


class IntakeStage:
    """Stores messages, acks them to their source, and queues fixed chunks for scoring."""

    store: Store
    assets: AssetTable
    language: LanguageDetector
    spam: SpamMarker
    config: PipelineConfig
    observer: Observer
    to_score: Queue[ScoreChunk]
    watermark: Watermark
    _stopping: asyncio.Event
    #: Stored messages not yet cut into a chunk, in stream order.
    _unchunked: list[StoredMessage]
    #: Whether this is a live run (partial chunks by waiting time), and since when (monotonic
    #: clock) the oldest unchunked message waits.
    _live: bool
    _waiting_since: float | None
    #: One flush at a time prepares and stores (made on first use, on the loop): ``prepare``
    #: runs in a worker thread, and spam marks depend on the order messages reach the marker,
    #: so two flushes must not interleave. Each source's intake task flushes, and they overlap.
    _storing: asyncio.Lock | None = None
    #: Stage workers: the next chunk's sequence number (``ScoreChunk.seq``), persisted in
    #: the ``SEQ_CHECKPOINT`` before each put; None in one process (chunks unnumbered).
    _next_seq: int | None = None
    #: Numbering, saving and putting a chunk happen one chunk at a time (several sources'
    #: intake tasks cut chunks): a saved number must never go backwards.
    _numbering: asyncio.Lock | None = None

    def prepare(self, message: Message, edit: bool = False) -> StoredMessage:
        """Per-message work done at intake: normalise, assets, language, spam.

        An edit is checked only by the text rules (links, shill patterns): the stream rules
        would take it for a near-duplicate of its own first version."""
        norm = normalize(message.text)
        assets = self.assets.extract(message.text or "")
        set_aside = None
        if not is_english(message.text, self.language):
            code, _ = detect_language(message.text, self.language)
            set_aside = f"lang:{code or 'unknown'}"
        return StoredMessage(
            message=message,
            norm_text=norm,
            assets=assets,
            spam_reason=(
                spamtext.text_reason(message.text, norm) if edit else self.spam.check(message, norm)
            ),
            set_aside=set_aside,
            author_weight=author_weight(message),
        )

    def _prepare_batch(
        self,
        latest: dict[tuple[str, str, str], Message],
        stored: dict[tuple[str, str, str], str | None],
    ) -> tuple[list[StoredMessage], list[StoredMessage]]:
        """``prepare`` the batch's new posts and its edits, in batch order (a worker thread
        runs this, under ``_storing``): the new ones and the edited ones."""
        fresh, edited = [], []
        for key, m in latest.items():
            if key not in stored:
                fresh.append(self.prepare(m))
            elif stored[key] is not None and stored[key] != m.text and m.text:
                # An edit (same key, new text). A replay of the same post changes nothing, and
                # nor does one whose stored text retention already purged.
                edited.append(self.prepare(m, edit=True))
        return fresh, edited

    def _allowed(self, message: Message) -> bool:
        """Whether ``message`` comes from a source the bot may read: a chat community only if
        the operator allow-listed it (``communities``); X searches and replays always."""
        allowed = self.config.communities
        if allowed is None or message.platform not in CHAT_PLATFORMS:
            return True
        return f"{message.platform}:{message.community}" in allowed

    async def _flush(
        self, batch: list[Message], source: Source | None = None, partial: bool = True
    ) -> None:
        # Communities whose moderators turned listening off (or narrowed it) are not read.
        settings = {
            key: self.store.community_settings(*key)
            for key in {(m.platform, m.community) for m in batch}
        }
        heard = [
            m
            for m in batch
            if self._allowed(m) and settings[(m.platform, m.community)].listens_to(m.channel)
        ]
        # People who asked to be forgotten are not stored again (counted; acked below).
        if withheld := await asyncio.to_thread(self.store.withheld, heard):
            kept = [m for m in heard if (m.platform, m.channel, m.message_id) not in withheld]
            self.observer.on_withheld(len(heard) - len(kept))
            heard = kept
        # The same key twice in one batch is a post and its edit: the last text wins.
        latest = {(m.platform, m.channel, m.message_id): m for m in heard}
        if self._storing is None:
            self._storing = asyncio.Lock()
        async with self._storing:
            stored = self.store.stored_texts(list(latest))
            # Normalising, assets, language and spam marks are CPU work (a hostile post costs
            # milliseconds): a worker thread does it, so polling, commands and heartbeats go on.
            fresh, edited = await asyncio.to_thread(self._prepare_batch, latest, stored)
            before = self.watermark.value()
            added = self.store.add_messages(fresh, datetime.now(UTC)) if fresh else 0
            changed = self.store.update_edited(edited) if edited else 0
            # Later than the watermark already handed on: stored and scored, but the minutes
            # already evaluated are not evaluated again.
            late = (
                sum(1 for s in fresh if s.message.created_at < before) if before is not None else 0
            )
            self.observer.on_stored(added, changed, late)
            # Stored: now a source that keeps its own inbox may forget them (see ``Acking``).
            if isinstance(source, Acking):
                source.ack(batch)
            newest = max(m.created_at for m in batch)
            if source is not None:
                self.watermark.delivered(source.name, newest)
            self.observer.on_messages(source.name if source else None, len(batch), newest)
            self._unchunked += fresh + edited
        # Backpressure: this waits while the scorer is ``queue_size`` chunks behind.
        await self.cut_chunks(partial)

    async def cut_chunks(self, partial: bool) -> None:
        """Queue full chunks of ``score_chunk`` stored messages; with ``partial``, the rest too.

        Only full chunks are cut while a source streams on, so a replay is cut at the same
        positions whatever the timing; a partial chunk goes when a source is quiet or ends.
        """
        size = self.config.score_chunk
        if self._unchunked and self._waiting_since is None:
            self._waiting_since = time.monotonic()
        if (
            self._live
            and self._waiting_since is not None
            and time.monotonic() - self._waiting_since >= self.config.chunk_wait_s
        ):
            partial = True  # live: a slow stream's messages must not wait for a full chunk
        while len(self._unchunked) >= size or (partial and self._unchunked):
            chunk, self._unchunked = self._unchunked[:size], self._unchunked[size:]
            newest = max(s.message.created_at for s in chunk)
            # Never past the chunk's own newest message (what follows it in the stream may
            # share that second), nor past a source that lags behind. A source that has not
            # delivered yet holds nothing back: it may be a chat that stays quiet.
            mark = self.watermark.value()
            mark = newest if mark is None else min(mark, newest)
            self._waiting_since = time.monotonic() if self._unchunked else None
            if self._next_seq is None:
                await self.to_score.put(ScoreChunk(tuple(chunk), mark))
            else:
                await self._put_numbered(tuple(chunk), mark)

    async def _put_numbered(self, chunk: tuple[StoredMessage, ...], mark: datetime) -> None:
        """Put ``chunk`` with the next sequence number (stage workers).

        The number after it is saved *before* the put: a crash between the two leaves a
        number unused (a gap, which the index worker skips once no queue can still hold it),
        never one number on two different chunks."""
        if self._numbering is None:
            self._numbering = asyncio.Lock()
        async with self._numbering:
            assert self._next_seq is not None
            seq = self._next_seq
            self._next_seq += 1
            await asyncio.to_thread(
                self.store.set_checkpoint, SEQ_CHECKPOINT, str(self._next_seq), datetime.now(UTC)
            )
            await self.to_score.put(ScoreChunk(chunk, mark, seq))

    async def intake(self, source: Source) -> None:
        """Store messages from ``source`` in batches: when a batch is full, or when the
        source has been quiet for ``flush_s`` (so a live chat's messages are not held)."""
        batch: list[Message] = []
        messages = source.messages().__aiter__()
        pending: asyncio.Future[Message] | None = None
        started = time.monotonic()  # when the batch's first message came
        self.watermark.opened(source.name)
        try:
            while not self._stopping.is_set():
                if pending is None:
                    pending = asyncio.ensure_future(messages.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=self.config.flush_s)
                if not done:
                    if batch:
                        await self._flush(batch, source)
                        batch = []
                    elif self._unchunked:
                        # The last batch closed by age, cutting only full chunks: the source
                        # is quiet now, so the rest goes too (else it waits for a next post).
                        await self.cut_chunks(partial=True)
                    continue
                try:
                    message = pending.result()
                except StopAsyncIteration:
                    pending = None
                    break
                pending = None
                if not batch:
                    started = time.monotonic()
                batch.append(message)
                if (
                    len(batch) >= self.config.batch_size
                    or time.monotonic() - started >= self.config.flush_s
                ):
                    # A full batch, or one that waited ``flush_s`` while the source streams on
                    # (a slow live stream): store it, but cut only full chunks, so chunks stay
                    # a matter of stream position (live runs add ``chunk_wait_s``).
                    await self._flush(batch, source, partial=False)
                    batch = []
        except ConnectorError as exc:
            raise SourceFailed(f"source {source.name} failed: {exc}") from exc
        finally:
            if pending is not None:
                pending.cancel()
            if batch:
                await self._flush(batch, source)
            else:
                await self.cut_chunks(partial=True)
            self.watermark.closed(source.name)

    async def _fresh_intake(self, source: Source) -> None:
        """``intake`` as the supervisor (re)starts it: a restarted source first forgets what
        it handed over to the failed run without an ack, so nothing is stranded."""
        if isinstance(source, Resettable):
            source.reset()
        await self.intake(source)
