"""`moodring rescore`: re-score stored messages with the current model and rebuild history.

A database scored by one model must not silently mix with the next. Rescoring runs in two
steps, each safe to interrupt and run again:

1. **Score.** Messages whose score came from another model are scored again, oldest first,
   in chunks of the pipeline's size, each chunk committed on its own; a rerun skips what
   already carries the current model. Messages whose text retention purged cannot be
   rescored: they keep their old score and model id, and readings over them say
   "mixed models".
2. **Rebuild.** Readings and alerts from the earliest rescored hour on are computed again by
   the same index engine the pipeline runs, tick by tick from the first hour of history (so
   alert rule state is exact; the earlier ticks change nothing). The rebuild creates no outbox rows:
   it never sends an alert about the past, nor re-sends one already delivered. Alerts it
   replaces move to ``alerts_superseded`` (with their delivery records kept), so what users
   were sent stays on record.

The earliest rescored hour is saved before the first chunk is committed, so a rerun after a
crash rebuilds from there even when nothing is left to score.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from bot.pipeline.config import PipelineConfig, floor_time
from bot.pipeline.ticks import IndexEngine
from bot.store import Store, iso, parse_ts
from nlp.types import Score

log = logging.getLogger(__name__)

#: Checkpoint naming the hour a rebuild must start from (set until the rebuild finishes).
REBUILD_CHECKPOINT = "rescore_rebuild_from"


class ScorerLike(Protocol):
    """What rescoring needs of a scorer."""

    model_id: str

    def score(self, texts: Sequence[str]) -> list[Score]: ...


@dataclass(frozen=True, slots=True)
class RescoreReport:
    """What one ``moodring rescore`` did."""

    model_id: str
    rescored: int
    kept_purged: int  # text purged by retention: old score and model id kept
    rebuilt_from: datetime | None
    ticks: int
    alerts_before: int  # alerts from the rebuild hour on, before
    alerts_after: int


def rescore(
    store: Store,
    scorer: ScorerLike,
    config: PipelineConfig,
    since: datetime | None = None,
    chunk: int = 1024,
    progress: Callable[[int, int], None] | None = None,
    engine_factory: Callable[[Store, PipelineConfig], IndexEngine] | None = None,
) -> RescoreReport:
    """Re-score messages created at or after ``since`` (all when None) and rebuild.

    Args:
        store: the database (nothing else may write to it meanwhile; the CLI checks).
        scorer: the current model.
        config: the pipeline's configuration (tick length, assets, alert window).
        since: only messages created at or after this time.
        chunk: texts per scorer call and per committed transaction.
        progress: called with (done, total) after each chunk.
        engine_factory: builds the index engine for the rebuild (tests pass their own
            parameters); ``IndexEngine(store, config)`` by default.
    """
    model_id = scorer.model_id
    total, purged = store.rescore_counts(model_id, since)
    done = 0
    saved = store.checkpoint(REBUILD_CHECKPOINT)
    rebuild_from = parse_ts(saved) if saved else None
    after: tuple[str, str, str, str] | None = None
    while True:
        todo = store.to_rescore(model_id, since, after, chunk)
        if not todo:
            break
        hour = floor_time(todo[0][1], config.tick_s)
        if rebuild_from is None or hour < rebuild_from:
            rebuild_from = hour
            # Saved before the scores change: a crash after this still rebuilds from here.
            store.set_checkpoint(REBUILD_CHECKPOINT, iso(rebuild_from), datetime.now(UTC))
        scores = scorer.score([text for _, _, text in todo])
        store.save_scores(
            [(key, s) for (key, _, _), s in zip(todo, scores, strict=True)], datetime.now(UTC)
        )
        key, created, _ = todo[-1]
        after = (iso(created), *key)
        done += len(todo)
        if progress is not None:
            progress(done, total)
    if rebuild_from is None:
        return RescoreReport(model_id, 0, purged, None, 0, 0, 0)
    ticks, before, after_count = rebuild(store, config, rebuild_from, engine_factory)
    store.delete_checkpoint(REBUILD_CHECKPOINT)
    return RescoreReport(model_id, done, purged, rebuild_from, ticks, before, after_count)


def rebuild(
    store: Store,
    config: PipelineConfig,
    start: datetime,
    engine_factory: Callable[[Store, PipelineConfig], IndexEngine] | None = None,
) -> tuple[int, int, int]:
    """Recompute readings and alerts from ``start`` up to the last stored tick.

    The index runs again from the first hour of history, since alert rule state (an
    extreme band already entered, a cooldown) is only exact when replayed from there: with
    ``--since``, a restart at ``start`` would record again a band entered before it. The
    ticks before ``start`` rewrite the same readings and find their alerts stored already;
    only alerts from ``start`` on are replaced. Returns (ticks replayed, alerts from
    ``start`` before, alerts from ``start`` after).
    """
    last = store.checkpoint_time()
    first = store.oldest_message_time()
    if last is None or first is None:
        return 0, 0, 0
    start = max(start, floor_time(first, config.tick_s))
    before = store.supersede_from(start)
    engine = (engine_factory or IndexEngine)(store, config)
    ticks = 0
    for t in engine.due_ticks(last):
        engine.load(t)
        ticks += engine.advance(t, outbox=False)[0]
    after = store.count_alerts_since(start)
    log.info("rebuilt %d ticks from %s: %d alerts before, %d after", ticks, start, before, after)
    return ticks, before, after
