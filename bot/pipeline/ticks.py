"""The index engine: recent scored messages in memory, readings per scope and tick, and the
mood alert rules; each tick stored with its alerts in one transaction."""

from __future__ import annotations

import bisect
import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from cachetools import LRUCache, TTLCache

from bot.mood.alerts import AlertParams, AlertState, evaluate
from bot.mood.index import (
    NORM_SPAN,
    Baseline,
    IndexParams,
    Point,
    compute_reading,
    volume_baseline,
    with_norm,
)
from bot.pipeline.config import LOOKBACK, PipelineConfig, floor_time
from bot.pipeline.market_rules import MarketRules
from bot.prefs.subscriptions import Subscription
from bot.store import MINUTE_CHECKPOINT, TICK_CHECKPOINT, ScoredRow, Store, iso, parse_ts
from bot.store.privacy import ERASURES_CHECKPOINT
from bot.track.record import TrackRecord
from bot.types import Alert, MoodReading, Scope
from nlp.assets import AssetTable

T = TypeVar("T")

log = logging.getLogger(__name__)

MINUTE = timedelta(minutes=1)


def ceil_minute(ts: datetime) -> datetime:
    """The whole minute at or after ``ts``: the first evaluation that sees a message at ``ts``."""
    floor = ts.replace(second=0, microsecond=0)
    return floor if floor == ts else floor + MINUTE


def evaluated(until: datetime) -> None:
    """Log (DEBUG) that the index has committed its evaluation of message time up to
    ``until``, with the wall time: the store keeps only the latest checkpoint, to the
    second, and scripts/bench_workers.py times each message's minute by this line."""
    if log.isEnabledFor(logging.DEBUG):
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        log.debug("index evaluated to %s at %s", iso(until), now)


def touches(scope: Scope, row: ScoredRow) -> bool:
    """Whether ``row`` counts in ``scope``'s reading."""
    return scope.covers(row.community, row.platform, row.assets)


class IndexEngine:
    """Keeps the recent scored messages in memory and runs the index and alert rules."""

    def __init__(
        self,
        store: Store,
        config: PipelineConfig,
        index_params: IndexParams | None = None,
        alert_params: AlertParams | None = None,
        max_history: int = 4096,
        max_baselines: int = 4096,
    ) -> None:
        """``max_history`` bounds the (scope, window) histories held and ``max_baselines``
        the cached volume baselines: busy cashtags and communities come and go, and each
        one seen must not cost memory for the rest of the run. An evicted history is read
        back from the stored readings when its scope comes round again.

        The messages themselves are held for ``LOOKBACK`` (the 7d reading and its 4-week
        baseline), at most ``config.max_held_rows`` of them; past the alert window they are
        held without their text (only alerts quote, and only from their window)."""
        self.store = store
        self.config = config
        self.index_params = index_params or IndexParams()
        self.alert_params = alert_params or AlertParams(min_authors=config.alert_min_authors)
        self.market = MarketRules(store, config.assets, self.alert_params)
        #: Adds each new alert's line of its own track record (as of the alert's time).
        self.track = TrackRecord(store, self.market.market_params, self.alert_params)
        # Three parallel lists in message-time order: each held message's point, its assets
        # (a point does not name them) and its time (for bisect).
        self._points: list[Point] = []
        self._assets: list[tuple[str, ...]] = []
        self._times: list[datetime] = []
        self._keys: set[str] = set()
        #: Held messages are complete from this time on (what ``load`` read, less what
        #: ``prune`` let go); None before the first load into an engine over a non-empty
        #: store. ``held`` answers only from it.
        self._complete_from: datetime | None = None
        #: Commands read the held messages from their own threads (``held``) while the
        #: indexing thread changes them: changes and those reads take this lock.
        self._lock = threading.Lock()
        #: Held points before this index have had their text dropped (``_slim``); messages
        #: at or before ``_slim_cut`` are held without text when they arrive.
        self._slimmed = 0
        self._slim_cut: datetime | None = None
        #: One tuple object per combination of assets, shared by the points that name it.
        self._asset_tuples: LRUCache[tuple[str, ...], tuple[str, ...]] = LRUCache(4096)
        #: When ``max_held_rows`` made the engine let go of messages inside ``LOOKBACK``: the
        #: time of the oldest still held. Baseline windows before it are not counted.
        self.held_from: datetime | None = None
        self.evicted = 0
        self._score_mark: int | None = None  # the newest score row at the last load
        self._history: LRUCache[tuple[str, str], deque[MoodReading]] = LRUCache(max_history)
        #: Per scope key, for the minute rules: the minute it was last evaluated, the
        #: messages its alert window held then, and the new ones since (``_due_scope``).
        self._evaluated: LRUCache[str, tuple[datetime, int, int]] = LRUCache(max_history)
        self.evaluations = 0  # scope evaluations the minute rules ran
        self.deferred = 0  # and those put off on a dense scope (``_due_scope``)
        last = store.checkpoint(TICK_CHECKPOINT)
        self.last_tick: datetime | None = parse_ts(last) if last else None
        minute = store.checkpoint(MINUTE_CHECKPOINT)
        #: The newest minute evaluated: messages at or before it are late (not re-evaluated).
        self.last_minute: datetime | None = max(
            (t for t in (self.last_tick, parse_ts(minute) if minute else None) if t), default=None
        )
        #: Minutes with new messages, not evaluated yet → the messages of that minute.
        self._due: dict[datetime, list[ScoredRow]] = {}
        self._scopes: tuple[datetime, list[Scope], set[tuple[str, str]]] | None = None
        self._baseline_cache: dict[tuple[str, datetime], tuple[Baseline, Baseline]] = {}
        self._norm_cache: dict[tuple[str, datetime], tuple[float | None, timedelta]] = {}
        self.max_baselines = max_baselines
        self.late = 0
        self.skipped = 0  # empty ticks not run (``due_ticks``)
        #: Live runs: alerts about readings older than this (by ``clock``) are never queued;
        #: None (replays) delivers by message time.
        self.max_age: timedelta | None = None
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        #: Whether the run is stopping: ``advance`` then ends after the tick or minute it is
        #: in (each is committed with its checkpoint; the next start goes on from there).
        self.stop: Callable[[], bool] = lambda: False
        self.stale = 0  # alerts stored but not queued as too old (live runs)
        #: Assets alerts may be about: the coin table, the configured ones, the operator's
        #: list; priced assets join at each tick (``alertable``). A cashtag that is merely
        #: busy gets readings, never alerts.
        self._known = set(AssetTable.load().names) | set(config.assets) | set(config.alert_assets)
        self._priced: tuple[datetime, set[str]] | None = None
        #: The store's erasure count as last seen: when it moves (a /forget, `moodring
        #: forget` from another process), held rows are read again, so no alert quotes an
        #: erased text or names an erased author from memory.
        self._erasures = store.checkpoint(ERASURES_CHECKPOINT)
        #: What commands computed lately (``memo``): (key, time slot, erasures) → the value.
        #: Kept only for two slots of wall clock: a reading holds its scope's points (a list
        #: as long as the window), so an entry must not outlive its use (the hour's soak
        #: grew 256 of them, ~1 MB each, with a plain LRU).
        self._memo: TTLCache[tuple[Hashable, int, str | None], Any] = TTLCache(
            64, ttl=max(2 * config.command_memo_s, 1.0)
        )
        self._memo_lock = threading.Lock()
        self.memo_hits = 0
        self.tracked_since = store.oldest_message_time()
        if self.tracked_since is None:
            # An empty store: every message from now on reaches the engine (``add`` from the
            # scoring stage, ``load`` after a restart), so what it holds is complete.
            self._complete_from = datetime.min.replace(tzinfo=UTC)

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
        with self._lock:
            for row in rows:
                if row.key in self._keys:
                    continue
                self._hold(row)
                self._note_minute(row)
            self._cap()
            start = until - LOOKBACK
            if self._complete_from is None or start < self._complete_from:
                self._complete_from = start
        if self.tracked_since is None:
            self.tracked_since = self.store.oldest_message_time()

    def add(self, rows: Sequence[ScoredRow]) -> None:
        """Take newly scored messages from the scoring stage (no read of the store).

        A key already held is replaced: an edited message was scored again."""
        with self._lock:
            for row in rows:
                if row.key in self._keys:
                    self._drop(row.key)
                self._hold(row)
                self._note_minute(row)
            self._cap()
        if self.tracked_since is None and rows:
            self.tracked_since = min(r.created_at for r in rows)

    def _hold(self, row: ScoredRow) -> None:
        """Hold ``row``'s point in time order (without its text if it is older than the
        last slimming cut: a late message)."""
        slim = self._slim_cut is not None and row.created_at <= self._slim_cut
        point = self._point(row, slim)
        assets = self._asset_tuples.get(row.assets)
        if assets is None:
            assets = tuple(sys.intern(a) for a in row.assets)
            self._asset_tuples[assets] = assets
        pos = bisect.bisect_right(self._times, row.created_at)
        self._keys.add(row.key)
        self._times.insert(pos, row.created_at)
        self._points.insert(pos, point)
        self._assets.insert(pos, assets)
        if slim or pos < self._slimmed:  # a slim one lands inside the slimmed prefix
            self._slimmed += 1

    def _slim(self, now: datetime) -> None:
        """Drop the text of held messages older than the alert window as of ``now`` (and a
        tick spare), or than a day if that is longer: the readings need only their scores,
        and only alerts and /why (over 24h, reading ``held``) quote."""
        quoted = max(self.index_params.spec(self.config.alert_window).seconds, 86400)
        cut = now - timedelta(seconds=quoted + self.config.tick_s)
        if self._slim_cut is not None and cut <= self._slim_cut:
            return
        self._slim_cut = cut
        end = bisect.bisect_right(self._times, cut)
        for i in range(self._slimmed, end):
            if self._points[i].text:
                self._points[i] = replace(self._points[i], text="")
        self._slimmed = max(self._slimmed, end)

    def _cap(self) -> None:
        """Let go of the oldest messages beyond ``config.max_held_rows``; from then on the
        baselines count only windows wholly after the oldest message held (``covered``)."""
        over = len(self._points) - self.config.max_held_rows
        if over <= 0:
            return
        if self.held_from is None:
            log.warning(
                "more than %d messages in the last %d days: the oldest are let go, and "
                "baselines before the oldest held are not counted (max_held_rows)",
                self.config.max_held_rows,
                LOOKBACK.days,
            )
        self._cut(over)
        self.evicted += over
        self.held_from = self._times[0] if self._times else None

    def _cut(self, n: int) -> None:
        for point in self._points[:n]:
            self._keys.discard(point.message_key)
        del self._points[:n], self._assets[:n], self._times[:n]
        self._slimmed = max(self._slimmed - n, 0)

    def covered(self) -> datetime | None:
        """Since when the held messages are complete: ``tracked_since``, or later once
        ``max_held_rows`` let older ones go."""
        if self.held_from is None or self.tracked_since is None:
            return self.tracked_since
        return max(self.tracked_since, self.held_from)

    def _reload_erased(self) -> None:
        """Replace held rows whose author was erased since the last look by what the store
        holds now (a pseudonym, no text); the scores stay as they were."""
        erasures = self.store.checkpoint(ERASURES_CHECKPOINT)
        if erasures == self._erasures:
            return
        self._erasures = erasures
        if not self._times:
            return
        now = {r.key: r for r in self.store.scored_since(self._times[0], self._times[-1])}
        with self._lock:
            for i, held in enumerate(self._points):
                fresh = now.get(held.message_key)
                if fresh is None or fresh.author == held.author:
                    continue
                self._points[i] = self._point(fresh, slim=i < self._slimmed)
        for minute, rows in self._due.items():
            self._due[minute] = [now.get(r.key, r) for r in rows]

    def _point(self, row: ScoredRow, slim: bool = False) -> Point:
        """The index's view of ``row``, as held (``ScoredRow.to_point`` with the operator's
        public sources); without its text when ``slim``; repeated strings shared, not copied
        (a chat's id, platform and model id would otherwise be stored once per message)."""
        return replace(
            row.to_point(self.config.public_sources),
            author=sys.intern(row.author),
            community=sys.intern(row.community),
            platform=sys.intern(row.platform),
            model_id=sys.intern(row.model_id),
            text="" if slim else row.text,
        )

    def alertable(self, scope: Scope, now: datetime) -> bool:
        """Whether alerts may be raised about ``scope``: all assets, or a known one."""
        if scope.asset == "*" or scope.asset in self._known:
            return True
        hour = floor_time(now, 3600)
        if self._priced is None or self._priced[0] != hour:
            self._priced = (hour, self.store.priced_assets())
        return scope.asset in self._priced[1]

    def _note_minute(self, row: ScoredRow) -> None:
        minute = ceil_minute(row.created_at)
        if self.last_minute is not None and minute <= self.last_minute:
            self.late += 1  # counted, not re-evaluated: those minutes are done
            return
        self._due.setdefault(minute, []).append(row)

    def _drop(self, key: str) -> None:
        for i, held in enumerate(self._points):
            if held.message_key == key:
                del self._points[i], self._assets[i], self._times[i]
                self._keys.discard(key)
                if i < self._slimmed:
                    self._slimmed -= 1
                return

    def prune(self, now: datetime) -> None:
        """Let go of messages older than ``LOOKBACK`` and the text of those past the alert
        window, as of ``now``."""
        with self._lock:
            cut = bisect.bisect_left(self._times, now - LOOKBACK)
            if cut:
                self._cut(cut)
            if self._complete_from is not None:
                self._complete_from = max(self._complete_from, now - LOOKBACK)
            self._slim(now)

    def held(
        self, since: datetime, until: datetime
    ) -> tuple[list[Point], list[tuple[str, ...]]] | None:
        """The held messages in ``[since, until]`` and the assets each names, for commands
        (``bot.chat.context.HeldPoints``): a copy taken under the lock, so the indexing
        thread may go on. None when the engine cannot vouch for them: nothing loaded yet,
        ``since`` before what it holds, or an erasure it has not read yet (its held authors
        and texts may be stale); the caller then reads the store.

        Messages scored in the last moment may not be held yet: the scoring stage hands
        them over in batches, a few seconds behind."""
        if self.store.checkpoint(ERASURES_CHECKPOINT) != self._erasures:
            return None
        with self._lock:
            if self._complete_from is None or since < self._complete_from:
                return None
            lo = bisect.bisect_left(self._times, since)
            hi = bisect.bisect_right(self._times, until)
            return self._points[lo:hi], self._assets[lo:hi]

    def memo(self, key: Hashable, at: datetime, compute: Callable[[], T]) -> T:
        """``compute()``, or its value for ``key`` computed earlier in the same
        ``command_memo_s`` slot of ``at`` (``bot.chat.context.HeldPoints``).

        Commands re-read a scope's whole window for each ask, a cost that grows with the
        messages held; in a busy group at one ask a second it starved the pipeline (the
        soak's replay lag grew). A reused answer is at most ``command_memo_s`` old. The
        store's erasure count is part of the key: after a /forget nothing computed before it
        is reused, so no answer quotes an erased text from the memo.
        """
        step = self.config.command_memo_s
        if step <= 0:
            return compute()
        slot = (key, int(at.timestamp() // step), self.store.checkpoint(ERASURES_CHECKPOINT))
        with self._memo_lock:
            if slot in self._memo:
                self.memo_hits += 1
                return self._memo[slot]
        value = compute()  # outside the lock: two threads may both compute, once each
        with self._memo_lock:
            self._memo[slot] = value
        return value

    def sizes(self) -> dict[str, int]:
        """What the engine holds now: scored rows (the ``LOOKBACK`` before the last tick,
        and any newer), histories, cached baselines, minutes waiting to be evaluated."""
        return {
            "rows": len(self._points),
            "texts": len(self._points) - self._slimmed,
            "history": len(self._history),
            "baselines": len(self._baseline_cache),
            "due_minutes": len(self._due),
            "evaluated": len(self._evaluated),
            "memo": len(self._memo),
        }

    def scopes_at(self, now: datetime, rows: Sequence[ScoredRow] = ()) -> list[Scope]:
        """``scopes`` for a minute evaluation: worked out once an hour, and again when
        ``rows`` (the minute's new messages) come from a community not seen before."""
        hour = floor_time(now, 3600)
        cached = self._scopes
        if cached is not None and any((r.community, r.platform) not in cached[2] for r in rows):
            cached = None
        if cached is None or cached[0] != hour:
            seen = {(p.community, p.platform) for p in self._points[: self._end(now)]}
            cached = (hour, self.scopes(now), seen)
            self._scopes = cached
        return cached[1]

    def _end(self, now: datetime) -> int:
        return bisect.bisect_right(self._times, now)

    def scopes(self, now: datetime) -> list[Scope]:
        """All sources, each configured or busy asset, each community."""
        scopes = [Scope()]
        week = bisect.bisect_left(self._times, now - timedelta(days=7))
        end = bisect.bisect_right(self._times, now)  # rows after ``now`` may be held: no look-ahead
        mentions: dict[str, int] = {}
        communities: set[tuple[str, str]] = set()
        for point, named in zip(self._points[week:end], self._assets[week:end], strict=True):
            for asset in named:
                mentions[asset] = mentions.get(asset, 0) + 1
            communities.add((point.community, point.platform))
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
        return [
            point
            for point, assets in zip(self._points[lo:hi], self._assets[lo:hi], strict=True)
            if scope.covers(point.community, point.platform, assets)
        ]

    def _history_of(self, scope: Scope, window: str, now: datetime) -> deque[MoodReading]:
        key = (scope.key(), window)
        if key not in self._history:
            self._history[key] = deque(
                self.store.readings(scope, window, now - timedelta(hours=26), now), maxlen=64
            )
        return self._history[key]

    def tick(self, now: datetime, outbox: bool = True) -> list[Alert]:
        """Readings for every scope and window as of ``now``; alerts; one atomic store.

        The messages up to ``now`` must be held already (``add`` from the scoring stage, or
        ``load`` from the store). With ``outbox`` False (a rebuild of past hours) alerts are
        recorded but queued for nobody: history is never sent.
        """
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
                    tracked_since=self.covered(),
                )
                reading = with_norm(
                    reading, *self.store.reading_norm(scope, window, now - NORM_SPAN, now)
                )
                readings.append(reading)
                if window == self.config.alert_window and self.alertable(scope, now):
                    state = AlertState.from_json(self.store.alert_state(scope.key(), window))
                    raised, state = evaluate(
                        reading,
                        list(history),
                        points,
                        state,
                        now,
                        self.alert_params,
                        index_params=self.index_params,
                        tracked_since=self.covered(),
                        need_breadth=self.config.need_breadth,
                    )
                    alerts += raised
                    states[(scope.key(), window)] = state.to_json()
                history.append(reading)
        market_alerts, market_states = self.market.alerts(now, readings, self._history)
        alerts += market_alerts
        states.update(market_states)
        alerts = self.track.annotate(alerts)
        new = self.store.save_tick(
            readings,
            alerts,
            states,
            self._targets(alerts, outbox),
            (TICK_CHECKPOINT, iso(now)),
            datetime.now(UTC),
        )
        evaluated(now)
        self.last_tick = now
        self.prune(now)
        return new

    def _targets(
        self, alerts: list[Alert], outbox: bool
    ) -> Callable[[Alert], list[tuple[str, str]]]:
        """Who gets each alert: the configured sinks and matching subscribers (nobody in a
        rebuild of history, nor, in a live run, for an alert about a reading older than
        ``max_age`` by the wall clock: stored for history, never sent).

        The store calls this inside the transaction that stores the alert, and the
        subscriptions are read there, so a subscription receives exactly the alerts stored
        after it was made."""
        subscriptions: list[Subscription] | None = None

        def targets(alert: Alert) -> list[tuple[str, str]]:
            nonlocal subscriptions
            if not outbox:
                return []
            if self.max_age is not None and self.clock() - alert.at > self.max_age:
                self.stale += 1
                return []
            if subscriptions is None:
                subscriptions = self.store.subscriptions()
            found = list(self.config.sinks_targets)
            found += [(s.platform, s.target) for s in subscriptions if s.matches(alert)]
            return list(dict.fromkeys(found))

        return targets

    def evaluate_minutes(self, minutes: Sequence[datetime], outbox: bool = True) -> list[Alert]:
        """Run the mood alert rules at each of ``minutes`` (whole minutes with new messages),
        as of that minute, for the scopes its new messages count in; store the alerts and
        the rules' state with the minute checkpoint in one transaction."""
        if not minutes:
            return []
        window = self.config.alert_window
        spec = self.index_params.spec(window)
        span = timedelta(seconds=spec.seconds * (spec.baseline_windows + 1))
        alerts: list[Alert] = []
        states: dict[tuple[str, str], str] = {}
        last = minutes[0]
        for i, minute in enumerate(minutes):
            if i and self.stop():
                break  # the rest stay due
            last = minute
            rows = self._due.pop(minute, [])
            hour = floor_time(minute, 3600)
            for scope in self.scopes_at(minute, rows):
                news = sum(1 for r in rows if touches(scope, r))
                if not news or not self.alertable(scope, minute):
                    continue
                key = (scope.key(), window)
                if not self._due_scope(key[0], minute, news):
                    continue
                # The volume baselines (the days before the window) move little within an
                # hour: computed once per scope and hour, so a minute reads only its window.
                volume, mentions = self._baselines(scope, hour, span)
                points = self._scope_points(scope, minute - timedelta(seconds=spec.seconds), minute)
                history = self._history_of(scope, window, minute)
                reading = compute_reading(
                    points,
                    scope,
                    window,
                    minute,
                    self.index_params,
                    history[-1] if history else None,
                    tracked_since=self.covered(),
                    baseline=volume,
                )
                # The extreme rule weighs the reading against its scope's norm, as the hourly
                # tick does (the norm as of the hour: 30 days of readings barely move in one).
                reading = with_norm(reading, *self._norm(scope, window, hour))
                state = AlertState.from_json(
                    states[key] if key in states else self.store.alert_state(*key)
                )
                raised, state = evaluate(
                    reading,
                    list(history),
                    points,
                    state,
                    minute,
                    self.alert_params,
                    index_params=self.index_params,
                    tracked_since=self.covered(),
                    mentions_baseline=mentions,
                    need_breadth=self.config.need_breadth,
                )
                alerts += raised
                states[key] = state.to_json()
                self._evaluated[key[0]] = (minute, len(points), 0)
                self.evaluations += 1
        alerts = self.track.annotate(alerts)
        new = self.store.save_tick(
            [],
            alerts,
            states,
            self._targets(alerts, outbox),
            (MINUTE_CHECKPOINT, iso(last)),
            datetime.now(UTC),
        )
        evaluated(last)
        self.last_minute = last if self.last_minute is None else max(self.last_minute, last)
        return new

    def _due_scope(self, key: str, minute: datetime, news: int) -> bool:
        """Whether the minute rules evaluate scope ``key`` at ``minute``, which brought it
        ``news`` new messages.

        An evaluation reads the scope's whole alert window, so on a dense scope (at least
        ``dense_messages`` in the window at its last evaluation) every minute would cost in
        proportion to the window, and a firehose would fall ever further behind. There it
        waits until its new messages since reach ``dense_share`` of the window (they can
        move the weighted mean only that much) or ``dense_wait_s`` passed (decay and expiry
        move it too). The count is of messages, not time, so a replay decides alike."""
        seen = self._evaluated.get(key)
        if seen is None:
            return True
        last, held, pending = seen
        pending += news
        config = self.config
        if (
            held >= config.dense_messages
            and pending < held * config.dense_share
            and (minute - last).total_seconds() < config.dense_wait_s
        ):
            self._evaluated[key] = (last, held, pending)
            self.deferred += 1
            return False
        return True

    def _baselines(
        self, scope: Scope, hour: datetime, span: timedelta
    ) -> tuple[Baseline, Baseline]:
        """The alert window's volume and mention baselines of ``scope`` as of ``hour``."""
        key = (scope.key(), hour)
        if key not in self._baseline_cache:
            if len(self._baseline_cache) >= self.max_baselines:
                self._baseline_cache.clear()
            window = self.config.alert_window
            points = self._scope_points(scope, hour - span, hour)
            args = (points, hour, window, self.index_params)
            self._baseline_cache[key] = (
                volume_baseline(*args, tracked_since=self.covered()),
                volume_baseline(*args, tracked_since=self.covered(), include_set_aside=True),
            )
        return self._baseline_cache[key]

    def _norm(self, scope: Scope, window: str, hour: datetime) -> tuple[float | None, timedelta]:
        """``scope``'s 30-day norm of ``window`` readings as of ``hour`` (once per hour)."""
        key = (f"{scope.key()}|{window}", hour)
        if key not in self._norm_cache:
            if len(self._norm_cache) >= self.max_baselines:
                self._norm_cache.clear()
            self._norm_cache[key] = self.store.reading_norm(scope, window, hour - NORM_SPAN, hour)
        return self._norm_cache[key]

    def advance(self, until: datetime, outbox: bool = True) -> tuple[int, list[Alert]]:
        """Every due hourly tick and every due minute up to ``until``, in time order.

        Returns how many ticks ran and the alerts that were new. A minute that is also a
        tick is evaluated by the tick, which runs the rules for every scope. Ticks are made
        one at a time (``due_ticks`` is lazy), so a far ``until`` costs no memory up front.
        Once ``stop()`` says so it returns after the tick or minute in hand (a catch-up of
        hours must not hold a shutdown); what is left stays due.
        """
        self._reload_erased()
        end = until.replace(second=0, microsecond=0)
        minutes = sorted(m for m in self._due if m <= end)
        new: list[Alert] = []
        ran = 0
        for t in self.due_ticks(until):
            if self.stop():
                return ran, new
            cut = bisect.bisect_left(minutes, t)
            before, minutes = minutes[:cut], minutes[cut:]
            new += self.evaluate_minutes(before, outbox)
            if self.stop():  # some of ``before`` may be due still: no tick past them
                return ran, new
            if minutes and minutes[0] == t:
                self._due.pop(minutes.pop(0), None)
            new += self.tick(t, outbox)
            ran += 1
            self.last_minute = t if self.last_minute is None else max(self.last_minute, t)
        new += self.evaluate_minutes(minutes, outbox)
        return ran, new

    def due_ticks(self, until: datetime) -> Iterator[datetime]:
        """Tick times after the last stored tick, up to ``until``, made as they are asked for.

        An empty span is skipped: a tick with no message in the ``LOOKBACK`` before it has
        nothing to read in any window, so after a gap (a database left for a year, then
        ``moodring run``) ticking resumes at the first tick that sees the next message, or,
        when none is due, runs only the newest tick up to ``until`` (its readings say there
        is nothing to read now). Market rules, run on ticks, then read the newest daily close.
        """
        step = timedelta(seconds=self.config.tick_s)
        if self.last_tick is None:
            first = self.store.oldest_message_time()
            if first is None:
                return
            t = floor_time(first, self.config.tick_s) + step
        else:
            t = self.last_tick + step
        while t <= until:
            upcoming = self.store.next_message_time(t - LOOKBACK)
            if upcoming is None or upcoming > t:  # nothing in (t - LOOKBACK, t]: empty
                last = floor_time(until, self.config.tick_s)
                resume = last if upcoming is None else min(self._grid_ceil(upcoming), last)
                if resume > t:
                    self.skipped += (resume - t) // step
                    log.info("no messages from %s to %s: their ticks are skipped", t, resume)
                    t = resume
            yield t
            t += step

    def _grid_ceil(self, ts: datetime) -> datetime:
        """The first tick at or after ``ts``: the first that reads a message at ``ts``."""
        floor = floor_time(ts, self.config.tick_s)
        return floor if floor == ts else floor + timedelta(seconds=self.config.tick_s)
