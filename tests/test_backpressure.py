"""Backpressure: a scorer slower than intake slows intake down instead of letting work pile up.

What the design bounds (bot/pipeline/intake.py): intake stores a batch in SQLite *before* it
cuts full chunks of ``score_chunk`` stored messages and puts them on the bounded ``to_score``
queue, and waits on that put. The scorer takes one chunk at a time. So with one source:

* in memory, messages taken from the source but not yet stored are at most one batch (the
  batch being filled) plus the one ``anext()`` in flight;
* on disk, messages stored but not yet scored are at most
  ``(queue_size + 2) * score_chunk + batch_size - 1``: the chunks in the queue, the one being
  scored, and either a chunk waiting on its put (with fewer than ``batch_size`` left over)
  or fewer than ``score_chunk`` not yet cut plus the batch being stored. Nothing grows with
  the stream.

The test measures both, with a watcher task sampling while the real pipeline runs, and in
the scorer itself at every call.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.mood.spam import SpamConfig, SpamMarker
from bot.pipeline.config import PipelineConfig
from bot.pipeline.runner import Pipeline, Queues
from bot.store import Store
from connectors.types import Message
from nlp.assets import AssetTable
from nlp.language import LanguageDetector
from nlp.types import Score
from tests.doubles import ListSource

N = 2000
CONFIG = PipelineConfig(batch_size=32, score_chunk=64, queue_size=4, sinks_targets=())
START = datetime(2022, 6, 1, tzinfo=UTC)
WORDS = ["moon", "dump", "chart", "volume", "bullish", "rekt", "watching", "news", "gains"]


def fast_posts(n: int) -> list[Message]:
    """Thousands of distinct English posts."""
    posts = []
    for i in range(n):
        words = " ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 5))
        posts.append(
            Message(
                platform="fast",
                community="c",
                channel="c",
                message_id=str(i),
                author=f"user{i % 97}",
                text=f"$BTC {words} today, post number {i}",
                created_at=START + timedelta(seconds=60 * i),
            )
        )
    return posts


@dataclass
class SlowScorer:
    """A scorer slower than intake: each call takes a fixed time per text. It records every
    text it scores and how far intake was ahead at each call."""

    store: Store
    seconds_per_text: float
    texts: list[str] = field(default_factory=list)
    unscored_at_call: list[int] = field(default_factory=list)

    def score(self, texts: Sequence[str]) -> list[Score]:
        [(unscored,)] = self.store.query("SELECT COUNT(*) FROM messages WHERE status = 'new'")
        self.unscored_at_call.append(unscored)
        time.sleep(self.seconds_per_text * len(texts))
        self.texts += texts
        return [Score(0.2, 0.5, 0.3, "neutral", "slow-test") for _ in texts]


@dataclass
class Sample:
    to_score: int
    to_index: int
    unscored: int  # stored in SQLite, not yet scored
    unstored: int  # taken from the source, not yet stored
    ahead: int  # taken from the source, not yet scored


def test_a_slow_scorer_slows_intake_and_the_backlog_stays_bounded(tmp_path: Path) -> None:
    store = Store(tmp_path / "bp.db")
    scorer = SlowScorer(store, seconds_per_text=0.0015)
    pipeline = Pipeline(
        store=store,
        scorer=scorer,
        assets=AssetTable.load(),
        language=LanguageDetector(),
        spam=SpamMarker(SpamConfig()),
        sinks={},
        queues=Queues.in_process(CONFIG.queue_size),
        config=CONFIG,
    )
    # As fast as the consumer takes them; a real source awaits its network now and then.
    source = ListSource(fast_posts(N), name="fast", pause_every=50)
    samples: list[Sample] = []

    def sample() -> Sample:
        [(stored, unscored)] = store.query(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE status = 'new') FROM messages"
        )
        return Sample(
            to_score=pipeline.to_score.qsize(),
            to_index=pipeline.to_index.qsize(),
            unscored=unscored,
            unstored=source.yielded - stored,
            ahead=source.yielded - (stored - unscored),
        )

    async def watch(done: asyncio.Event) -> None:
        while not done.is_set():
            samples.append(sample())
            await asyncio.sleep(0.002)

    async def main() -> float:
        done = asyncio.Event()
        watcher = asyncio.create_task(watch(done))
        started = time.monotonic()
        await pipeline.run([source])
        elapsed = time.monotonic() - started
        done.set()
        await watcher
        return elapsed

    elapsed = asyncio.run(main())

    # The bounded queues never held more than their size, and the scoring queue did fill up:
    # intake really waited on it.
    assert max(s.to_score for s in samples) == CONFIG.queue_size
    assert max(s.to_index for s in samples) <= CONFIG.queue_size
    # Stored but unscored never exceeded the bound, at any sample or any scorer call, and
    # got near it (the bound is tight, not vacuous).
    on_disk = (CONFIG.queue_size + 2) * CONFIG.score_chunk + CONFIG.batch_size - 1
    backlog = [s.unscored for s in samples] + scorer.unscored_at_call
    assert max(backlog) <= on_disk
    assert max(backlog) >= CONFIG.queue_size * CONFIG.batch_size
    # In memory: at most the batch being filled and the message in flight.
    assert max(s.unstored for s in samples) <= CONFIG.batch_size + 1
    # So the source was read at the scorer's pace: never more than the bounds ahead of it
    # (2000 messages, so without backpressure it would have been read far ahead).
    assert max(s.ahead for s in samples) <= on_disk + CONFIG.batch_size + 1
    assert len(samples) > 100
    assert elapsed >= N * scorer.seconds_per_text  # the scorer set the pace

    # At the end: everything stored once and scored once (the scorer saw each text once).
    ids = store.query("SELECT message_id FROM messages WHERE status = 'scored'")
    assert Counter(i for (i,) in ids) == Counter(str(i) for i in range(N))
    assert store.query("SELECT COUNT(*) FROM scores") == [(N,)]
    assert len(scorer.texts) == N and len(set(scorer.texts)) == N
    assert pipeline.observer.counters.added == N and pipeline.observer.counters.scored == N
    store.close()
