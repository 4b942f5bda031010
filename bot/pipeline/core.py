"""The pipeline: intake → scoring → index and alerts → delivery, joined by bounded queues.

Each stage's work is keyed and stored before the next stage sees it, so a crash anywhere
loses nothing and a restart repeats nothing (except, at most, the one chat send that a
crash interrupted). Intake stores raw messages first and never waits on the model; the
scorer drains whatever is stored and unscored; the index ticks once per hour of message
time, as of that hour (no look-ahead), and stores each tick with its alerts atomically.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import signal
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Protocol, runtime_checkable

from bot.errors import SourceFailed
from bot.market.alerts import (
    DAILY_CLOSE,
    MARKET_STATE,
    MarketAlertParams,
    composite_alert,
    divergence_alert,
    level_alerts,
)
from bot.market.candles import closed_by
from bot.market.composite import market_reading
from bot.market.reads import funding_at, stored_weights
from bot.mood.alerts import AlertParams, AlertState, evaluate
from bot.mood.index import NORM_SPAN, IndexParams, Point, compute_reading, with_norm
from bot.mood.spam import SpamMarker, author_weight
from bot.pipeline.queue import Closed, InProcessQueue
from bot.pipeline.supervisor import HealthBoard, Supervisor, health_to_json
from bot.render import render_alert, render_digest
from bot.store import TICK_CHECKPOINT, ScoredRow, Store, StoredMessage, iso, parse_ts
from bot.types import Alert, MoodReading, Scope
from connectors.base import Sink, Source
from connectors.errors import ConnectorError, DeliveryError, RecipientGone
from connectors.retry import wait_or_stop
from connectors.types import Message
from nlp import spamtext
from nlp.assets import AssetTable
from nlp.errors import NlpError
from nlp.language import LanguageDetector, detect_language, is_english
from nlp.normalize import normalize
from nlp.types import Score

log = logging.getLogger(__name__)

#: How far back the index looks: the 7d window plus its 4-window baseline, and a day spare.
LOOKBACK = timedelta(days=36)


@runtime_checkable
class Acking(Protocol):
    """A source with its own durable inbox: told which messages are now safely stored."""

    def ack(self, messages: Sequence[Message]) -> None: ...


@runtime_checkable
class Resettable(Protocol):
    """A source with in-memory progress (messages handed over, not yet acked) to forget
    before the supervisor restarts it, so they are read again from its durable state."""

    def reset(self) -> None: ...


class ScorerLike(Protocol):
    """What the pipeline needs of a scorer (``nlp.scorer.Scorer`` fits)."""

    def score(self, texts: Sequence[str]) -> list[Score]: ...


@dataclass(slots=True)
class PipelineStats:
    """Counters for progress and the final report (mutable run state, not a domain type)."""

    seen: int = 0
    added: int = 0
    edited: int = 0
    scored: int = 0
    failed: int = 0
    ticks: int = 0
    alerts: int = 0
    delivered: int = 0
    last_time: datetime | None = None
    on_progress: Callable[[PipelineStats], None] | None = field(default=None, repr=False)

    def bump(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self)


@dataclass(frozen=True, slots=True)
class PipelineConfig:
    """Knobs of one pipeline run."""

    batch_size: int = 256  # messages per intake transaction
    score_chunk: int = 1024  # texts per scorer call: more texts, better length bucketing
    flush_s: float = 0.5  # a quiet source's partial batch is stored after this long
    delivery_s: float = 30.0  # live mode: how often unsent alerts are retried
    tick_to_clock: bool = False  # live chats: tick on the wall clock too, so quiet hours tick
    queue_size: int = 64  # in batches
    tick_s: int = 3600
    assets: tuple[str, ...] = ("BTC", "ETH")
    min_asset_mentions: int = 50
    alert_window: str = "24h"
    sinks_targets: tuple[tuple[str, str], ...] = (("console", ""),)
    max_attempts: int = 8
    retention_days: int | None = None  # purge message texts older than this; None keeps them


class IndexEngine:
    """Keeps the recent scored messages in memory and runs the index and alert rules."""

    def __init__(
        self,
        store: Store,
        config: PipelineConfig,
        index_params: IndexParams | None = None,
        alert_params: AlertParams | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.index_params = index_params or IndexParams()
        self.alert_params = alert_params or AlertParams()
        self.market_params = MarketAlertParams()
        self._rows: list[ScoredRow] = []
        self._points: list[Point] = []
        self._times: list[datetime] = []
        self._keys: set[str] = set()
        self._score_mark: int | None = None  # the newest score row at the last load
        self._history: dict[tuple[str, str], deque[MoodReading]] = {}
        last = store.checkpoint(TICK_CHECKPOINT)
        self.last_tick: datetime | None = parse_ts(last) if last else None
        self.tracked_since = store.oldest_message_time()

    def load(self, until: datetime) -> None:
        """Bring newly scored messages up to ``until`` into memory.

        Besides the messages newer than those held, this picks up late ones: created before
        the newest held message but scored since the last load (an X poll every few minutes
        beside a busy chat delivers posts older than the chat's newest message).
        """
        # Scores are inserted in order, so their rowid marks what was scored after a load
        # (wall-clock stamps could be taken before a write waits on the lock).
        mark = self.store.scores_mark()
        since = (self._times[-1] if self._times else until - LOOKBACK) - timedelta(seconds=1)
        rows = self.store.scored_since(since, until)
        if self._times and self._score_mark is not None:
            rows += self.store.scored_since(until - LOOKBACK, since, scored_after=self._score_mark)
        self._score_mark = mark
        for row in rows:
            if row.key in self._keys:
                continue
            self._keys.add(row.key)
            pos = bisect.bisect_right(self._times, row.created_at)
            self._times.insert(pos, row.created_at)
            self._rows.insert(pos, row)
            self._points.insert(pos, row.to_point())
        if self.tracked_since is None:
            self.tracked_since = self.store.oldest_message_time()

    def prune(self, now: datetime) -> None:
        cut = bisect.bisect_left(self._times, now - LOOKBACK)
        if cut:
            for row in self._rows[:cut]:
                self._keys.discard(row.key)
            del self._rows[:cut], self._points[:cut], self._times[:cut]

    def scopes(self, now: datetime) -> list[Scope]:
        """All sources, each configured or busy asset, each community."""
        scopes = [Scope()]
        week = bisect.bisect_left(self._times, now - timedelta(days=7))
        mentions: dict[str, int] = {}
        communities: set[tuple[str, str]] = set()
        for row in self._rows[week:]:
            for asset in row.assets:
                mentions[asset] = mentions.get(asset, 0) + 1
            communities.add((row.community, row.platform))
        assets = list(self.config.assets) + sorted(
            a
            for a, n in mentions.items()
            if n >= self.config.min_asset_mentions and a not in self.config.assets
        )
        scopes += [Scope(asset=a) for a in assets]
        if len(communities) > 1:
            scopes += [Scope(community=c, platform=p) for c, p in sorted(communities)]
        return scopes

    def _scope_points(self, scope: Scope, since: datetime, now: datetime) -> list[Point]:
        lo = bisect.bisect_left(self._times, since)
        hi = bisect.bisect_right(self._times, now)
        out = []
        for row, point in zip(self._rows[lo:hi], self._points[lo:hi], strict=True):
            if scope.asset != "*" and scope.asset not in row.assets:
                continue
            if scope.community != "*" and row.community != scope.community:
                continue
            if scope.platform != "*" and row.platform != scope.platform:
                continue
            out.append(point)
        return out

    def _history_of(self, scope: Scope, window: str, now: datetime) -> deque[MoodReading]:
        key = (scope.key(), window)
        if key not in self._history:
            self._history[key] = deque(
                self.store.readings(scope, window, now - timedelta(hours=26), now), maxlen=64
            )
        return self._history[key]

    def tick(self, now: datetime, outbox: bool = True) -> list[Alert]:
        """Readings for every scope and window as of ``now``; alerts; one atomic store.

        With ``outbox`` False (a rebuild of past hours) alerts are recorded but queued for
        nobody: history is never sent.
        """
        self.load(now)
        readings: list[MoodReading] = []
        alerts: list[Alert] = []
        states: dict[tuple[str, str], str] = {}
        windows = ["1h", "24h"]
        if now.hour == 0:
            windows.append("7d")
        for scope in self.scopes(now):
            for window in windows:
                spec = self.index_params.spec(window)
                span = timedelta(seconds=spec.seconds * (spec.baseline_windows + 1))
                points = self._scope_points(scope, now - span, now)
                history = self._history_of(scope, window, now)
                previous = history[-1] if history else None
                reading = compute_reading(
                    points,
                    scope,
                    window,
                    now,
                    self.index_params,
                    previous,
                    tracked_since=self.tracked_since,
                )
                reading = with_norm(
                    reading, *self.store.reading_norm(scope, window, now - NORM_SPAN, now)
                )
                readings.append(reading)
                if window == self.config.alert_window:
                    state = AlertState.from_json(self.store.alert_state(scope.key(), window))
                    raised, state = evaluate(
                        reading,
                        list(history),
                        points,
                        state,
                        now,
                        self.alert_params,
                        index_params=self.index_params,
                        tracked_since=self.tracked_since,
                    )
                    alerts += raised
                    states[(scope.key(), window)] = state.to_json()
                history.append(reading)
        market_alerts, market_states = self._market_alerts(now, readings)
        alerts += market_alerts
        states.update(market_states)
        subscriptions = self.store.subscriptions() if alerts and outbox else []

        def targets(alert: Alert) -> list[tuple[str, str]]:
            if not outbox:
                return []
            found = list(self.config.sinks_targets)
            found += [(s.platform, s.target) for s in subscriptions if s.matches(alert)]
            return list(dict.fromkeys(found))

        new = self.store.save_tick(
            readings,
            alerts,
            states,
            targets,
            (TICK_CHECKPOINT, iso(now)),
            datetime.now(UTC),
        )
        self.last_tick = now
        self.prune(now)
        return new

    def _market_alerts(
        self, now: datetime, readings: list[MoodReading]
    ) -> tuple[list[Alert], dict[tuple[str, str], str]]:
        """On the first tick that finds a newer closed daily candle of a configured asset:
        level breaks, divergence and the composite's extremes.

        Each asset's state remembers the last daily close it processed, so a candle that
        reaches the store after the midnight tick (the exchange poll runs a minute later) is
        processed at the next tick instead of being skipped.
        """
        by_key = {(r.scope.key(), r.window): r for r in readings}
        social = by_key.get((Scope().key(), "24h"))
        weights = None  # read only when a new daily close needs the composite
        alerts: list[Alert] = []
        states: dict[tuple[str, str], str] = {}
        day = timedelta(days=1)
        for asset in self.config.assets:
            scope = Scope(asset=asset)
            state = AlertState.from_json(self.store.alert_state(scope.key(), MARKET_STATE))
            done = state.fired_at(DAILY_CLOSE)
            newest = self.store.newest_candle_time(asset, "1d", until=now - day)  # closed
            if newest is None or (done is not None and newest + day <= done):
                continue  # no daily close since the last one processed: skip the reads below
            candles = closed_by(self.store.candles(asset, "1d", now), now)
            if len(candles) < 60:  # too little history for levels: nothing to say
                continue
            close = candles[-1].ts + day  # the newest daily close known now
            if done is None and now - close >= day:
                # A fresh start mid-history: no alerts about old closes. Remember this close,
                # or every tick would read the whole history again to find it.
                states[(scope.key(), MARKET_STATE)] = state.with_fired(DAILY_CLOSE, close).to_json()
                continue
            if done is not None and close <= done:
                continue
            mood = by_key.get((scope.key(), "24h"))
            change = self._change_24h(scope, mood, now)
            since = done if done is not None else close - timedelta(seconds=1)
            try:
                alerts += level_alerts(
                    asset, candles, since, close, mood, change, self.market_params
                )
            except ValueError as exc:  # malformed stored candles: skip, keep the tick
                log.warning("levels of %s skipped: %s", asset, exc)
            if mood is not None and mood.value is not None:
                days = self.market_params.divergence_days + 2
                closes = [(c.ts + day, c.close) for c in candles[-days:]]
                moods = [
                    (r.at, r.value)
                    for r in self.store.readings(scope, "24h", now - days * day, now)
                    if r.value is not None and r.at.hour == 0 and r.at < now
                ]
                moods.append((now, mood.value))  # this tick's reading is not stored yet
                try:
                    found, state = divergence_alert(
                        asset, closes, moods, now, state, self.market_params
                    )
                except ValueError as exc:  # a bad stored close: skip, keep the tick
                    log.warning("divergence of %s skipped: %s", asset, exc)
                    found = None
                alerts += [found] if found is not None else []
            weights = weights or stored_weights(self.store)
            try:
                composite = market_reading(
                    candles,
                    now,
                    funding_at(self.store, asset, now),
                    social.value if social is not None else None,
                    weights,
                )
            except ValueError as exc:
                log.warning("composite of %s skipped: %s", asset, exc)
                composite = None
            if composite is not None:
                found, state = composite_alert(asset, composite, state, self.alert_params)
                alerts += [found] if found is not None else []
            states[(scope.key(), MARKET_STATE)] = state.with_fired(DAILY_CLOSE, close).to_json()
        return alerts, states

    def _change_24h(self, scope: Scope, mood: MoodReading | None, now: datetime) -> float | None:
        """How far ``scope``'s 24h mood moved since the same hour yesterday."""
        if mood is None or mood.value is None:
            return None
        for r in self._history.get((scope.key(), "24h"), ()):
            if r.at == now - timedelta(days=1) and r.value is not None:
                return mood.value - r.value
        return None

    def due_ticks(self, until: datetime) -> list[datetime]:
        """Tick times after the last stored tick, up to ``until``."""
        step = timedelta(seconds=self.config.tick_s)
        if self.last_tick is None:
            first = self.store.oldest_message_time()
            if first is None:
                return []
            start = floor_time(first, self.config.tick_s)
        else:
            start = self.last_tick
        out = []
        t = start + step
        while t <= until:
            out.append(t)
            t += step
        return out


def floor_time(ts: datetime, step_s: int) -> datetime:
    """``ts`` rounded down to a multiple of ``step_s`` seconds (the tick it falls in)."""
    epoch = int(ts.timestamp())
    return datetime.fromtimestamp(epoch - epoch % step_s, UTC)


class Pipeline:
    """Runs the stages over one or more sources until they end or ``stop()`` is called."""

    def __init__(
        self,
        store: Store,
        scorer: ScorerLike,
        assets: AssetTable,
        language: LanguageDetector,
        spam: SpamMarker,
        sinks: dict[str, Sink],
        config: PipelineConfig | None = None,
        stats: PipelineStats | None = None,
        index: IndexEngine | None = None,
    ) -> None:
        self.store = store
        self.scorer = scorer
        self.assets = assets
        self.language = language
        self.spam = spam
        self.sinks = sinks
        self.config = config or PipelineConfig()
        self.stats = stats or PipelineStats()
        self.index = index or IndexEngine(store, self.config)
        # Whether a partial scoring chunk is allowed now (the scorer finds what to score).
        self._to_score: InProcessQueue[bool] = InProcessQueue(self.config.queue_size)
        self._to_index: InProcessQueue[datetime] = InProcessQueue(self.config.queue_size)
        self._stopping = asyncio.Event()
        #: Live mode: coroutines run every ``delivery_s`` with the time (e.g. daily digests).
        self.periodic: list[Callable[[datetime], Awaitable[object]]] = []
        # (sink, target) → not before this time: the platform's retry_after, or backoff.
        self._retry_at: dict[tuple[str, str], datetime] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self._delivering = asyncio.Lock()
        #: Each connector's health; live runs restart failed sources through ``supervisor``.
        self.health = HealthBoard()
        self.supervisor = Supervisor(self.health, self._stopping)
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

    async def run_until_signalled(
        self, sources: Sequence[Source], live: bool = False
    ) -> PipelineStats:
        """``run`` with SIGINT/SIGTERM turned into a graceful ``stop()``."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stop)
        try:
            return await self.run(sources, live=live)
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    # ------------------------------------------------------------------ intake

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

    async def _flush(
        self, batch: list[Message], source: Source | None = None, partial: bool = True
    ) -> None:
        # Communities whose moderators turned listening off (or narrowed it) are not read.
        settings = {
            key: self.store.community_settings(*key)
            for key in {(m.platform, m.community) for m in batch}
        }
        heard = [m for m in batch if settings[(m.platform, m.community)].listens_to(m.channel)]
        # The same key twice in one batch is a post and its edit: the last text wins.
        latest = {(m.platform, m.channel, m.message_id): m for m in heard}
        stored = self.store.stored_texts(list(latest))
        fresh, edited = [], []
        for key, m in latest.items():
            if key not in stored:
                fresh.append(self.prepare(m))
            elif stored[key] is not None and stored[key] != m.text and m.text:
                # An edit (same key, new text). A replay of the same post changes nothing, and
                # nor does one whose stored text retention already purged.
                edited.append(self.prepare(m, edit=True))
        if fresh:
            self.stats.added += self.store.add_messages(fresh, datetime.now(UTC))
        if edited:
            self.stats.edited += self.store.update_edited(edited)
        # Stored: now a source that keeps its own inbox may forget them (see ``Acking``).
        if isinstance(source, Acking):
            source.ack(batch)
        if source is not None:
            self.health.messages(source.name, len(batch), max(m.created_at for m in batch))
        self.stats.seen += len(batch)
        self.stats.bump()
        # Backpressure: this waits while the scorer is ``queue_size`` batches behind.
        await self._to_score.put(partial)

    async def intake(self, source: Source) -> None:
        """Store messages from ``source`` in batches: when a batch is full, or when the
        source has been quiet for ``flush_s`` (so a live chat's messages are not held)."""
        batch: list[Message] = []
        messages = source.messages().__aiter__()
        pending: asyncio.Future[Message] | None = None
        try:
            while not self._stopping.is_set():
                if pending is None:
                    pending = asyncio.ensure_future(messages.__anext__())
                done, _ = await asyncio.wait({pending}, timeout=self.config.flush_s)
                if not done:
                    if batch:
                        await self._flush(batch, source)
                        batch = []
                    continue
                try:
                    message = pending.result()
                except StopAsyncIteration:
                    pending = None
                    break
                pending = None
                batch.append(message)
                if len(batch) >= self.config.batch_size:
                    # A full batch while the source streams on: score only full chunks.
                    await self._flush(batch, source, partial=False)
                    batch = []
        except ConnectorError as exc:
            raise SourceFailed(f"source {source.name} failed: {exc}") from exc
        finally:
            if pending is not None:
                pending.cancel()
            if batch:
                await self._flush(batch, source)

    async def _fresh_intake(self, source: Source) -> None:
        """``intake`` as the supervisor (re)starts it: a restarted source first forgets what
        it handed over to the failed run without an ack, so nothing is stranded."""
        if isinstance(source, Resettable):
            source.reset()
        await self.intake(source)

    # ------------------------------------------------------------------ scoring

    def score_pending(self, partial: bool = True) -> datetime | None:
        """Score stored, unscored messages oldest first, in chunks of ``score_chunk``; return
        the newest time scored.

        Without ``partial`` only full chunks are scored. The int8 model's numbers depend a
        little on which texts share a call, so a replay cut into the same chunks (by position
        in the stream, not by timing) gives the same scores, readings and alerts every run.
        """
        newest = None
        while not self._stopping.is_set():
            todo = self.store.unscored(self.config.score_chunk)
            if not todo or (len(todo) < self.config.score_chunk and not partial):
                return newest
            keys = [k for k, _ in todo]
            texts = [t for _, t in todo]
            try:
                scores = self.scorer.score(texts)
                self.store.save_scores(list(zip(keys, scores, strict=True)), datetime.now(UTC))
                self.stats.scored += len(scores)
            except (NlpError, RuntimeError, ValueError) as exc:
                log.warning("batch of %d failed (%s); scoring one by one", len(texts), exc)
                self._score_one_by_one(keys, texts)
            newest = self._newest_of(keys) or newest
            self.stats.bump()
        return newest

    def _score_one_by_one(self, keys: list[tuple[str, str, str]], texts: list[str]) -> None:
        for key, text in zip(keys, texts, strict=True):
            try:
                [score] = self.scorer.score([text])
            except (NlpError, RuntimeError, ValueError) as exc:
                log.error("message %s set aside: %s", ":".join(key), exc)
                self.store.mark_failed(key, f"{type(exc).__name__}: {exc}")
                self.stats.failed += 1
                continue
            self.store.save_scores([(key, score)], datetime.now(UTC))
            self.stats.scored += 1

    def _newest_of(self, keys: list[tuple[str, str, str]]) -> datetime | None:
        last = keys[-1]
        rows = self.store.query(
            "SELECT created_at FROM messages WHERE platform = ? AND channel = ? AND message_id = ?",
            last,
        )
        return parse_ts(rows[0][0]) if rows else None

    async def scoring(self) -> None:
        scored_until: datetime | None = None
        while True:
            try:
                partial = await self._to_score.get()
            except Closed:
                break
            # Scoring is CPU-bound: run it off the event loop so intake and chat keep going.
            newest = await asyncio.to_thread(self.score_pending, partial)
            # The index may tick only up to what is scored: chunks go oldest first, so every
            # stored message before ``newest`` has its score.
            if newest is not None and (scored_until is None or newest > scored_until):
                scored_until = newest
                await self._to_index.put(newest)
        if not self._stopping.is_set():
            await asyncio.to_thread(self.score_pending, True)
        await self._to_index.close()

    # ------------------------------------------------------------------ index, alerts

    def run_ticks(self, until: datetime) -> int:
        """Run every due tick up to ``until``; return how many alerts were new."""
        new = 0
        for t in self.index.due_ticks(until):
            if self._stopping.is_set():
                break
            raised = self.index.tick(t)
            new += len(raised)
            self.stats.ticks += 1
            self.stats.alerts += len(raised)
            self.stats.last_time = t
        if self.config.retention_days is not None and self.index.last_tick is not None:
            # Message time, not wall time: a replayed month keeps its own calendar.
            cutoff = self.index.last_tick - timedelta(days=self.config.retention_days)
            purged = self.store.purge_texts(cutoff)
            if purged:
                log.info("retention: purged the text of %d messages before %s", purged, cutoff)
        self.stats.bump()
        return new

    async def indexing(self) -> None:
        while True:
            try:
                until = await self._to_index.get()
            except Closed:
                break
            if await asyncio.to_thread(self.run_ticks, until):
                await self.deliver()
        newest = self.store.newest_message_time()
        if newest is not None and not self._stopping.is_set():
            await asyncio.to_thread(self.run_ticks, newest)
        await self.deliver()

    # ------------------------------------------------------------------ delivery

    async def deliver(self, now: datetime | None = None) -> int:
        """Send every unsent outbox row through its sink; ``sent_at`` right after each send.

        Per target: alerts over its daily cap are given up (kept, marked "capped"); during
        its quiet hours they wait, and when those end everything waiting goes as one digest.
        """
        # The index stage and the live delivery loop both deliver: one at a time, or the
        # same unsent row could go out twice before either marks it sent.
        async with self._delivering:
            return await self._deliver(now or datetime.now(UTC))

    async def _deliver(self, now: datetime) -> int:
        sent = 0
        for name, sink in self.sinks.items():
            pending: dict[str, list[Alert]] = {}
            for alert, target, attempts in self.store.pending_outbox(name, limit=1000):
                if attempts < self.config.max_attempts:
                    pending.setdefault(target, []).append(alert)
            if not pending:
                continue  # the usual case: nothing waits, so no need to read the subscribers
            subs = {s.target: s for s in self.store.subscriptions(platform=name) if not s.is_digest}
            for target, alerts in pending.items():
                if self._retry_at.get((name, target), now) > now:
                    continue  # rate limited or backing off: the rows wait, nothing is lost
                sub = subs.get(target)
                if sub is not None and sub.is_group:
                    # The community's moderators decide what reaches their group.
                    group = self.store.community_settings(name, sub.community)
                    alerts = self._filter_for_group(name, target, alerts, group, now)
                    if group.quiet_at(now):
                        continue
                if sub is not None and sub.quiet_at(now):
                    continue
                if sub is not None:
                    room = sub.daily_cap - self.store.sent_since(name, target, now - timedelta(1))
                    for alert in alerts[max(room, 0) :]:
                        self.store.give_up(
                            alert.key, name, target, "daily cap", self.config.max_attempts
                        )
                    alerts = alerts[: max(room, 0)]
                if not alerts:
                    continue
                if sub is not None and sub.quiet_start is not None and len(alerts) > 1:
                    # What waited through quiet hours goes as one digest.
                    sent += await self._send(name, sink, target, alerts, now)
                else:
                    for alert in alerts:
                        sent += await self._send(name, sink, target, [alert], now)
        return sent

    def _filter_for_group(
        self, name: str, target: str, alerts: list[Alert], group, now: datetime
    ) -> list[Alert]:
        keep = []
        recent = group.cooldown_h and self.store.sent_since(
            name, target, now - timedelta(hours=group.cooldown_h)
        )
        for alert in alerts:
            reason = None
            if not group.alerts:
                reason = "muted by moderators"
            elif not group.wants(alert):
                reason = "below the community's threshold"
            elif recent or (group.cooldown_h and keep):
                reason = "community cooldown"
            if reason is None:
                keep.append(alert)
            else:
                self.store.give_up(alert.key, name, target, reason, self.config.max_attempts)
        return keep

    async def _send(
        self, name: str, sink: Sink, target: str, alerts: list[Alert], now: datetime
    ) -> int:
        reply = (
            render_alert(alerts[0], target) if len(alerts) == 1 else render_digest(alerts, target)
        )
        try:
            await sink.send(reply)
        except RecipientGone as exc:
            log.warning("recipient %s on %s gone (%s): unsubscribing", target, name, exc)
            for alert in alerts:
                self.store.give_up(alert.key, name, target, "gone", self.config.max_attempts)
            self.store.unsubscribe_target(name, target)
            return 0
        except DeliveryError as exc:
            failures = self._failures.get((name, target), 0) + 1
            self._failures[(name, target)] = failures
            # Exponential backoff (5 s, 10 s, … capped at 15 min), never sooner than the
            # platform's own retry_after (Telegram's and Discord's 429).
            wait = max(exc.retry_after or 0.0, min(900.0, 5.0 * 2 ** (failures - 1)))
            self._retry_at[(name, target)] = now + timedelta(seconds=wait)
            log.warning(
                "delivery to %s on %s failed (%s); next try in %.0f s", target, name, exc, wait
            )
            for alert in alerts:
                self.store.mark_attempt(alert.key, name, target, str(exc))
            return 0
        self._failures.pop((name, target), None)
        # Right after the send: a crash before this line repeats this one message only.
        for alert in alerts:
            self.store.mark_sent(alert.key, name, target, now)
        self.stats.delivered += len(alerts)
        return len(alerts)

    # ------------------------------------------------------------------ run

    async def save_health(self) -> None:
        """Store every connector's health, for ``moodring status`` and ``/status``.

        The board is read here, on the event loop that updates it; only the write goes to a
        worker thread."""
        rows = [(h.name, health_to_json(h)) for h in self.health.snapshot()]
        if rows:
            await asyncio.to_thread(self.store.save_health, rows, datetime.now(UTC))

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
            await asyncio.to_thread(self.run_ticks, datetime.now(UTC))
        await self.deliver()
        for job in self.periodic:
            try:
                await job(datetime.now(UTC))
            except Exception:  # one failing job must not stop delivery
                log.exception("periodic job failed")

    async def run(self, sources: Sequence[Source], live: bool = False) -> PipelineStats:
        """Run all stages until every source ends (or ``stop()``), then drain.

        ``live`` adds the periodic delivery loop (a replay delivers after each tick), and runs
        each source under the supervisor: one that fails is restarted with backoff while the
        others go on."""
        # A restart after everything was scored but before the index caught up (a crash
        # between the two stages) finds nothing to score, so nothing would wake the index:
        # start it from what is already scored.
        scored = self.store.newest_scored_time()
        if scored is not None:
            await self._to_index.put(scored)
        workers = [asyncio.create_task(self.scoring()), asyncio.create_task(self.indexing())]
        delivery = asyncio.create_task(self.delivery_loop()) if live else None
        try:
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
        finally:
            await self._to_score.close()
            await asyncio.gather(*workers)
            if delivery is not None:
                self.stop()
                await delivery
                await self.save_health()
        return self.stats
