"""Chat commands, platform-agnostic: a `Command` in, a `Reply` out, read from the store."""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from bot.market.candles import BUNDLED
from bot.mood.index import (
    NORM_SPAN,
    IndexParams,
    Point,
    compute_reading,
    drivers,
    mentions_ratio,
    with_norm,
)
from bot.prefs.community import apply_setting
from bot.prefs.subscriptions import (
    Subscription,
    SubscriptionError,
    describe,
    parse_quiet,
    parse_subscribe,
)
from bot.render import models_text, quote, reading_text, scope_label, unknown_asset_text
from bot.store import ScoredRow, Store, iso, parse_ts
from bot.types import MoodReading, Scope
from connectors.types import Command, Reply
from nlp.assets import AssetTable

log = logging.getLogger(__name__)

WINDOWS = ("1h", "24h", "7d")
CHART_SPANS = {"7d": 7, "30d": 30}
_ASSET_RE = re.compile(r"^\$?[A-Za-z][A-Za-z0-9]{1,9}(?:\.X)?$")

HELP = """moodring reads this community's messages and gives a 0–100 mood index
(0–25 Extreme Fear · 26–46 Fear · 47–54 Neutral · 55–75 Greed · 76–100 Extreme Greed).

/mood [ASSET] [1h|24h|7d] — the mood here and across all sources
/fear [ASSET] — the composite fear & greed index (price components + social mood)
/why [ASSET] — what drives the reading, with the posts that moved it
/trending — assets whose mentions rose most, with their mood
/chart ASSET [7d|30d] — a chart of mood, volume and price
/price ASSET — price, 24h change, volatility, funding, and the mood beside it
/levels ASSET — nearest supports and resistances, how strong and how each was found
  (moderators: /levels ASSET add|remove PRICE for this community's own levels)
/corr ASSET OTHER [30d|90d] — correlation of daily returns, e.g. /corr BTC IGV 90d
/subscribe [ASSET] [extreme|swing|hype|levels|divergence|all] — get alerts
/unsubscribe [ASSET] · /alerts — stop them · list yours
/quiet 22-7 [Europe/Berlin] — hold alerts at night, get one digest in the morning
/summary [24h|7d] — moderators: this community's mood, extremes, topics and spam
/digest 8 [Europe/Berlin] — moderators: that summary by direct message every day
/settings — moderators: alerts on/off, quiet hours, thresholds and cooldown for this chat
/status — moderators: the bot's connectors, backlog and X spend
/help — this message"""

USAGE = {
    "mood": "/mood [ASSET] [1h|24h|7d]   e.g. /mood BTC 24h",
    "fear": "/fear [ASSET]",
    "corr": "/corr ASSET OTHER [30d|90d]   e.g. /corr BTC IGV 90d",
    "why": "/why [ASSET]   e.g. /why ETH",
    "trending": "/trending",
    "chart": "/chart ASSET [7d|30d]   e.g. /chart BTC 30d",
    "price": "/price ASSET   e.g. /price BTC",
    "levels": "/levels ASSET [add|remove PRICE]   e.g. /levels BTC, /levels BTC add 60k",
    "subscribe": "/subscribe [ASSET] [extreme|swing|hype|levels|divergence|all]",
    "unsubscribe": "/unsubscribe [ASSET]",
    "alerts": "/alerts",
    "quiet": "/quiet HOURS [TIMEZONE]   e.g. /quiet 22-7 Europe/Berlin",
    "summary": "/summary [24h|7d]   (moderators)",
    "digest": "/digest HOUR [TIMEZONE] | /digest off   (moderators)",
    "settings": "/settings [alerts on|off | quiet 22-7 [TZ] | extreme 20 80 | cooldown 6]",
    "status": "/status   (moderators)",
}


#: Why a command got no ordinary answer ("" when it did); ``moodring ask`` exits 2 on any other.
Problem = Literal["", "usage", "unknown_command", "unknown_asset", "moderators_only"]
#: How many known assets an "I don't know X" reply lists.
KNOWN_LISTED = 10


class UsageError(ValueError):
    """Bad arguments: the reply is the command's usage line."""


class UnknownAssetError(LookupError):
    """An asset the store has never seen: no message mentioned it and it has no prices."""

    def __init__(self, asset: str) -> None:
        super().__init__(asset)
        self.asset = asset


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What a command needs: the store, "now", the index parameters and the coin table
    (which turns aliases such as "bitcoin" into symbols)."""

    store: Store
    now: datetime
    params: IndexParams = field(default_factory=IndexParams)
    assets: AssetTable = field(default_factory=AssetTable.load)


@dataclass(frozen=True, slots=True)
class Answer:
    """A command's reply, and why it is not an ordinary answer (``problem``, "" if it is)."""

    reply: Reply
    problem: Problem = ""

    @property
    def ok(self) -> bool:
        """Whether the command was understood and answered."""
        return self.problem == ""


def parse_command_text(text: str) -> tuple[str, tuple[str, ...]]:
    """``"/mood@moodring_bot BTC 24h"`` → ``("mood", ("BTC", "24h"))``."""
    parts = text.strip().split()
    if not parts or not parts[0].startswith("/"):
        raise UsageError("commands start with /, e.g. /mood BTC")
    name = parts[0][1:].split("@", 1)[0].lower()
    return name, tuple(parts[1:])


def _asset(arg: str, table: AssetTable) -> str:
    """A symbol from a user's word: ``$BTC.X``, ``btc``, ``bitcoin`` and ``xbt`` are all BTC."""
    if not _ASSET_RE.match(arg):
        raise UsageError(f"{arg[:20]!r} is not an asset symbol")
    word = arg.lstrip("$").removesuffix(".X")
    return _alias(word, table)


def _alias(word: str, table: AssetTable) -> str:
    """The symbol a ticker or one-word coin name stands for (unknown words: upper-cased)."""
    return table.cashtags.get(word.lower(), word.upper())


def _split_args(
    args: tuple[str, ...], options: tuple[str, ...], table: AssetTable
) -> tuple[str | None, str | None]:
    """One optional asset and one optional option (window/span), in any order."""
    asset = option = None
    for arg in args:
        if arg.lower() in options:
            if option is not None:
                raise UsageError("one window at most")
            option = arg.lower()
        elif re.fullmatch(r"\d+[a-z]+", arg.lower()):
            raise UsageError(f"{arg[:10]!r} is not one of {', '.join(options) or 'the options'}")
        elif asset is None:
            asset = _asset(arg, table)
        else:
            raise UsageError("one asset at most")
    return asset, option


# ---------------------------------------------------------------------- known assets


def is_known_asset(store: Store, table: AssetTable, asset: str) -> bool:
    """Whether moodring knows ``asset``: a coin of its table, a bundled reference asset, or one
    the store has seen (mentioned in a message, or with candles or a ticker).

    Args:
        store: The database, read only.
        table: The coin table messages are read with.
        asset: An upper-case symbol, e.g. ``"BTC"``.
    """
    if table.known(asset) or asset in BUNDLED:
        return True
    # Each probe is an index seek (message_assets by asset; prices and tickers by primary key).
    return any(
        store.query(sql, [asset])
        for sql in (
            "SELECT 1 FROM message_assets WHERE asset = ? LIMIT 1",
            "SELECT 1 FROM prices WHERE asset = ? LIMIT 1",
            "SELECT 1 FROM tickers WHERE asset = ? LIMIT 1",
        )
    )


def known_assets(store: Store) -> list[str]:
    """The assets the store knows, most mentioned first: those messages mentioned, then those
    with only candles, a ticker or bundled reference closes, alphabetically.

    Args:
        store: The database, read only.
    """
    mentions = dict(store.query("SELECT asset, COUNT(*) FROM message_assets GROUP BY asset"))
    priced = store.query("SELECT asset FROM prices UNION SELECT asset FROM tickers")
    for asset in [a for (a,) in priced] + list(BUNDLED):
        mentions.setdefault(asset, 0)
    return sorted(mentions, key=lambda a: (-mentions[a], a))


def _known(ctx: CommandContext, asset: str) -> str:
    """``asset`` itself, if moodring knows it.

    Raises:
        UnknownAssetError: it does not (the reply then lists the ones it does).
    """
    if not is_known_asset(ctx.store, ctx.assets, asset):
        raise UnknownAssetError(asset)
    return asset


# ---------------------------------------------------------------------- readings on demand


def _rows(ctx: CommandContext, since: datetime) -> list[ScoredRow]:
    return ctx.store.scored_since(since, ctx.now)


def _points(rows: list[ScoredRow], scope: Scope) -> list[Point]:
    return [
        r.to_point()
        for r in rows
        if (scope.asset == "*" or scope.asset in r.assets)
        and (scope.community == "*" or r.community == scope.community)
        and (scope.platform == "*" or r.platform == scope.platform)
    ]


def reading_at(
    ctx: CommandContext, scope: Scope, window: str, at: datetime | None = None
) -> tuple[MoodReading, list[Point]]:
    """The reading of ``scope`` over ``window`` as of ``at`` (default ``ctx.now``)."""
    at = at or ctx.now
    spec = ctx.params.spec(window)
    since = at - timedelta(seconds=spec.seconds * (spec.baseline_windows + 1))
    rows = ctx.store.scored_since(since, at)
    points = _points(rows, scope)
    tracked = ctx.store.oldest_message_time()
    reading = compute_reading(points, scope, window, at, ctx.params, tracked_since=tracked)
    # The norm comes from the stored readings before ``at`` (the index ticks them hourly).
    norm = ctx.store.reading_norm(scope, window, at - NORM_SPAN, at)
    return with_norm(reading, *norm), points


def _change(ctx: CommandContext, scope: Scope, window: str, now_value: float | None) -> str:
    if now_value is None:
        return ""
    back = timedelta(hours=1) if window == "1h" else timedelta(days=1)
    before, _ = reading_at(ctx, scope, window, ctx.now - back)
    if before.value is None:
        return ""
    delta = round(now_value) - round(before.value)
    return f", {delta:+d} vs {'1h' if window == '1h' else '24h'} ago"


def _mood_line(ctx: CommandContext, scope: Scope, window: str) -> tuple[str, MoodReading]:
    reading, _ = reading_at(ctx, scope, window)
    extra = ""
    if reading.spam_count or reading.set_aside:
        extra = f"; set aside: {reading.spam_count} spam, {reading.set_aside} not English"
    line = (
        f"{scope_label(scope)}: {reading_text(reading)}"
        f"{_change(ctx, scope, window, reading.value)}{extra}"
    )
    return line, reading


# ---------------------------------------------------------------------- handlers


def cmd_help(cmd: Command, ctx: CommandContext) -> Reply:
    return Reply(text=HELP)


def cmd_mood(cmd: Command, ctx: CommandContext) -> Reply:
    asset, window = _split_args(cmd.args, WINDOWS, ctx.assets)
    if asset is not None:
        _known(ctx, asset)
    window = window or "24h"
    lines = [f"Mood as of {ctx.now:%Y-%m-%d %H:%M} UTC"]
    here = Scope(asset=asset or "*", community=cmd.community, platform=cmd.platform)
    lines.append("• here — " + _mood_line(ctx, here, window)[0])
    everywhere, reading = _mood_line(ctx, Scope(asset=asset or "*"), window)
    lines.append("• all sources — " + everywhere)
    if reading.models:  # which model read these messages (and whether history mixes two)
        lines.append(models_text(reading))
    return Reply(text="\n".join(lines))


def cmd_fear(cmd: Command, ctx: CommandContext) -> Reply:
    """The composite fear & greed index: market components joined with the social mood."""
    from bot.market.reads import composite_at, composite_lines

    asset, _ = _split_args(cmd.args, (), ctx.assets)
    asset = "BTC" if asset is None else _known(ctx, asset)
    social, _ = reading_at(ctx, Scope(), "24h")
    lines = [f"Fear & Greed ({asset} market + social) as of {ctx.now:%Y-%m-%d %H:%M} UTC:"]
    reading, why = composite_at(ctx.store, asset, ctx.now, social.value)
    if reading is None:
        lines.append(f"composite unavailable: {why}")
    else:
        lines += composite_lines(reading)
    lines.append(f"Social mood (all sources): {reading_text(social)}")
    c = social.components
    if "sentiment" in c:
        lines.append(
            f"  sentiment {c['sentiment']:.0f}/100 (mean polarity {c['raw_sentiment']:+.2f}),"
            f" volume {c['volume']:.0f}/100 ({c['volume_ratio']:.1f}× its baseline)"
        )
    return Reply(text="\n".join(lines))


def cmd_why(cmd: Command, ctx: CommandContext) -> Reply:
    asset, _ = _split_args(cmd.args, (), ctx.assets)
    scope = Scope(asset="*" if asset is None else _known(ctx, asset))
    reading, points = reading_at(ctx, scope, "24h")
    lines = [f"Why {scope_label(scope)} reads {reading_text(reading)}"]
    c = reading.components
    if "sentiment" in c:
        lines.append(
            f"sentiment {c['sentiment']:.0f}/100 from {reading.sample_size} messages by "
            f"{c['authors']:.0f} authors; volume {c['volume_ratio']:.1f}× baseline → "
            f"{c['volume']:.0f}/100"
        )
    if reading.models:
        lines.append(models_text(reading))
    if reading.value is None:
        return Reply(text="\n".join(lines))
    direction = 1 if reading.value >= 50 else -1
    # Quotes only from public sources or from the asking community; never an author.
    top = drivers(
        points,
        ctx.now,
        "24h",
        direction,
        k=3,
        community=cmd.community,
        per_asset=scope.asset != "*",
    )
    if top:
        lines.append("Moved most by:")
        lines += [f"  “{quote(p.text)}” ({p.polarity:+.2f}{_model_note(p, reading)})" for p in top]
    return Reply(text="\n".join(lines))


def _model_note(point: Point, reading: MoodReading) -> str:
    """Names a driver's model only where the reading mixes models."""
    return f", {point.model_id}" if reading.mixed_models and point.model_id else ""


def cmd_trending(cmd: Command, ctx: CommandContext) -> Reply:
    if cmd.args:
        raise UsageError("no arguments")
    spec = ctx.params.spec("24h")
    rows = _rows(ctx, ctx.now - timedelta(seconds=spec.seconds * (spec.baseline_windows + 1)))
    assets = sorted({a for r in rows for a in r.assets})
    ranked = []
    for asset in assets:
        points = _points(rows, Scope(asset=asset))
        count, ratio = mentions_ratio(points, ctx.now, "24h", ctx.params)
        if count >= 10:
            ranked.append((ratio, count, asset))
    ranked.sort(key=lambda t: (-t[0], -t[1], t[2]))
    if not ranked:
        return Reply(text="Nothing is trending yet: too few mentions in the last 24h.")
    lines = ["Trending (mentions in 24h vs their usual):"]
    for ratio, count, asset in ranked[:5]:
        reading, _ = reading_at(ctx, Scope(asset=asset), "24h")
        lines.append(f"• {asset}: {count} mentions, {ratio:.1f}× — mood {reading_text(reading)}")
    return Reply(text="\n".join(lines))


def _closes(ctx: CommandContext, asset: str) -> list[tuple[datetime, float]]:
    return [
        (parse_ts(ts), close)
        for ts, close in ctx.store.closes(asset, "1d")
        if parse_ts(ts) <= ctx.now
    ]


def cmd_price(cmd: Command, ctx: CommandContext) -> Reply:
    from bot.market.reads import price_view
    from bot.render import money

    asset, _ = _split_args(cmd.args, (), ctx.assets)
    if asset is None:
        raise UsageError("name an asset")
    _known(ctx, asset)
    view = price_view(ctx.store, asset, ctx.now)
    if view is None:
        return Reply(text=f"No stored prices for {asset} yet (`moodring prices backfill {asset}`).")
    parts = [f"{asset} {money(view.price)} ({view.source}, {view.at:%Y-%m-%d %H:%M} UTC)"]
    if view.change_24h_pct is not None:
        parts.append(f"{view.change_24h_pct:+.1f}% in 24h")
    if view.volatility_30d is not None:
        parts.append(f"30d volatility {view.volatility_30d:.0%} a year")
    if view.funding_rate is not None:
        parts.append(f"funding {100 * view.funding_rate:+.4f}%/8h")
    if view.open_interest is not None:
        parts.append(f"open interest {money(view.open_interest)}")
    reading, _ = reading_at(ctx, Scope(asset=asset), "24h")
    change = _change(ctx, Scope(asset=asset), "24h", reading.value)
    return Reply(text=", ".join(parts) + f"\nMood {reading_text(reading)}{change}")


def cmd_levels(cmd: Command, ctx: CommandContext) -> Reply:
    """Levels of an asset; moderators add or remove their community's manual levels."""
    from bot.market.reads import levels_text
    from bot.render import money

    if not cmd.args:
        raise UsageError("name an asset")
    asset = _known(ctx, _asset(cmd.args[0], ctx.assets))
    rest = [a.lower() for a in cmd.args[1:]]
    if not rest:
        text = levels_text(ctx.store, asset, ctx.now, cmd.platform, cmd.community)
        return Reply(text=text)
    if rest[0] not in ("add", "remove") or len(rest) != 2:
        raise UsageError("/levels ASSET, or /levels ASSET add|remove PRICE")
    if "admin" not in cmd.roles:
        return Reply(text="Adding and removing levels is for this chat's moderators only.")
    try:
        price = float(rest[1].lstrip("$").replace(",", "").replace("k", "e3"))
    except ValueError:
        raise UsageError(f"{rest[1][:20]!r} is not a price") from None
    if not (0 < price < 1e9):
        raise UsageError("a price is a positive number, e.g. 60000 or 60k")
    if rest[0] == "add":
        added = ctx.store.add_manual_level(
            cmd.platform, cmd.community, asset, price, cmd.user, ctx.now
        )
        what = "added" if added else "was already there"
        return Reply(text=f"{asset} level {money(price)} {what} for this community.")
    removed = ctx.store.remove_manual_level(cmd.platform, cmd.community, asset, price)
    what = "removed" if removed else "was not a manual level here"
    return Reply(text=f"{asset} level {money(price)} {what}.")


CORR_SPANS = {"30d": 30, "90d": 90}


def cmd_corr(cmd: Command, ctx: CommandContext) -> Reply:
    from bot.market.reads import corr_text

    span = "30d"
    assets = []
    for arg in cmd.args:
        if arg.lower() in CORR_SPANS:
            span = arg.lower()
        elif re.fullmatch(r"\d+[a-z]+", arg.lower()):
            raise UsageError(f"{arg[:10]!r}: the window is 30d or 90d")
        else:
            assets.append(_asset(arg, ctx.assets))
    if len(assets) != 2:
        raise UsageError("name two assets")
    for asset in assets:
        _known(ctx, asset)
    return Reply(text=corr_text(ctx.store, *assets, CORR_SPANS[span], ctx.now))


def cmd_chart(cmd: Command, ctx: CommandContext) -> Reply:
    from bot.chat.charts import mood_chart

    asset, span = _split_args(cmd.args, tuple(CHART_SPANS), ctx.assets)
    if asset is None:
        raise UsageError("name an asset")
    _known(ctx, asset)
    days = CHART_SPANS[span or "7d"]
    since = ctx.now - timedelta(days=days)
    scope = Scope(asset=asset)
    readings = [(r.at, r.value) for r in ctx.store.readings(scope, "24h", since, ctx.now)]
    volume_rows = ctx.store.query(
        "SELECT substr(created_at, 1, 10), COUNT(*) FROM message_assets"
        " WHERE asset = ? AND created_at >= ? AND created_at <= ? GROUP BY 1 ORDER BY 1",
        [asset, iso(since), iso(ctx.now)],
    )
    volumes = [(parse_ts(day + "T00:00:00+00:00"), n) for day, n in volume_rows]
    prices = [(d, c) for d, c in _closes(ctx, asset) if d >= since]
    if not readings and not volumes:
        return Reply(text=f"No data for {asset} in the last {days} days.")
    png = mood_chart(f"{asset} mood — {days}d to {ctx.now:%Y-%m-%d}", readings, volumes, prices)
    last = next((v for _, v in reversed(readings) if v is not None), None)
    caption = f"{asset} mood over {days}d" + (f", now {round(last)}/100" if last else "")
    return Reply(text=caption, image=png, image_name=f"{asset.lower()}-{days}d.png")


MODERATOR_COMMANDS = frozenset({"summary", "digest", "settings", "status"})
SUMMARY_SPANS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}


def cmd_status(cmd: Command, ctx: CommandContext) -> Reply:
    """The bot's health as the operator sees it, without error texts (they may name hosts)."""
    from bot.pipeline.status import status_report

    if cmd.args:
        raise UsageError("no arguments")
    return Reply(text=status_report(ctx.store, ctx.now, detail=False))


def cmd_summary(cmd: Command, ctx: CommandContext) -> Reply:
    """Moderators: this community's mood trend, extremes, topics, spam and busiest channels."""
    _, span = _split_args(cmd.args, tuple(SUMMARY_SPANS), ctx.assets)
    span = span or "24h"
    since = ctx.now - SUMMARY_SPANS[span]
    rows = [
        r
        for r in ctx.store.scored_since(since, ctx.now)
        if r.community == cmd.community and r.platform == cmd.platform
    ]
    if not rows:
        return Reply(text=f"No messages from this community in the last {span}.")
    here = Scope(community=cmd.community, platform=cmd.platform)
    window = "24h" if span == "24h" else "7d"
    now_reading, _ = reading_at(ctx, here, window)
    then_reading, _ = reading_at(ctx, here, window, since)
    spam = sum(r.spam for r in rows)
    lines = [
        f"Summary of the last {span} ({len(rows)} messages, {spam} spam = "
        f"{100 * spam / len(rows):.0f}%):"
    ]
    reasons = ctx.store.spam_reasons(cmd.platform, cmd.community, since, ctx.now)
    if reasons:
        lines.append(
            "• spam by reason: " + ", ".join(f"{n} {why.replace('_', ' ')}" for why, n in reasons)
        )
    trend = f"mood now {reading_text(now_reading)}"
    if then_reading.value is not None and now_reading.value is not None:
        trend += f", {round(now_reading.value) - round(then_reading.value):+d} over {span}"
    lines.append("• " + trend)
    clean = [r for r in rows if not r.spam and not r.set_aside and r.text.strip()]
    if clean:
        best = max(clean, key=lambda r: (r.polarity, r.key))
        worst = min(clean, key=lambda r: (r.polarity, r.key))
        lines.append(f"• most bullish: “{quote(best.text, 120)}” ({best.polarity:+.2f})")
        lines.append(f"• most bearish: “{quote(worst.text, 120)}” ({worst.polarity:+.2f})")
    mentions: dict[str, int] = {}
    for r in clean:
        for a in r.assets:
            mentions[a] = mentions.get(a, 0) + 1
    if mentions:
        top = sorted(mentions.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        lines.append("• talked about: " + ", ".join(f"{a} ({n})" for a, n in top))
    channels: dict[str, int] = {}
    for r in rows:
        channel = r.key.split(":", 2)[1]
        channels[channel] = channels.get(channel, 0) + 1
    busiest = sorted(channels.items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    lines.append("• busiest channels: " + ", ".join(f"{c} ({n})" for c, n in busiest))
    return Reply(text="\n".join(lines))


def cmd_digest(cmd: Command, ctx: CommandContext) -> Reply:
    """Moderators: ``/digest HOUR [TZ]`` turns on a daily /summary by DM; ``/digest off``."""
    dm = _dm(cmd)
    if cmd.args[:1] == ("off",):
        n = ctx.store.unsubscribe(cmd.platform, cmd.user, "digest")
        return Reply(text="Daily digest off." if n else "The daily digest was not on.")
    if not cmd.args or len(cmd.args) > 2 or not cmd.args[0].isdigit():
        raise UsageError("give the hour to send it")
    hour, tz = int(cmd.args[0]), cmd.args[1] if len(cmd.args) > 1 else "UTC"
    if not 0 <= hour <= 23:
        raise UsageError("the hour is 0 to 23")
    try:
        start, _, tz = parse_quiet(f"{hour}-{(hour + 1) % 24}", tz)
    except SubscriptionError as exc:
        raise UsageError(str(exc)) from exc
    sub = Subscription(
        platform=cmd.platform,
        community=cmd.community,
        target=dm,
        user=cmd.user,
        asset="digest",  # one digest subscription per moderator and community
        kinds=("digest",),
        quiet_start=start,  # the digest's hour
        tz=tz,
    )
    ctx.store.subscribe(sub, ctx.now)
    return Reply(text=f"Daily digest of this community by direct message at {hour:02d}:00 {tz}.")


def cmd_settings(cmd: Command, ctx: CommandContext) -> Reply:
    """Moderators: show or change this community's settings (see ``bot.prefs.community``)."""
    current = ctx.store.community_settings(cmd.platform, cmd.community)
    if not cmd.args:
        return Reply(text=f"Settings of this community:\n{current.describe()}")
    try:
        changed = apply_setting(current, cmd.args)
    except SubscriptionError as exc:
        raise UsageError(str(exc)) from exc
    ctx.store.set_community_settings(cmd.platform, cmd.community, changed, ctx.now)
    return Reply(text=f"Saved. Settings of this community:\n{changed.describe()}")


def _target(cmd: Command) -> str:
    """Where a subscriber's alerts go: this chat if it is a DM or a moderator asked in a
    group (delivery to the group), else the user's own DM."""
    if cmd.is_private or "admin" in cmd.roles:
        return cmd.channel
    return _dm(cmd)


def _dm(cmd: Command) -> str:
    """The target of a direct message to the user who sent ``cmd``."""
    # A Discord DM goes to the user, not to a channel id; Telegram's user id is their DM chat.
    return f"user:{cmd.user}" if cmd.platform == "discord" else cmd.user


def cmd_subscribe(cmd: Command, ctx: CommandContext) -> Reply:
    try:
        asset, kinds = parse_subscribe(cmd.args)
    except SubscriptionError as exc:
        raise UsageError(str(exc)) from exc
    if asset != "*":  # "*" is any asset
        asset = _known(ctx, _alias(asset, ctx.assets))
    sub = Subscription(
        platform=cmd.platform,
        community=cmd.community,
        target=_target(cmd),
        user=cmd.user,
        asset=asset,
        kinds=kinds,
    )
    ctx.store.subscribe(sub, ctx.now)
    where = "here" if sub.target == cmd.channel else "by direct message"
    return Reply(text=f"Subscribed {where}: {describe(sub)}. /alerts lists yours.")


def cmd_unsubscribe(cmd: Command, ctx: CommandContext) -> Reply:
    asset, _ = _split_args(cmd.args, (), ctx.assets)
    n = ctx.store.unsubscribe(cmd.platform, cmd.user, asset)
    if not n:
        return Reply(text="You had no such subscription. /alerts lists yours.")
    return Reply(text=f"Unsubscribed ({n} removed).")


def cmd_alerts(cmd: Command, ctx: CommandContext) -> Reply:
    if cmd.args:
        raise UsageError("no arguments")
    subs = ctx.store.subscriptions(platform=cmd.platform, user=cmd.user)
    if not subs:
        return Reply(text="No subscriptions. Try /subscribe BTC extreme")
    return Reply(text="Your alerts:\n" + "\n".join(f"• {describe(s)}" for s in subs))


def cmd_quiet(cmd: Command, ctx: CommandContext) -> Reply:
    if not cmd.args or len(cmd.args) > 2:
        raise UsageError("give hours and optionally a time zone")
    try:
        start, end, tz = parse_quiet(cmd.args[0], cmd.args[1] if len(cmd.args) > 1 else "UTC")
    except SubscriptionError as exc:
        raise UsageError(str(exc)) from exc
    subs = ctx.store.subscriptions(platform=cmd.platform, user=cmd.user)
    if not subs:
        return Reply(text="No subscriptions to quiet. Try /subscribe BTC extreme")
    for sub in subs:
        ctx.store.subscribe(
            dataclasses.replace(sub, quiet_start=start, quiet_end=end, tz=tz), ctx.now
        )
    return Reply(
        text=f"Quiet from {start:02d}:00 to {end:02d}:00 {tz}; what arrives then comes as one "
        "digest when they end."
    )


HANDLERS: dict[str, Callable[[Command, CommandContext], Reply]] = {
    "start": cmd_help,
    "help": cmd_help,
    "mood": cmd_mood,
    "fear": cmd_fear,
    "why": cmd_why,
    "trending": cmd_trending,
    "price": cmd_price,
    "levels": cmd_levels,
    "chart": cmd_chart,
    "corr": cmd_corr,
    "subscribe": cmd_subscribe,
    "unsubscribe": cmd_unsubscribe,
    "alerts": cmd_alerts,
    "quiet": cmd_quiet,
    "summary": cmd_summary,
    "digest": cmd_digest,
    "settings": cmd_settings,
    "status": cmd_status,
}


def answer(cmd: Command, ctx: CommandContext) -> Answer:
    """Answer one command, saying whether it was understood.

    Never raises for user input: bad arguments get the usage line, an unknown command the
    list of commands, an asset nobody has seen the list of known assets.

    Args:
        cmd: The command as a platform parsed it.
        ctx: The store, "now" and the index parameters.

    Returns:
        The reply, with ``problem`` set when it is not an ordinary answer.
    """
    handler = HANDLERS.get(cmd.name)
    if handler is None:
        known = " ".join(f"/{n}" for n in HANDLERS if n != "start")
        text = f"Unknown command /{cmd.name[:32]}. Try: {known}"
        return Answer(Reply(text=text), "unknown_command")
    if cmd.name in MODERATOR_COMMANDS and "admin" not in cmd.roles:
        text = f"/{cmd.name} is for this chat's moderators only."
        return Answer(Reply(text=text), "moderators_only")
    try:
        return Answer(handler(cmd, ctx))
    except UsageError as exc:
        text = f"{exc}. Usage: {USAGE.get(cmd.name, '/help')}"
        return Answer(Reply(text=text), "usage")
    except UnknownAssetError as exc:
        text = unknown_asset_text(exc.asset, known_assets(ctx.store), KNOWN_LISTED)
        return Answer(Reply(text=text), "unknown_asset")


def handle(cmd: Command, ctx: CommandContext) -> Reply:
    """Answer one command (see :func:`answer`). Never raises for user input."""
    return answer(cmd, ctx).reply
