"""The scoring stage: each chunk from intake scored in one call, stored, and handed on."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from bot.pipeline.config import PipelineConfig, ScorerLike
from bot.pipeline.observer import Observer
from bot.pipeline.queue import Closed, Queue
from bot.pipeline.work import ScoreChunk, ScoredChunk, message_key, scored_row
from bot.store import ScoredRow, Store, StoredMessage
from nlp.errors import NlpError
from nlp.types import Score

log = logging.getLogger(__name__)

#: What a failing scorer may raise for one bad batch; the batch is then scored one by one.
SCORER_ERRORS = (NlpError, RuntimeError, ValueError)


class ScoringStage:
    """Scores the chunks intake cut, commits the scores, then passes the rows to the index."""

    store: Store
    scorer: ScorerLike
    config: PipelineConfig
    observer: Observer
    to_score: Queue[ScoreChunk]
    to_index: Queue[ScoredChunk]
    _stopping: asyncio.Event

    def score_chunk(self, chunk: ScoreChunk) -> ScoredChunk:
        """Score one chunk in one scorer call and store the scores (a message the model
        cannot score is set aside with its error); return the scored rows.

        Scoring a chunk twice (a redelivery after a crash) stores the same scores again.
        """
        items = list(chunk.messages)
        texts = [s.norm_text or "" for s in items]
        try:
            scores = self.scorer.score(texts) if items else []
            pairs = list(zip(items, scores, strict=True))
            self.store.save_scores([(message_key(s), sc) for s, sc in pairs], datetime.now(UTC))
            self.observer.on_scored(len(pairs))
        except SCORER_ERRORS as exc:
            log.warning("batch of %d failed (%s); scoring one by one", len(texts), exc)
            pairs = self._score_one_by_one(items)
        rows: tuple[ScoredRow, ...] = tuple(scored_row(s, sc) for s, sc in pairs)
        return ScoredChunk(rows, chunk.watermark, chunk.seq)

    def _score_one_by_one(self, items: list[StoredMessage]) -> list[tuple[StoredMessage, Score]]:
        done = []
        failed = 0
        for item in items:
            key = message_key(item)
            try:
                [score] = self.scorer.score([item.norm_text or ""])
            except SCORER_ERRORS as exc:
                log.error("message %s set aside: %s", ":".join(key), exc)
                self.store.mark_failed(key, f"{type(exc).__name__}: {exc}")
                failed += 1
                continue
            self.store.save_scores([(key, score)], datetime.now(UTC))
            done.append((item, score))
        # Told once for the chunk, as a whole chunk scored at once is.
        self.observer.on_failed(failed)
        self.observer.on_scored(len(done))
        return done

    def score_pending(self, partial: bool = True) -> int:
        """Score what the store holds unscored, oldest first, in chunks of ``score_chunk``
        (start-up recovery and tests; a running pipeline scores what intake queues).

        Without ``partial`` only full chunks are scored. Returns how many were scored.
        """
        done = 0
        while not self._stopping.is_set():
            todo = self.store.unscored_messages(self.config.score_chunk)
            if not todo or (len(todo) < self.config.score_chunk and not partial):
                break
            done += len(self.score_chunk(ScoreChunk(tuple(todo), None)).rows)
        return done

    async def scoring(self) -> None:
        """Score chunks until intake closes the queue; the index gets each chunk's rows."""
        while True:
            try:
                received = await self.to_score.get()
            except Closed:
                break
            if self._stopping.is_set():
                break  # what is left stays unscored in the store; the next start scores it
            # Scoring is CPU-bound: run it off the event loop so intake and chat keep going.
            scored = await asyncio.to_thread(self.score_chunk, received.item)
            await self.to_index.put(scored)
            # Committed and handed on: a crash from here on repeats nothing.
            await self.to_score.ack(received)
        await self.to_index.close()
