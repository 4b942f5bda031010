"""What each endpoint answers, read from the store through chat's and market's own reads."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.chat.context import CommandContext, reading_at
from bot.market.candles import closed_by, daily_closes
from bot.market.composite import composite, daily_series
from bot.market.levels import LevelView, levels_at, nearest
from bot.market.reads import composite_v2_at, price_view, stored_weights
from bot.store import Store
from bot.types import CHAT_PLATFORMS, Alert, MoodReading, Scope
from bot.web.fng import FngDay
from bot.web.models import (
    AlertOut,
    HistoryOut,
    HistoryPoint,
    LevelOut,
    LevelsOut,
    MoodOut,
    ScopeOut,
)

DAY = timedelta(days=1)
#: A database whose newest message is older than this (by the wall clock) is not live: it
#: answers as of that message, as ``moodring ask`` does (the demo's database, a copy).
LIVE_WITHIN = timedelta(days=1)
STEPS = {"1h": timedelta(hours=1), "1d": DAY}


class NotFoundError(LookupError):
    """Nothing to answer with (an asset moodring has never seen, a source that is not public)."""


def as_of(store: Store, wall: datetime) -> tuple[datetime, bool]:
    """ "Now" for an answer, and whether the database is live.

    Live: the wall clock floored to the minute, so every answer within a minute is the same
    body (and ETag) that ``Cache-Control: max-age=60`` lets clients keep. Not live: the
    newest stored message's time.
    """
    newest = store.newest_message_time()
    if newest is not None and newest < wall - LIVE_WITHIN:
        return newest, False
    return wall.replace(second=0, microsecond=0), True


def is_public(platform: str, community: str, public_sources: Collection[str]) -> bool:
    """Whether a scope's source may appear in the public API: X, replays and other
    non-chat sources always; a chat group only when the operator lists it (or its whole
    platform) in ``public_sources``; all sources together ("*") always (an aggregate)."""
    if platform == "*":
        return community == "*"  # a community id alone could be any platform's private group
    if platform not in CHAT_PLATFORMS or platform in public_sources:
        return True
    return community != "*" and f"{platform}:{community}" in public_sources


@dataclass(frozen=True, slots=True)
class ApiView:
    """One request's view: the chat layer's context (store, now) and what is public."""

    ctx: CommandContext
    live: bool
    public_sources: tuple[str, ...]

    def scope(self, asset: str, community: str, platform: str) -> Scope:
        """The scope asked about, once its source is known to be public."""
        if not is_public(platform, community, self.public_sources):
            raise NotFoundError("no public source by that platform and community")
        return Scope(asset=asset, community=community, platform=platform)


def scope_out(scope: Scope) -> ScopeOut:
    return ScopeOut(asset=scope.asset, community=scope.community, platform=scope.platform)


def mood(view: ApiView, scope: Scope, window: str, at: datetime) -> MoodOut:
    """The reading of ``scope`` as of ``at``: chat's ``reading_at``, as ``/mood`` reads it."""
    reading, _ = reading_at(view.ctx, scope, window, at)
    return mood_out(reading)


def mood_out(r: MoodReading) -> MoodOut:
    return MoodOut(
        scope=scope_out(r.scope),
        window=r.window,
        at=r.at,
        value=None if r.value is None else round(r.value, 2),
        band=r.band,
        components={k: round(v, 4) for k, v in r.components.items()},
        sample_size=r.sample_size,
        confidence=round(r.confidence, 4),
        spam_count=r.spam_count,
        set_aside=r.set_aside,
        model_id=r.models[0] if len(r.models) == 1 else ("mixed" if r.models else None),
        models=list(r.models),
    )


def history(
    view: ApiView, scope: Scope, window: str, step: str, limit: int, since: datetime | None
) -> HistoryOut:
    """The stored readings of ``scope`` (the index ticks them hourly), one per ``step`` (a
    day's is its midnight reading), the newest ``limit`` of them from ``since``, oldest
    first."""
    now = view.ctx.now
    start = since if since is not None else now - STEPS[step] * limit
    rows = view.ctx.store.readings(scope, window, start, now)
    if step == "1d":
        rows = [r for r in rows if r.at.hour == 0 and r.at.minute == 0]
    rows = rows[-limit:] if limit else rows
    points = [
        HistoryPoint(
            at=r.at,
            value=None if r.value is None else round(r.value, 2),
            band=r.band,
            sample_size=r.sample_size,
            confidence=round(r.confidence, 4),
        )
        for r in rows
    ]
    return HistoryOut(scope=scope_out(scope), window=window, step=step, points=points)


def history_csv(doc: HistoryOut) -> str:
    lines = ["at,value,band,sample_size,confidence"]
    for p in doc.points:
        value = "" if p.value is None else f"{p.value}"
        lines.append(f"{p.at.isoformat()},{value},{p.band},{p.sample_size},{p.confidence}")
    return "\n".join(lines) + "\n"


def fng_days(view: ApiView, asset: str, limit: int) -> tuple[list[FngDay], str, str | None]:
    """The composite's days, newest first, the methods they come from, and why there are
    none when there are none.

    Today's value is ``/fear``'s: market-v2 (``composite_v2_at``) with the social mood of all
    sources now. Earlier days are each as of that day's midnight: the market part from
    ``daily_series`` (market-v1: no liquidations or implied volatility in the past), joined
    with the all-sources 24h reading stored at that midnight.
    """
    ctx = view.ctx
    social, _ = reading_at(ctx, Scope(), "24h")
    reading, why = composite_v2_at(ctx.store, asset, ctx.now, social.value)
    if reading is None:
        return [], "market-v2", why
    today = ctx.now.replace(hour=0, minute=0, second=0, microsecond=0)
    days = [FngDay(today, reading.value, reading.band)]
    if limit == 1:
        return days, reading.version, None
    start = None if limit == 0 else today - DAY * (limit - 1)
    weights = stored_weights(ctx.store)
    candles = closed_by(daily_closes(ctx.store, asset, today), today)
    try:
        market = daily_series(candles, start, today - DAY, weights)
    except ValueError:  # gaps in the stored history: today's value still stands
        market = []
    first = market[0].at if market else today
    stored = ctx.store.readings(Scope(), "24h", first, today)
    socials = {r.at: r.value for r in stored if r.value is not None}
    for m in reversed(market):
        social_then = socials.get(m.at)
        joined = composite(m.components, social_then, weights, at=m.at) if social_then else m
        days.append(FngDay(m.at, joined.value, joined.band))
    return days, f"{reading.version}; earlier days market-v1", None


def levels(view: ApiView, asset: str) -> LevelsOut:
    """The nearest computed supports and resistances (a community's manual levels are its
    own and stay in chat)."""
    ctx = view.ctx
    candles = closed_by(daily_closes(ctx.store, asset, ctx.now), ctx.now)
    if not candles:
        raise NotFoundError(f"no stored prices for {asset}")
    price = price_view(ctx.store, asset, ctx.now, candles)
    last = price.price if price is not None else candles[-1].close
    supports, resistances = nearest(levels_at(candles, ctx.now), last, 3)
    return LevelsOut(
        asset=asset,
        at=ctx.now,
        price=last,
        supports=[level_out(v) for v in supports],
        resistances=[level_out(v) for v in resistances],
    )


def level_out(v: LevelView) -> LevelOut:
    return LevelOut(
        price=round(v.level.price, 8),
        kind=v.kind,
        distance_pct=round(v.distance_pct, 3),
        strength=round(v.level.strength, 3),
        source=v.level.source,
        touches=v.level.touches,
        note=v.level.note,
    )


def alerts(view: ApiView, asset: str | None, since: datetime | None, limit: int) -> list[AlertOut]:
    """The alerts raised up to now about public scopes, newest first (an alert about one
    community quotes that community's posts, so only public communities' alerts are shown;
    all-sources alerts quote only public sources already)."""
    now = view.ctx.now
    start = since if since is not None else now - timedelta(days=30)
    found = [
        a
        for a in reversed(view.ctx.store.alerts_between(start, now))
        if is_public(a.scope.platform, a.scope.community, view.public_sources)
        and (asset is None or a.scope.asset == asset)
    ]
    return [alert_out(a) for a in found[:limit]]


def alert_out(a: Alert) -> AlertOut:
    return AlertOut(
        key=a.key,
        kind=a.kind,
        scope=scope_out(a.scope),
        at=a.at,
        title=a.title,
        detail=a.detail,
        value=a.value,
        previous=a.previous,
        evidence=list(a.evidence),
    )


def utc(at: datetime) -> datetime:
    """``at`` in UTC (a naive time is taken as UTC, as ``moodring ask --at`` does)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
