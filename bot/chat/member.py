"""The commands every member may run: mood, fear & greed, drivers, trending, charts, prices,
levels, correlation, and their own alert subscriptions."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime, timedelta

from bot.chat.context import (
    CommandContext,
    UsageError,
    alias,
    asset_arg,
    by_asset,
    change_since,
    dm_target,
    known,
    mood_line,
    reading_at,
    reading_of,
    span_of,
    split_args,
)
from bot.chat.registry import COMMANDS
from bot.mood.index import Point, drivers, mentions_ratio
from bot.prefs.subscriptions import (
    Subscription,
    SubscriptionError,
    describe,
    parse_quiet,
    parse_subscribe,
)
from bot.render import listing, models_text, quote, reading_text, scope_label
from bot.store import parse_ts
from bot.types import MoodReading, Scope
from bot.userinput import decimal_number
from connectors.types import Command, Reply, SlashParam

WINDOWS = ("1h", "24h", "7d")
CHART_SPANS = {"7d": 7, "30d": 30}
CORR_SPANS = {"30d": 30, "90d": 90}
#: /alerts lists this many of the asker's (and of the group's) subscriptions, then counts the
#: rest: a member may subscribe to every cashtag the bot has seen.
ALERTS_LISTED = 20

#: The slash option most commands take.
ASSET = SlashParam("asset", "e.g. BTC")
ASSET_REQUIRED = SlashParam("asset", "e.g. BTC", required=True)


@COMMANDS.command(
    "mood",
    usage="/mood [ASSET] [1h|24h|7d]   e.g. /mood BTC 24h",
    help="the mood here and across all sources",
    params=(ASSET, SlashParam("window", "how far back", choices=WINDOWS)),
)
def cmd_mood(cmd: Command, ctx: CommandContext) -> Reply:
    asset, window = split_args(cmd.args, WINDOWS, ctx.assets)
    if asset is not None:
        known(ctx, asset)
    window = window or "24h"
    lines = [f"Mood as of {ctx.now:%Y-%m-%d %H:%M} UTC"]
    here = Scope(asset=asset or "*", community=cmd.community, platform=cmd.platform)
    lines.append("• here — " + mood_line(ctx, here, window)[0])
    everywhere, reading = mood_line(ctx, Scope(asset=asset or "*"), window)
    lines.append("• all sources — " + everywhere)
    if reading.models:  # which model read these messages (and whether history mixes two)
        lines.append(models_text(reading))
    return Reply(text="\n".join(lines))


@COMMANDS.command(
    "fear",
    usage="/fear [ASSET]",
    help="the composite fear & greed index (price components + social mood)",
    params=(SlashParam("asset", "e.g. BTC (default)"),),
)
def cmd_fear(cmd: Command, ctx: CommandContext) -> Reply:
    """The composite fear & greed index: market components joined with the social mood."""
    from bot.market.reads import composite_lines, composite_v2_at

    asset, _ = split_args(cmd.args, (), ctx.assets)
    asset = "BTC" if asset is None else known(ctx, asset)
    social, _ = reading_at(ctx, Scope(), "24h")
    lines = [f"Fear & Greed ({asset} market + social) as of {ctx.now:%Y-%m-%d %H:%M} UTC:"]
    reading, why = composite_v2_at(ctx.store, asset, ctx.now, social.value)
    if reading is None:
        lines.append(f"composite unavailable: {why}")
    else:
        lines += composite_lines(reading)
    lines += derivatives_lines(ctx, asset, None)
    lines.append(f"Social mood (all sources): {reading_text(social)}")
    c = social.components
    if "sentiment" in c:
        lines.append(
            f"  sentiment {c['sentiment']:.0f}/100 (mean polarity {c['raw_sentiment']:+.2f}),"
            f" volume {c['volume']:.0f}/100 ({c['volume_ratio']:.1f}× its baseline)"
        )
    return Reply(text="\n".join(lines))


@COMMANDS.command(
    "why",
    usage="/why [ASSET]   e.g. /why ETH",
    help="what drives the reading, with the posts that moved it",
    params=(SlashParam("asset", "e.g. ETH"),),
)
def cmd_why(cmd: Command, ctx: CommandContext) -> Reply:
    asset, _ = split_args(cmd.args, (), ctx.assets)
    scope = Scope(asset="*" if asset is None else known(ctx, asset))
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


@COMMANDS.command(
    "trending",
    usage="/trending",
    help="assets whose mentions rose most, with their mood",
)
def cmd_trending(cmd: Command, ctx: CommandContext) -> Reply:
    if cmd.args:
        raise UsageError("no arguments")
    lines = (
        trending_lines(ctx)
        if ctx.held is None
        else ctx.held.memo(("trending",), ctx.now, lambda: trending_lines(ctx))
    )
    return Reply(text="\n".join(lines))


def trending_lines(ctx: CommandContext) -> list[str]:
    """/trending's answer: the five assets mentioned most above their usual, with moods (the
    five most mentioned, said so, when none is above its usual)."""
    # One read of the span for every asset: each ranked asset's reading comes from it too.
    mentions, tracked = by_asset(ctx, ctx.now - span_of(ctx, "24h"))
    ranked = []
    for asset in sorted(mentions):
        count, ratio = mentions_ratio(mentions[asset], ctx.now, "24h", ctx.params)
        if count >= 10:
            ranked.append((ratio, count, asset))
    ranked.sort(key=lambda t: (-t[0], -t[1], t[2]))
    if not ranked:
        return ["Nothing is trending yet: too few mentions in the last 24h."]
    shown = [r for r in ranked if round(r[0], 1) > 1.0]  # as shown: 1.04 reads 1.0×
    lines = ["Trending (mentions in 24h vs their usual):"]
    if not shown:
        # Nothing rose: say so, and list the most mentioned rather than call them trending.
        lines = ["Nothing is mentioned more than usual in the last 24h. Most mentioned:"]
        shown = sorted(ranked, key=lambda t: (-t[1], t[2]))
    for ratio, count, asset in shown[:5]:
        scope = Scope(asset=asset)
        reading = reading_of(ctx, mentions[asset], scope, "24h", ctx.now, tracked)
        lines.append(f"• {asset}: {count} mentions, {ratio:.1f}× — mood {reading_text(reading)}")
    return lines


def _closes(ctx: CommandContext, asset: str) -> list[tuple[datetime, float]]:
    """Daily closes known at ``ctx.now``, each at its close time: a candle is stored under
    its opening midnight, and its close exists only at the next one (as ``/price`` reads it)."""
    day = timedelta(days=1)
    closed = ((parse_ts(ts) + day, close) for ts, close in ctx.store.closes(asset, "1d"))
    return [(at, close) for at, close in closed if at <= ctx.now]


@COMMANDS.command(
    "chart",
    usage="/chart ASSET [7d|30d]   e.g. /chart BTC 30d",
    help="a chart of mood, volume and price",
    params=(ASSET_REQUIRED, SlashParam("span", "how far back", choices=tuple(CHART_SPANS))),
)
def cmd_chart(cmd: Command, ctx: CommandContext) -> Reply:
    from bot.chat.charts import mood_chart

    asset, span = split_args(cmd.args, tuple(CHART_SPANS), ctx.assets)
    if asset is None:
        raise UsageError("name an asset")
    known(ctx, asset)
    days = CHART_SPANS[span or "7d"]
    since = ctx.now - timedelta(days=days)
    scope = Scope(asset=asset)
    readings = [(r.at, r.value) for r in ctx.store.readings(scope, "24h", since, ctx.now)]
    volumes = ctx.store.daily_mentions(asset, since, ctx.now)
    prices = [(d, c) for d, c in _closes(ctx, asset) if d >= since]
    if not readings and not volumes:
        return Reply(text=f"No data for {asset} in the last {days} days.")
    png = mood_chart(f"{asset} mood — {days}d to {ctx.now:%Y-%m-%d}", readings, volumes, prices)
    last = next((v for _, v in reversed(readings) if v is not None), None)
    caption = f"{asset} mood over {days}d" + (f", now {round(last)}/100" if last else "")
    return Reply(text=caption, image=png, image_name=f"{asset.lower()}-{days}d.png")


@COMMANDS.command(
    "price",
    usage="/price ASSET   e.g. /price BTC",
    help="price, 24h change, volatility, funding, and the mood beside it",
    params=(ASSET_REQUIRED,),
)
def cmd_price(cmd: Command, ctx: CommandContext) -> Reply:
    from bot.market.reads import price_view
    from bot.render import money

    asset, _ = split_args(cmd.args, (), ctx.assets)
    if asset is None:
        raise UsageError("name an asset")
    known(ctx, asset)
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
    change = change_since(ctx, Scope(asset=asset), "24h", reading.value)
    lines = [", ".join(parts), *derivatives_lines(ctx, asset, view.volatility_30d)]
    return Reply(text="\n".join(lines) + f"\nMood {reading_text(reading)}{change}")


def _first_upper(text: str) -> str:
    return text[:1].upper() + text[1:]


def derivatives_lines(ctx: CommandContext, asset: str, realised: float | None) -> list[str]:
    """Implied volatility and sampled liquidations, where moodring collects them."""
    from bot.market.liquidations import SAMPLED, liquidation_line
    from bot.market.reads import implied_vol_at, implied_vol_line, liquidations_at

    lines = []
    iv = implied_vol_at(ctx.store, asset, ctx.now)
    if iv is not None:
        lines.append(_first_upper(implied_vol_line(iv, realised)))
    window = liquidations_at(ctx.store, asset, ctx.now)
    if window is not None:
        lines.append(f"{_first_upper(liquidation_line(window))} ({SAMPLED})")
    return lines


@COMMANDS.command(
    "liquidations",
    usage="/liquidations ASSET [24h|7d]   e.g. /liquidations BTC 7d",
    help="sampled forced liquidations by side: the hourly picture and the largest events",
    params=(ASSET_REQUIRED, SlashParam("span", "how far back", choices=("24h", "7d"))),
)
def cmd_liquidations(cmd: Command, ctx: CommandContext) -> Reply:
    from bot.market.liquidations import SAMPLED, liquidation_line, money_short
    from bot.market.reads import liquidations_at

    asset, span = split_args(cmd.args, ("24h", "7d"), ctx.assets)
    if asset is None:
        raise UsageError("name an asset")
    known(ctx, asset)
    window = liquidations_at(ctx.store, asset, ctx.now)
    if window is None:
        return Reply(
            text=f"No liquidations collected for {asset}: they are {SAMPLED} while"
            " `moodring run` has MOODRING_LIQUIDATION_EXCHANGES set."
        )
    days = 7 if span == "7d" else 1
    since = ctx.now - timedelta(days=days)
    lines = [f"{asset} liquidations, {SAMPLED}, to {ctx.now:%Y-%m-%d %H:%M} UTC:"]
    lines.append(liquidation_line(window))
    hours = ctx.store.liquidation_hours(asset, since, ctx.now)
    step = timedelta(hours=1 if days == 1 else 24)
    buckets: dict[datetime, list[float]] = {}
    for h in hours:
        at = since + ((h.hour - since) // step) * step
        longs, shorts = buckets.setdefault(at, [0.0, 0.0])
        buckets[at] = [
            longs + (h.side == "long") * h.notional_usd,
            shorts + (h.side == "short") * h.notional_usd,
        ]
    if buckets:
        lines.append("hourly (longs / shorts):" if days == 1 else "daily (longs / shorts):")
        for at, (longs, shorts) in sorted(buckets.items()):  # at most 24 hours or 7 days
            label = f"{at:%H:%M}" if days == 1 else f"{at:%m-%d}"
            lines.append(f"  {label}  {money_short(longs)} / {money_short(shorts)}")
    largest = ctx.store.largest_liquidations(asset, since, ctx.now, 5)
    if largest:
        lines.append("largest:")
        for e in largest:
            lines.append(
                f"  {e.at:%m-%d %H:%M} {e.side} {money_short(e.notional_usd)}"
                f" at ${e.price:,.0f} ({e.exchange})"
            )
    gaps = ctx.store.stream_gaps(since, "liquidations:")
    if gaps:
        missed = sum((g.until - g.since for g in gaps), timedelta(0))
        lines.append(
            f"streams were down {len(gaps)} times ({missed.total_seconds() / 60:.0f} min):"
            " what happened then is not counted"
        )
    return Reply(text="\n".join(lines))


@COMMANDS.command(
    "levels",
    usage="/levels ASSET [add|remove PRICE]   e.g. /levels BTC, /levels BTC add 60k",
    help="nearest supports and resistances, how strong and how each was found",
    syntax="/levels ASSET",
    note="(moderators: /levels ASSET add|remove PRICE for this community's own levels)",
    uses_roles=True,  # moderators may add and remove levels
    params=(
        ASSET_REQUIRED,
        SlashParam(
            "action", "moderators: add or remove this server's own level", choices=("add", "remove")
        ),
        SlashParam("price", "the level's price, e.g. 60000 or 60k"),
    ),
)
def cmd_levels(cmd: Command, ctx: CommandContext) -> Reply:
    """Levels of an asset; moderators add or remove their community's manual levels."""
    from bot.market.reads import levels_text
    from bot.render import money

    if not cmd.args:
        raise UsageError("name an asset")
    asset = known(ctx, asset_arg(cmd.args[0], ctx.assets))
    rest = [a.lower() for a in cmd.args[1:]]
    if not rest:
        text = levels_text(ctx.store, asset, ctx.now, cmd.platform, cmd.community)
        return Reply(text=text)
    if rest[0] not in ("add", "remove") or len(rest) != 2:
        raise UsageError("/levels ASSET, or /levels ASSET add|remove PRICE")
    if "admin" not in cmd.roles:
        return Reply(text="Adding and removing levels is for this chat's moderators only.")
    price = _price(rest[1])
    if rest[0] == "add":
        added = ctx.store.add_manual_level(
            cmd.platform, cmd.community, asset, price, cmd.user, ctx.now
        )
        what = "added" if added else "was already there"
        return Reply(text=f"{asset} level {money(price)} {what} for this community.")
    removed = ctx.store.remove_manual_level(cmd.platform, cmd.community, asset, price)
    what = "removed" if removed else "was not a manual level here"
    return Reply(text=f"{asset} level {money(price)} {what}.")


def _price(text: str) -> float:
    """A level's price from ``"60000"``, ``"$60,000"``, ``"60k"`` or ``"0.52"`` (lower case).

    Raises:
        UsageError: it is not a positive price below a billion.
    """
    digits = text.removeprefix("$").replace(",", "")
    thousands = digits.endswith("k")
    value = decimal_number(digits.removesuffix("k"), 0, 1e9)
    if value is None:
        raise UsageError(f"{text[:20]!r} is not a price, e.g. 60000 or 60k")
    price = value * 1000 if thousands else value
    if not 0 < price < 1e9:
        raise UsageError("a price is a positive number below a billion, e.g. 60000 or 60k")
    return price


@COMMANDS.command(
    "corr",
    usage="/corr ASSET OTHER [30d|90d]   e.g. /corr BTC IGV 90d",
    help="correlation of daily returns, e.g. /corr BTC IGV 90d",
    params=(
        ASSET_REQUIRED,
        SlashParam("other", "e.g. IGV, QQQ, GLD, SPY", required=True),
        SlashParam("span", "window", choices=tuple(CORR_SPANS)),
    ),
)
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
            assets.append(asset_arg(arg, ctx.assets))
    if len(assets) != 2:
        raise UsageError("name two assets")
    a, b = assets
    if a == b:
        raise UsageError(f"name two different assets: {a} with itself is always +1")
    for asset in assets:
        known(ctx, asset)
    return Reply(text=corr_text(ctx.store, a, b, CORR_SPANS[span], ctx.now))


# ---------------------------------------------------------------------- alert subscriptions


# Telegram refuses a bot's message to anyone who never opened a private chat with it (Start);
# Discord lets a bot write to the members of its servers.
_DM_NEEDS_START = frozenset({"telegram"})


def _target(cmd: Command) -> str:
    """Where a subscriber's alerts go: this chat if it is a DM or a moderator asked in a
    group (delivery to the group), else the user's own DM."""
    if cmd.is_private or "admin" in cmd.roles:
        return cmd.channel
    return dm_target(cmd)


def _for_the_group(cmd: Command) -> bool:
    """A moderator asking in a group (roles looked up just now): their /subscribe and
    /unsubscribe are about the group's subscriptions, as any of its moderators' are."""
    return "admin" in cmd.roles and not cmd.is_private


def group_subscriptions(ctx: CommandContext, cmd: Command) -> list[Subscription]:
    """The subscriptions delivered into ``cmd``'s group (its chat, or its server's channels),
    whichever moderator made them: they belong to the group, not to that moderator."""
    subs = ctx.store.subscriptions(platform=cmd.platform, community=cmd.community)
    return [s for s in subs if s.is_group or s.target == cmd.channel]


def own_subscriptions(ctx: CommandContext, cmd: Command) -> list[Subscription]:
    """The asker's own subscriptions: those delivered to them, not into a group (a demoted
    moderator keeps no say over the group subscriptions they once made)."""
    subs = ctx.store.subscriptions(platform=cmd.platform, user=cmd.user)
    return [s for s in subs if not s.is_group or (cmd.is_private and s.target == cmd.channel)]


@COMMANDS.command(
    "subscribe",
    usage="/subscribe [ASSET] [extreme|swing|hype|levels|divergence|all]",
    help="get alerts",
    uses_roles=True,  # a moderator's subscription delivers to the group
    params=(ASSET, SlashParam("kinds", "extreme, swing, hype, levels, divergence, all")),
)
def cmd_subscribe(cmd: Command, ctx: CommandContext) -> Reply:
    try:
        asset, kinds = parse_subscribe(cmd.args)
    except SubscriptionError as exc:
        raise UsageError(str(exc)) from exc
    if asset != "*":  # "*" is any asset
        asset = known(ctx, alias(asset, ctx.assets))
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
    text = f"Subscribed {where}: {describe(sub)}. /alerts lists yours."
    if (
        sub.target != cmd.channel
        and cmd.platform in _DM_NEEDS_START
        and not ctx.store.has_private_chat(cmd.platform, cmd.user)
    ):
        text += (
            "\nI can't message you yet: open a private chat with me and press Start,"
            " or these alerts cannot reach you."
        )
    return Reply(text=text)


@COMMANDS.command(
    "unsubscribe",
    usage="/unsubscribe [ASSET|all]",
    help="stop your alerts (of one asset, or all); a moderator in a group: the group's",
    uses_roles=True,  # a moderator in a group removes the group's subscriptions
    params=(SlashParam("asset", "e.g. BTC; empty or all stops all"),),
)
def cmd_unsubscribe(cmd: Command, ctx: CommandContext) -> Reply:
    words = tuple(a for a in cmd.args if a.lower() != "all")
    if words and len(words) < len(cmd.args):
        raise UsageError("one asset, or all")
    asset, _ = split_args(words, (), ctx.assets)
    group = _for_the_group(cmd)
    subs = group_subscriptions(ctx, cmd) if group else own_subscriptions(ctx, cmd)
    n = ctx.store.remove_subscriptions([s for s in subs if asset is None or s.asset == asset])
    if group:
        if not n:
            return Reply(text="This group had no such subscription. /alerts lists them.")
        return Reply(text=f"Unsubscribed this group ({n} removed).")
    if not n:
        return Reply(text="You had no such subscription. /alerts lists yours.")
    return Reply(text=f"Unsubscribed ({n} removed).")


@COMMANDS.command(
    "alerts",
    usage="/alerts",
    help="list your alerts; a moderator in a group: the group's too",
    uses_roles=True,  # a moderator in a group sees the group's subscriptions
)
def cmd_alerts(cmd: Command, ctx: CommandContext) -> Reply:
    if cmd.args:
        raise UsageError("no arguments")
    group = group_subscriptions(ctx, cmd) if _for_the_group(cmd) else []
    subs = own_subscriptions(ctx, cmd)
    if not subs and not group:
        return Reply(text="No subscriptions. Try /subscribe BTC extreme")
    parts = []
    if group:
        lines = listing([f"• {describe(s)}" for s in group], ALERTS_LISTED)
        parts.append("This group's alerts:\n" + "\n".join(lines))
    if subs:
        # Titles only for the listed ones: each is a lookup, and a member may have hundreds.
        lines = [
            f"• {describe(s, ctx.store.community_title(s.platform, s.community))}"
            for s in subs[:ALERTS_LISTED]
        ]
        if len(subs) > ALERTS_LISTED:
            lines.append(f"… and {len(subs) - ALERTS_LISTED} more")
        parts.append("Your alerts:\n" + "\n".join(lines))
    return Reply(text="\n".join(parts))


@COMMANDS.command(
    "quiet",
    usage="/quiet HOURS [TIMEZONE]   e.g. /quiet 22-7 Europe/Berlin",
    help="hold alerts at night, get one digest in the morning",
    syntax="/quiet 22-7 [Europe/Berlin]",
    params=(
        SlashParam("hours", "e.g. 22-7", required=True),
        SlashParam("timezone", "e.g. Europe/Berlin"),
    ),
)
def cmd_quiet(cmd: Command, ctx: CommandContext) -> Reply:
    if not cmd.args or len(cmd.args) > 2:
        raise UsageError("give hours and optionally a time zone")
    try:
        start, end, tz = parse_quiet(cmd.args[0], cmd.args[1] if len(cmd.args) > 1 else "UTC")
    except SubscriptionError as exc:
        raise UsageError(str(exc)) from exc
    # The asker's own only: a group's quiet hours are its moderators' /settings.
    subs = own_subscriptions(ctx, cmd)
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
