"""Alert rules v1: an extreme band entered (unusual for its scope), a swing, a hype spike."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.mood.index import Baseline, IndexParams, Point, drivers, mentions_ratio
from bot.render import quote
from bot.types import CHAT_PLATFORMS, Alert, MoodReading, Scope, band_of

EXTREME = "extreme"
SWING = "swing"
HYPE = "hype"


@dataclass(frozen=True, slots=True)
class AlertParams:
    """Every number the rules use. See docs/INDEX.md for the reasons."""

    #: Enter Extreme Fear at or below this (the band's edge)...
    fear_enter: float = 25.0
    #: ...and leave it only above this, so a reading hovering at the edge does not flap.
    fear_exit: float = 33.0
    greed_enter: float = 76.0
    greed_exit: float = 68.0
    #: A move of at least this many points within ``swing_window_s`` is a swing.
    swing_points: float = 15.0
    swing_window_s: int = 3600
    #: ...from a reading at least this sure. The rules run every minute, and a thin reading
    #: (a few dozen posts) moves 15 points within the hour as a handful of posts arrive.
    swing_min_confidence: float = 0.6
    #: Mentions at least this many times the baseline are a hype spike...
    hype_ratio: float = 3.0
    #: ...if there are at least this many of them (3x of 2 is not hype).
    hype_min_mentions: int = 30
    extreme_cooldown_s: int = 12 * 3600
    #: Where a scope has a 30-day norm, an extreme alert also needs the reading this many
    #: points beyond it, toward the band: a community whose ordinary day is 74 does not
    #: "enter Extreme Greed" news at 76 (docs/INDEX.md, "Extreme alerts and the norm").
    extreme_min_vs_norm: float = 10.0
    swing_cooldown_s: int = 2 * 3600
    hype_cooldown_s: int = 24 * 3600
    #: No alert from a reading less sure than this.
    min_confidence: float = 0.5
    #: How many driver messages to quote, and how long a quote may be.
    evidence_count: int = 3
    quote_chars: int = 140
    #: Breadth an all-sources extreme or hype alert needs where breadth is required (many
    #: communities read): this many effective authors in the window...
    min_authors: int = 10
    #: ...and no chat community supplying more than this share of the window's weight, so
    #: one group (15 fresh accounts shilling $SCAMX, say) cannot speak for everyone.
    max_community_share: float = 0.5

    def cooldown_s(self, kind: str) -> int:
        """The cooldown of rule ``kind`` in seconds."""
        return {
            EXTREME: self.extreme_cooldown_s,
            SWING: self.swing_cooldown_s,
            HYPE: self.hype_cooldown_s,
        }[kind]


@dataclass(frozen=True, slots=True)
class AlertState:
    """What the rules remember about one scope and window between evaluations.

    ``extreme`` is the extreme band the scope is in ("fear", "greed" or ``None``);
    ``last_fired`` holds ``(kind, when)`` pairs, sorted by kind; ``recent`` the values of the
    evaluations within the swing window, oldest first, which the swing rule compares with.
    """

    extreme: str | None = None
    last_fired: tuple[tuple[str, datetime], ...] = ()
    recent: tuple[tuple[datetime, float], ...] = ()

    def fired_at(self, kind: str) -> datetime | None:
        """When rule ``kind`` last raised an alert, if ever."""
        for name, at in self.last_fired:
            if name == kind:
                return at
        return None

    def with_fired(self, kind: str, at: datetime) -> AlertState:
        """A copy that remembers rule ``kind`` fired at ``at``."""
        others = tuple(pair for pair in self.last_fired if pair[0] != kind)
        return replace(self, last_fired=tuple(sorted((*others, (kind, at)))))

    def with_recent(self, at: datetime, value: float, window_s: int) -> AlertState:
        """A copy that remembers the evaluation ``(at, value)`` and forgets those older
        than ``window_s`` seconds before ``at``."""
        since = at - timedelta(seconds=window_s)
        kept = tuple(p for p in self.recent if since <= p[0] < at)
        return replace(self, recent=(*kept, (at, value)))

    def to_json(self) -> str:
        """The state as a JSON string, for the database."""
        data: dict[str, object] = {
            "extreme": self.extreme,
            "last_fired": {kind: at.isoformat() for kind, at in self.last_fired},
        }
        if self.recent:
            data["recent"] = [[at.isoformat(), value] for at, value in self.recent]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AlertState:
        """The state stored by ``to_json``; an empty string gives the initial state.

        Raises:
            ValueError: if ``text`` is not a stored state.
        """
        if not text:
            return cls()
        data = json.loads(text)
        extreme = data.get("extreme")
        if extreme not in (None, "fear", "greed"):
            raise ValueError(f"unknown extreme state {extreme!r}")
        fired = data.get("last_fired", {})
        pairs = tuple(sorted((k, datetime.fromisoformat(v)) for k, v in fired.items()))
        recent = tuple((datetime.fromisoformat(at), float(v)) for at, v in data.get("recent", []))
        return cls(extreme=extreme, last_fired=pairs, recent=recent)


def evaluate(
    reading: MoodReading,
    history: Sequence[MoodReading],
    points: Sequence[Point],
    state: AlertState,
    now: datetime,
    params: AlertParams | None = None,
    *,
    index_params: IndexParams | None = None,
    tracked_since: datetime | None = None,
    mentions_baseline: Baseline | None = None,
    need_breadth: bool = False,
) -> tuple[list[Alert], AlertState]:
    """Run the rules over a new reading.

    Args:
        reading: the scope's reading as of ``now``.
        history: earlier readings of the same scope and window (any order; later ones ignored).
        points: the scope's scored messages (for the hype rule and the quoted evidence).
        state: what the rules remembered after the previous evaluation.
        now: as of when, timezone-aware.
        params: the rules' parameters; ``AlertParams()`` when omitted.
        index_params: the index parameters (window lengths and weights).
        tracked_since: since when the scope's messages have been collected (for the hype
            rule's baseline; see ``bot.mood.index.compute_reading``).
        mentions_baseline: the hype rule's mention baseline when the caller has it
            (``volume_baseline(..., include_set_aside=True)``); then ``points`` need only
            cover the window.
        need_breadth: an all-sources reading's extreme and hype alerts need ``breadth``
            (the deployment reads several communities that are not trusted public sources).

    Returns:
        The alerts to raise and the state to remember. Each alert's ``key`` is derived from the
        rule, scope, window and ``now``'s cooldown bucket, so replaying the same input gives
        the same keys. A "collecting" or low-confidence reading raises nothing and leaves the
        state as it was.
    """
    params = params or AlertParams()
    index_params = index_params or IndexParams()
    value = reading.value
    if value is None or reading.confidence < params.min_confidence:
        return [], state

    earlier = [r for r in history if r.value is not None and r.at < now]
    alerts: list[Alert] = []

    extreme, state = _extreme_rule(
        reading, value, earlier, points, state, now, params, index_params
    )
    if extreme is not None:
        alerts.append(extreme)
    swing, state = _swing_rule(reading, value, earlier, points, state, now, params, index_params)
    if swing is not None:
        # Entering an extreme band already says how far the reading moved; a second alert for
        # the same move would be noise. The swing still starts its cooldown, or it would fire
        # on the next evaluation instead.
        state = state.with_fired(SWING, now)
        if extreme is None:
            alerts.append(swing)
    hype, state = _hype_rule(
        reading, points, state, now, params, index_params, tracked_since, mentions_baseline
    )
    if hype is not None:
        alerts.append(hype)
    if need_breadth and reading.scope.community == "*":
        # Too narrow to speak for all sources: no alert, but the state moves on (the band is
        # held), so a broad crowd arriving later does not set off a stale alert.
        seconds = index_params.spec(reading.window).seconds
        alerts = [
            a
            for a in alerts
            if a.kind not in (EXTREME, HYPE)
            or _broad(breadth(points, now, seconds, _direction(a, value)), params)
        ]
    # Remembered for the swing rule: evaluations run every minute, readings are hourly.
    return alerts, state.with_recent(now, value, params.swing_window_s)


#: The least polarity towards an alert's side that makes a message one of its drivers.
DRIVER_PULL = 0.5


def _direction(alert: Alert, value: float) -> int:
    """Which way an alert's crowd pulls: +1 into greed, -1 into fear, 0 (volume) for hype."""
    if alert.kind != EXTREME:
        return 0
    return 1 if value >= 50 else -1


def _broad(found: tuple[float, float], params: AlertParams) -> bool:
    authors, share = found
    return authors >= params.min_authors and share <= params.max_community_share


def breadth(
    points: Sequence[Point], now: datetime, seconds: int, direction: int = 0
) -> tuple[float, float]:
    """How broad the voice in the ``seconds`` before ``now`` is: (effective authors, the
    largest chat community's share of the weight).

    Each valid message weighs its author's reputation, times its pull in ``direction`` (+1
    greed, -1 fear): only messages that clearly push the reading that way (a pull of at
    least ``DRIVER_PULL``) count, since calm talk beside a flood of shilling does not make
    the flood broad. With ``direction`` 0 every message counts once (a hype spike's volume).
    Effective authors are the inverse Simpson index of the authors' weights
    ((sum w)^2 / sum w^2): 15 authors posting alike count 15, one loud author among quiet
    ones counts little more than one. Shares are per chat community (platform and
    community); sources that are not communities (X searches, replays) count in the total
    only.
    """
    since = now - timedelta(seconds=seconds)
    by_author: dict[tuple[str, str], float] = {}
    by_community: dict[tuple[str, str], float] = {}
    total = 0.0
    for p in points:
        if p.spam or p.set_aside or not since < p.created_at <= now:
            continue
        pull = direction * p.polarity if direction else 1.0
        if pull < DRIVER_PULL:
            continue
        w = p.reputation * pull
        total += w
        key = (p.platform, p.author or p.message_key)
        by_author[key] = by_author.get(key, 0.0) + w
        if p.platform in CHAT_PLATFORMS:
            place = (p.platform, p.community)
            by_community[place] = by_community.get(place, 0.0) + w
    if total <= 0:
        return 0.0, 0.0
    squares = sum(w * w for w in by_author.values())
    authors = total * total / squares if squares else 0.0
    share = max(by_community.values(), default=0.0) / total
    return authors, share


# --- rules ---------------------------------------------------------------------------------


def extreme_step(
    value: float, held: str | None, params: AlertParams
) -> tuple[str | None, str | None]:
    """The extreme bands' hysteresis: ``(band held after value, band value just entered)``.

    A reading enters Extreme Fear at ``fear_enter`` or below (Extreme Greed at
    ``greed_enter`` or above) and leaves only past the exit threshold, so a reading hovering
    at the edge does not flap. Bands are "fear", "greed" or ``None``.
    """
    if (held == "fear" and value > params.fear_exit) or (
        held == "greed" and value < params.greed_exit
    ):
        held = None
    if held is None:
        if value <= params.fear_enter:
            return "fear", "fear"
        if value >= params.greed_enter:
            return "greed", "greed"
    return held, None


def _extreme_rule(
    reading: MoodReading,
    value: float,
    earlier: Sequence[MoodReading],
    points: Sequence[Point],
    state: AlertState,
    now: datetime,
    params: AlertParams,
    index_params: IndexParams,
) -> tuple[Alert | None, AlertState]:
    v = round(value)  # the same rounding as the bands, so the alert agrees with the band shown
    held, entered = extreme_step(v, state.extreme, params)
    vs_norm = reading.components.get("vs_norm")
    if entered is not None and vs_norm is not None:
        beyond = vs_norm if entered == "greed" else -vs_norm
        if beyond < params.extreme_min_vs_norm:
            # Ordinary for this scope: no alert, and the band is not held, so a reading that
            # does move far from the norm while still in the band can enter it then.
            return None, replace(state, extreme=None)
    state = replace(state, extreme=held)
    if entered is None or not _cooled_down(state, EXTREME, now, params):
        return None, state

    spec = index_params.spec(reading.window)
    before = _reading_ago(earlier, now, spec.seconds)
    direction = -1 if entered == "fear" else 1
    change = (
        f"{_change_words(value - before.value)} in {reading.window}"
        if before is not None and before.value is not None
        else f"over {reading.window}"
    )
    alert = Alert(
        key=_key(EXTREME, entered, reading, now, params),
        kind=EXTREME,
        scope=reading.scope,
        at=now,
        title=f"{_label(reading.scope)} social mood entered {band_of(value)}: {v}/100",
        value=value,
        previous=before.value if before is not None else None,
        detail=f"{change}{_norm_words(vs_norm)}; {_sample_words(reading)}",
        evidence=_evidence(points, now, reading, direction, params, index_params),
    )
    return alert, state.with_fired(EXTREME, now)


def _norm_words(vs_norm: float | None) -> str:
    """', 12 above its 30-day norm' (empty while the scope has no norm)."""
    if vs_norm is None:
        return ""
    points = round(vs_norm)
    return f", {abs(points)} {'above' if points > 0 else 'below'} its 30-day norm"


def _swing_rule(
    reading: MoodReading,
    value: float,
    earlier: Sequence[MoodReading],
    points: Sequence[Point],
    state: AlertState,
    now: datetime,
    params: AlertParams,
    index_params: IndexParams,
) -> tuple[Alert | None, AlertState]:
    if reading.confidence < params.swing_min_confidence:
        return None, state
    since = now - timedelta(seconds=params.swing_window_s)
    recent = [r.value for r in earlier if r.value is not None and r.at >= since]
    recent += [v for at, v in state.recent if since <= at < now]
    if not recent:
        return None, state
    low, high = min(recent), max(recent)
    up, down = value - low, high - value
    if max(up, down) < params.swing_points or not _cooled_down(state, SWING, now, params):
        return None, state

    direction, previous = (1, low) if up >= down else (-1, high)
    verb = "rose" if direction > 0 else "fell"
    minutes = round(params.swing_window_s / 60)
    span = f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes} min"
    alert = Alert(
        key=_key(SWING, "up" if direction > 0 else "down", reading, now, params),
        kind=SWING,
        scope=reading.scope,
        at=now,
        title=(
            f"{_label(reading.scope)} mood {verb} {round(abs(value - previous))} points "
            f"within {span}: {round(previous)} → {round(value)} ({band_of(value)})"
        ),
        value=value,
        previous=previous,
        detail=f"{reading.window} reading; {_sample_words(reading)}",
        evidence=_evidence(points, now, reading, direction, params, index_params),
    )
    # The caller records the firing: this alert may be dropped in favour of an extreme one.
    return alert, state


def _hype_rule(
    reading: MoodReading,
    points: Sequence[Point],
    state: AlertState,
    now: datetime,
    params: AlertParams,
    index_params: IndexParams,
    tracked_since: datetime | None,
    baseline: Baseline | None = None,
) -> tuple[Alert | None, AlertState]:
    if reading.scope.asset == "*":
        return None, state  # hype is about one asset's mentions
    count, ratio = mentions_ratio(
        points, now, reading.window, index_params, tracked_since=tracked_since, baseline=baseline
    )
    if count < params.hype_min_mentions or ratio < params.hype_ratio:
        return None, state
    if not _cooled_down(state, HYPE, now, params):
        return None, state

    raw = reading.components.get("raw_sentiment", 0.0)
    direction = (raw > 0) - (raw < 0)
    value = reading.value
    mood = f"mood {round(value)}/100 ({reading.band})" if value is not None else "mood collecting"
    alert = Alert(
        key=_key(HYPE, "", reading, now, params),
        kind=HYPE,
        scope=reading.scope,
        at=now,
        title=f"{_label(reading.scope)} hype spike: {ratio:.1f}x its usual mentions",
        value=value,
        detail=(
            f"{count} mentions in the last {reading.window}; {mood}; "
            f"confidence {reading.confidence:.2f}"
        ),
        evidence=_evidence(points, now, reading, direction, params, index_params),
    )
    return alert, state.with_fired(HYPE, now)


# --- helpers -------------------------------------------------------------------------------


def _cooled_down(state: AlertState, kind: str, now: datetime, params: AlertParams) -> bool:
    last = state.fired_at(kind)
    return last is None or (now - last).total_seconds() >= params.cooldown_s(kind)


def _key(kind: str, sub: str, reading: MoodReading, now: datetime, params: AlertParams) -> str:
    """Dedupe key: the same rule, scope and window within one cooldown bucket is one alert.

    The bucket comes from ``now``, so re-running an evaluation after a crash (before the
    state was saved) gives the same key and the sender can drop the repeat.
    """
    bucket = int(now.timestamp()) // max(params.cooldown_s(kind), 1)
    name = f"{kind}-{sub}" if sub else kind
    return f"{name}:{reading.scope.key()}:{reading.window}:{bucket}"


def _reading_ago(
    earlier: Sequence[MoodReading], now: datetime, seconds: float
) -> MoodReading | None:
    """The reading closest to ``seconds`` before ``now`` (within half that either way)."""
    target = now - timedelta(seconds=seconds)
    slack = timedelta(seconds=seconds / 2)
    candidates = [r for r in earlier if abs(r.at - target) <= slack]
    if not candidates:
        return None
    return min(candidates, key=lambda r: (abs(r.at - target), r.at))


def _label(scope: Scope) -> str:
    label = scope.asset if scope.asset != "*" else "Overall"
    if scope.community != "*":
        label += f" in {scope.community}"
    if scope.platform != "*":
        label += f" on {scope.platform}"
    return label


def _change_words(delta: float) -> str:
    points = round(abs(delta))
    if points == 0:
        return "unchanged"
    return f"{'up' if delta > 0 else 'down'} {points} point{'s' if points != 1 else ''}"


def _sample_words(reading: MoodReading) -> str:
    return f"{reading.sample_size} messages, confidence {reading.confidence:.2f}"


def _evidence(
    points: Sequence[Point],
    now: datetime,
    reading: MoodReading,
    direction: int,
    params: AlertParams,
    index_params: IndexParams,
) -> tuple[str, ...]:
    """Quotes of the messages that drove the alert: an all-sources alert can go to any
    community, so it quotes only posts from trusted public sources (``Point.public``); a
    community's own alert goes only to that community, so it may quote that community."""
    picks = drivers(
        points,
        now,
        reading.window,
        direction,
        k=params.evidence_count,
        params=index_params,
        community=None if reading.scope.community == "*" else reading.scope.community,
        per_asset=reading.scope.asset != "*",  # one asset's reading: shared posts weigh less
    )
    return tuple(quote(p.text, params.quote_chars) for p in picks)
