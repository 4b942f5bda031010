"""What a moderator's dashboard shows of their one community, read through the same chat
reads as the commands (``/mood``'s ``reading_at``, ``/why``'s drivers, ``/status``'s
``community_status``), so the page and the chat cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.chat.context import CommandContext, reading_at
from bot.market.candles import closed_by, daily_closes
from bot.mood.index import drivers
from bot.pipeline.status import community_status
from bot.prefs.subscriptions import describe
from bot.render import quote, reading_text
from bot.types import Alert, MoodReading, Scope

SPAN = timedelta(days=7)
#: Computed timeline points are this far apart when the store holds no readings of the scope.
COMPUTED_STEP = timedelta(hours=6)
PRICE_ASSET = "BTC"


@dataclass(frozen=True, slots=True)
class Driver:
    """One message that moved the reading most, quoted as ``/why`` quotes it."""

    text: str
    polarity: float


@dataclass(frozen=True, slots=True)
class DashboardView:
    """Everything one community's dashboard shows, as of ``now``."""

    platform: str
    community: str
    title: str
    now: datetime
    reading: MoodReading
    reading_line: str
    timeline: tuple[tuple[datetime, float | None], ...]
    prices: tuple[tuple[datetime, float], ...]
    fear_at: int
    greed_at: int
    alerts: tuple[Alert, ...]
    drivers: tuple[Driver, ...]
    spam_total: int
    messages_total: int
    spam_reasons: tuple[tuple[str, int], ...]
    subscriptions: tuple[str, ...]
    settings: str
    health: str


def dashboard_view(ctx: CommandContext, platform: str, community: str) -> DashboardView:
    """The dashboard of ``community`` on ``platform`` as of ``ctx.now``: nothing of any other
    community is read into it (its scope, its alerts, its quotes, its subscriptions)."""
    store, now = ctx.store, ctx.now
    here = Scope(community=community, platform=platform)
    reading, points = reading_at(ctx, here, "24h")
    since = now - SPAN
    timeline = [(r.at, r.value) for r in store.readings(here, "24h", since, now)]
    if len(timeline) < 2:  # no stored readings of this scope: computed, as /mood computes them
        timeline = []
        at = since
        while at < now:
            timeline.append((at, reading_at(ctx, here, "24h", at)[0].value))
            at += COMPUTED_STEP
    timeline.append((now, reading.value))
    candles = closed_by(daily_closes(store, PRICE_ASSET, now), now)
    prices = tuple((c.ts, c.close) for c in candles if c.ts >= since - timedelta(days=1))
    alerts = tuple(
        a
        for a in store.alerts_between(since, now)
        if a.scope.platform == platform and a.scope.community == community
    )
    top: list[Driver] = []
    if reading.value is not None:
        direction = 1 if reading.value >= 50 else -1
        found = drivers(points, now, "24h", direction, k=3, community=community)
        top = [Driver(quote(p.text), p.polarity) for p in found]
    reasons = store.spam_reasons(platform, community, now - timedelta(hours=24), now)
    settings = store.community_settings(platform, community)
    title = store.community_title(platform, community)
    subs = store.subscriptions(platform=platform, community=community)
    return DashboardView(
        platform=platform,
        community=community,
        title=title or community,
        now=now,
        reading=reading,
        reading_line=reading_text(reading),
        timeline=tuple(timeline),
        prices=prices,
        fear_at=settings.fear_at,
        greed_at=settings.greed_at,
        alerts=alerts,
        drivers=tuple(top),
        spam_total=reading.spam_count,
        messages_total=reading.sample_size + reading.spam_count + reading.set_aside,
        spam_reasons=tuple(reasons),
        subscriptions=tuple(describe(s, title) for s in subs),
        settings=settings.describe(),
        health=community_status(store, platform, community, now),
    )
