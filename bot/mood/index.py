"""The mood index ("index v1"): a scope's scored messages over a window, as one 0-100 reading.

The formula, its parameters and the reasons for them are written out in docs/INDEX.md; keep the
two in step (and bump ``INDEX_VERSION`` when the numbers a reading gives would change).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.types import MoodReading, Scope, band_of

INDEX_VERSION = "index v1"

COLLECTING = "collecting"


@dataclass(frozen=True, slots=True)
class Point:
    """One scored message, as the index sees it.

    ``polarity`` is P(pos) - P(neg) in [-1, 1]; ``created_at`` is timezone-aware UTC.
    """

    created_at: datetime
    author: str
    polarity: float
    engagement: int = 0  # likes + replies + reposts
    spam: bool = False
    set_aside: bool = False  # excluded for another reason, e.g. not English
    message_key: str = ""  # points back at the stored message
    text: str = ""  # normalized text, for quoting
    public: bool = True  # may be quoted outside its own community
    community: str = ""
    platform: str = ""
    #: The author's standing where the platform tells us (new or tiny accounts weigh less);
    #: 1.0 when it does not. See ``bot.mood.spam.author_weight``.
    reputation: float = 1.0
    #: The model that scored the message (readings say which models they rest on).
    model_id: str = ""
    #: How many assets the message names. In one asset's reading it counts 1/n: a post that
    #: tags five coins is hardly about each of them (docs/INDEX.md, "Per-asset weight").
    n_assets: int = 1


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """One rolling window: its length, the sample it needs, and the baseline it is compared to."""

    name: str
    seconds: int
    min_sample: int  # fewer valid messages than this: the reading says "collecting"
    baseline_windows: int  # how many preceding windows of the same length make the baseline


DEFAULT_WINDOWS: tuple[WindowSpec, ...] = (
    # 1h against the preceding 24 hours: a whole day, so the time of day averages out.
    WindowSpec("1h", 3600, min_sample=10, baseline_windows=24),
    # 24h against the preceding 7 days: a whole week, so weekends average out.
    WindowSpec("24h", 86400, min_sample=25, baseline_windows=7),
    # 7d against the preceding 28 days (4 weeks).
    WindowSpec("7d", 604800, min_sample=50, baseline_windows=4),
)


@dataclass(frozen=True, slots=True)
class IndexParams:
    """Every number the index uses. See docs/INDEX.md for the reason behind each default."""

    windows: tuple[WindowSpec, ...] = DEFAULT_WINDOWS
    #: Fewer distinct valid authors than this: "collecting" (one loud person is not a crowd).
    min_authors: int = 3
    #: Half-life of a message's weight inside the window, as a fraction of the window length.
    half_life_fraction: float = 0.25
    #: Most weight one author can carry, in units of one fresh message without engagement.
    author_cap: float = 3.0
    #: A message's weight is ``decay * (1 + engagement_weight * ln(1 + engagement))``.
    engagement_weight: float = 0.25
    #: k in ``tanh(k * (s - center))``: how steeply mean polarity maps onto 0-100.
    sentiment_gain: float = 3.0
    #: The mean polarity that reads 50. 0 in v0 (no per-scope calibration yet).
    sentiment_center: float = 0.0
    #: The volume component's share of the index.
    volume_weight: float = 0.25
    #: g in ``tanh(g * log2(volume_ratio))``.
    volume_gain: float = 0.5
    #: Pseudo-count added to both sides of the volume ratio, so tiny scopes do not "surge".
    volume_prior: float = 5.0
    #: Most messages one author adds to the volume count per window.
    volume_author_cap: float = 5.0
    #: n0 in the confidence's ``n / (n + n0)``.
    confidence_messages: float = 25.0
    #: a0 in the confidence's ``A / (A + a0)`` (A = effective number of authors).
    confidence_authors: float = 3.0

    def spec(self, window: str) -> WindowSpec:
        """The window called ``window``.

        Raises:
            ValueError: if there is no such window.
        """
        for spec in self.windows:
            if spec.name == window:
                return spec
        known = ", ".join(s.name for s in self.windows)
        raise ValueError(f"unknown window {window!r} (known: {known})")


def compute_reading(
    points: Sequence[Point],
    scope: Scope,
    window: str,
    now: datetime,
    params: IndexParams | None = None,
    previous: MoodReading | None = None,
    *,
    tracked_since: datetime | None = None,
    baseline: Baseline | None = None,
) -> MoodReading:
    """Compute the mood index of ``scope`` over ``window`` as of ``now``.

    Args:
        points: the scope's scored messages; may include older ones (they make the volume
            baseline) and later ones (ignored: no look-ahead).
        scope: what the reading is about (only copied into the reading).
        window: "1h", "24h" or "7d" (any name in ``params.windows``).
        now: the reading's time, timezone-aware.
        params: the index parameters; ``IndexParams()`` when omitted.
        previous: the scope's previous reading of the same window, if any. v0 smooths inside
            the window (so a reading is a pure function of the messages and can be recomputed
            at any time); ``previous`` only adds a "change" component.
        tracked_since: since when the scope's messages have been collected. Baseline windows
            that start earlier are not counted. When omitted, the oldest point is used, which
            errs towards a smaller baseline sample rather than a false surge.
        baseline: the volume baseline, when the caller already has it (``volume_baseline``
            as of the hour: the minute alert evaluations reuse the hour's); then ``points``
            need only cover the window itself.

    Returns:
        The reading; ``value`` is ``None`` and ``band`` "collecting" below the minimum sample.

    Raises:
        ValueError: if ``now`` is naive or ``window`` is unknown.
    """
    params = params or IndexParams()
    _check_aware(now)
    spec = params.spec(window)
    half_life = spec.seconds * params.half_life_fraction
    per_asset = scope.asset != "*"

    in_window = _in_window(points, now, spec.seconds)
    spam_count = sum(1 for p in in_window if p.spam)
    set_aside = sum(1 for p in in_window if p.set_aside and not p.spam)
    valid = [p for p in in_window if _valid(p)]

    effective, baseline_mean, baseline_windows, ratio = _volume(
        points, now, spec, params, tracked_since, include_set_aside=False, baseline=baseline
    )
    components: dict[str, float] = {
        "volume_ratio": ratio,
        "volume_count": effective,
        "baseline_mean": baseline_mean,
        "baseline_windows": float(baseline_windows),
    }

    # Per-author weight (capped) and weighted mean polarity.
    by_author: dict[str, list[tuple[float, float]]] = {}
    for p in valid:
        w = _weight(p, now, half_life, params, per_asset)
        by_author.setdefault(p.author, []).append((w, _clamp(p.polarity, -1.0, 1.0)))
    author_weights: list[float] = []
    author_terms: list[float] = []
    for pairs in by_author.values():
        total = math.fsum(w for w, _ in pairs)
        mean_polarity = math.fsum(w * pol for w, pol in pairs) / total
        capped = min(total, params.author_cap)
        author_weights.append(capped)
        author_terms.append(capped * mean_polarity)

    n = len(valid)
    authors = len(by_author)
    effective_authors = _inverse_simpson(author_weights)
    confidence = (n / (n + params.confidence_messages)) * (
        effective_authors / (effective_authors + params.confidence_authors)
    )
    components["authors"] = float(authors)
    components["effective_authors"] = effective_authors

    value: float | None = None
    if n > 0:
        s = math.fsum(author_terms) / math.fsum(author_weights)
        x = math.tanh(params.sentiment_gain * (s - params.sentiment_center))
        v = math.tanh(params.volume_gain * math.log2(ratio))
        sentiment = 50.0 + 50.0 * x
        # The volume pushes in the sentiment's direction: a surge of negative messages is
        # fear, a surge of positive ones greed; a lull mutes the reading towards 50.
        volume = 50.0 + 50.0 * x * v
        w = params.volume_weight
        combined = _clamp((1.0 - w) * sentiment + w * volume, 0.0, 100.0)
        components.update(raw_sentiment=s, sentiment=sentiment, volume=volume)
        if n >= spec.min_sample and authors >= params.min_authors:
            value = combined
    if value is not None and previous is not None and previous.value is not None:
        components["change"] = value - previous.value

    return MoodReading(
        scope=scope,
        window=window,
        at=now,
        value=value,
        band=COLLECTING if value is None else band_of(value),
        components=components,
        sample_size=n,
        confidence=_clamp(confidence, 0.0, 1.0),
        spam_count=spam_count,
        set_aside=set_aside,
        models=tuple(sorted({p.model_id for p in valid if p.model_id})),
    )


#: How far back a scope's norm looks, and how much of that span it needs before it is shown.
NORM_SPAN = timedelta(days=30)
NORM_MIN_SPAN = timedelta(days=7)


def with_norm(reading: MoodReading, norm: float | None, covered: timedelta) -> MoodReading:
    """``reading`` with its scope's trailing norm: the mean of the scope's own readings of the
    same window over the last 30 days (``norm``), once they cover at least 7 days.

    Adds the components ``norm_30d`` and ``vs_norm`` (value − norm, in index points). A
    community that always leans bullish reads "Greed" on an ordinary day; "2 above its norm"
    says the day is ordinary (docs/INDEX.md, "The scope's norm").
    """
    if norm is None or covered < NORM_MIN_SPAN or reading.value is None:
        return reading
    components = {**reading.components, "norm_30d": norm, "vs_norm": reading.value - norm}
    return replace(reading, components=components)


def drivers(
    points: Sequence[Point],
    now: datetime,
    window: str,
    direction: int,
    k: int = 3,
    community: str | None = None,
    params: IndexParams | None = None,
    per_asset: bool = False,
) -> list[Point]:
    """The messages that moved the reading most in ``direction``.

    A message's pull is its index weight (recency * engagement) * its polarity towards
    ``direction`` (+1 greed, -1 fear); with ``direction`` 0 it is the weight alone. Only
    valid (non-spam, not set aside) messages in the window with text, public or from
    ``community``, at most one per author and no near-identical duplicates.

    Args:
        points: the scope's scored messages.
        now: as of when, timezone-aware.
        window: the window name.
        direction: +1, -1, or 0.
        k: how many to return at most.
        community: the community that will see the quotes; ``None`` means public ones only.
        params: the index parameters; ``IndexParams()`` when omitted.
        per_asset: the points are one asset's: a message naming n assets pulls 1/n, as in
            that asset's reading.

    Returns:
        Up to ``k`` points, strongest first.
    """
    params = params or IndexParams()
    _check_aware(now)
    spec = params.spec(window)
    half_life = spec.seconds * params.half_life_fraction
    sign = (direction > 0) - (direction < 0)

    ranked: list[tuple[float, Point]] = []
    for p in _in_window(points, now, spec.seconds):
        if not _valid(p) or not p.text.strip():
            continue
        if not (p.public or (community is not None and p.community == community)):
            continue
        pull = _weight(p, now, half_life, params, per_asset)
        if sign:
            pull *= sign * p.polarity
        if pull > 0:
            ranked.append((pull, p))
    # Strongest first; ties broken on the point itself so the picks are deterministic.
    ranked.sort(key=lambda item: (-item[0], _sort_key(item[1])))

    picks: list[Point] = []
    picked_tokens: list[frozenset[str]] = []
    for _, p in ranked:
        if len(picks) >= k:
            break
        tokens = _tokens(p.text)
        if any(q.author == p.author for q in picks):
            continue
        if any(_near_duplicate(tokens, other) for other in picked_tokens):
            continue
        picks.append(p)
        picked_tokens.append(tokens)
    return picks


def mentions_ratio(
    points: Sequence[Point],
    now: datetime,
    window: str,
    params: IndexParams | None = None,
    *,
    tracked_since: datetime | None = None,
    baseline: Baseline | None = None,
) -> tuple[int, float]:
    """How many times a scope was mentioned in the window, and how that compares to its baseline.

    Spam is left out; messages set aside (e.g. not English) still count, since they are
    still people talking about the asset.

    Args:
        points: the scope's messages (all mentions of the asset).
        now: as of when, timezone-aware.
        window: the window name.
        params: the index parameters; ``IndexParams()`` when omitted.
        tracked_since: see ``compute_reading``.
        baseline: see ``compute_reading`` (counted with messages set aside).

    Returns:
        ``(count, ratio)``: the plain count of non-spam mentions in the window, and the
        recency-weighted, author-capped count over the baseline's mean (1.0 = usual).
    """
    params = params or IndexParams()
    _check_aware(now)
    spec = params.spec(window)
    count = sum(1 for p in _in_window(points, now, spec.seconds) if not p.spam)
    _, _, _, ratio = _volume(
        points, now, spec, params, tracked_since, include_set_aside=True, baseline=baseline
    )
    return count, ratio


# --- helpers -------------------------------------------------------------------------------


def _check_aware(now: datetime) -> None:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")


def _clamp(x: float, low: float, high: float) -> float:
    return max(low, min(high, x))


def _valid(p: Point) -> bool:
    return not p.spam and not p.set_aside


def _in_window(points: Iterable[Point], end: datetime, seconds: float) -> list[Point]:
    """Points with ``end - seconds < created_at <= end``."""
    start = end - timedelta(seconds=seconds)
    return [p for p in points if start < p.created_at <= end]


def _decay(age_seconds: float, half_life: float) -> float:
    return 0.5 ** (max(age_seconds, 0.0) / half_life)


def _weight(
    p: Point, now: datetime, half_life: float, params: IndexParams, per_asset: bool = False
) -> float:
    """Recency * engagement * reputation (* 1/n for one of the n assets a post names).
    Engagement counts logarithmically: it is heavy-tailed and buyable."""
    age = (now - p.created_at).total_seconds()
    boost = 1.0 + params.engagement_weight * math.log1p(max(p.engagement, 0))
    share = 1.0 / p.n_assets if per_asset and p.n_assets > 1 else 1.0
    return _decay(age, half_life) * boost * _clamp(p.reputation, 0.0, 1.0) * share


def _mean_kernel(spec: WindowSpec, params: IndexParams) -> float:
    """The decay's mean over the window, to turn decayed counts back into message counts."""
    ratio = 1.0 / params.half_life_fraction  # window / half-life
    return (1.0 - 0.5**ratio) / (ratio * math.log(2.0))


#: A volume baseline: the mean author-capped count of the covered earlier windows, and how
#: many windows were covered.
Baseline = tuple[float, int]


def volume_baseline(
    points: Sequence[Point],
    now: datetime,
    window: str,
    params: IndexParams | None = None,
    *,
    tracked_since: datetime | None = None,
    include_set_aside: bool = False,
) -> Baseline:
    """The volume baseline of ``window`` as of ``now`` (what ``compute_reading`` compares the
    window's count with; ``include_set_aside`` for ``mentions_ratio``'s)."""
    params = params or IndexParams()
    return _baseline(points, now, params.spec(window), params, tracked_since, include_set_aside)


def _counts(p: Point, include_set_aside: bool) -> bool:
    return not p.spam and (include_set_aside or not p.set_aside)


def _baseline(
    points: Sequence[Point],
    now: datetime,
    spec: WindowSpec,
    params: IndexParams,
    tracked_since: datetime | None,
    include_set_aside: bool,
) -> Baseline:
    cap = params.volume_author_cap
    coverage = tracked_since
    if coverage is None and points:
        coverage = min(p.created_at for p in points)
    window_counts: list[float] = []
    for j in range(1, spec.baseline_windows + 1):
        end = now - timedelta(seconds=j * spec.seconds)
        start = end - timedelta(seconds=spec.seconds)
        if coverage is None or start < coverage:
            # Only windows we were watching for their whole length; counting a window from
            # before collection began as "quiet" would make every new scope look like a surge.
            continue
        authors: dict[str, int] = {}
        for p in _in_window(points, end, spec.seconds):
            if _counts(p, include_set_aside):
                authors[p.author] = authors.get(p.author, 0) + 1
        window_counts.append(math.fsum(min(c, cap) for c in authors.values()))
    if not window_counts:
        return 0.0, 0
    return math.fsum(window_counts) / len(window_counts), len(window_counts)


def _volume(
    points: Sequence[Point],
    now: datetime,
    spec: WindowSpec,
    params: IndexParams,
    tracked_since: datetime | None,
    *,
    include_set_aside: bool,
    baseline: Baseline | None = None,
) -> tuple[float, float, int, float]:
    """The window's message count against its baseline.

    Returns ``(effective, baseline_mean, baseline_windows, ratio)``. ``effective`` is the
    recency-weighted count (same decay as the sentiment, rescaled so a steady stream gives the
    plain count), each author adding at most ``volume_author_cap``. The baseline is the mean
    author-capped count of the preceding covered windows; with none covered, the ratio is 1.
    """
    half_life = spec.seconds * params.half_life_fraction
    kernel = _mean_kernel(spec, params)
    cap = params.volume_author_cap

    per_author: dict[str, float] = {}
    for p in _in_window(points, now, spec.seconds):
        if _counts(p, include_set_aside):
            age = (now - p.created_at).total_seconds()
            per_author[p.author] = per_author.get(p.author, 0.0) + _decay(age, half_life) / kernel
    effective = math.fsum(min(c, cap) for c in per_author.values())

    if baseline is None:
        baseline = _baseline(points, now, spec, params, tracked_since, include_set_aside)
    baseline_mean, windows = baseline
    if not windows:
        return effective, 0.0, 0, 1.0
    ratio = (effective + params.volume_prior) / (baseline_mean + params.volume_prior)
    return effective, baseline_mean, windows, ratio


def _inverse_simpson(weights: Sequence[float]) -> float:
    """Effective number of authors: N equal authors give N, one dominant author gives ~1."""
    total = math.fsum(weights)
    squares = math.fsum(w * w for w in weights)
    return total * total / squares if squares > 0 else 0.0


def _sort_key(p: Point) -> tuple[object, ...]:
    return (p.created_at, p.author, p.message_key, p.polarity, p.engagement, p.text)


_URL = re.compile(r"https?://\S+|www\.\S+")
_NON_WORD = re.compile(r"[^\w$]+")


def _tokens(text: str) -> frozenset[str]:
    return frozenset(_NON_WORD.sub(" ", _URL.sub(" ", text.lower())).split())


def _near_duplicate(a: frozenset[str], b: frozenset[str]) -> bool:
    """Same words, give or take a few (copy-pasta, a retweet with "RT", an added link)."""
    if not a or not b:
        return a == b
    return len(a & b) / len(a | b) >= 0.7
