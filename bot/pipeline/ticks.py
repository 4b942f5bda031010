"""The index engine: recent scored messages in memory, readings per scope and tick, and the
mood alert rules; each tick stored with its alerts in one transaction."""

from __future__ import annotations

import bisect
import logging
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from bot.mood.alerts import AlertParams, AlertState, evaluate
from bot.mood.index import NORM_SPAN, IndexParams, Point, compute_reading, with_norm
from bot.pipeline.config import LOOKBACK, PipelineConfig, floor_time
from bot.pipeline.market_rules import MarketRules
from bot.store import TICK_CHECKPOINT, ScoredRow, Store, iso, parse_ts
from bot.types import Alert, MoodReading, Scope

log = logging.getLogger(__name__)


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
        self.market = MarketRules(store, config.assets, self.alert_params)
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

    def add(self, rows: Sequence[ScoredRow]) -> None:
        """Take newly scored messages from the scoring stage (no read of the store).

        A key already held is replaced: an edited message was scored again."""
        for row in rows:
            if row.key in self._keys:
                self._drop(row.key)
            self._keys.add(row.key)
            pos = bisect.bisect_right(self._times, row.created_at)
            self._times.insert(pos, row.created_at)
            self._rows.insert(pos, row)
            self._points.insert(pos, row.to_point())
        if self.tracked_since is None and rows:
            self.tracked_since = min(r.created_at for r in rows)

    def _drop(self, key: str) -> None:
        for i, held in enumerate(self._rows):
            if held.key == key:
                del self._rows[i], self._points[i], self._times[i]
                return

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
        end = bisect.bisect_right(self._times, now)  # rows after ``now`` may be held: no look-ahead
        mentions: dict[str, int] = {}
        communities: set[tuple[str, str]] = set()
        for row in self._rows[week:end]:
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
        market_alerts, market_states = self.market.alerts(now, readings, self._history)
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
