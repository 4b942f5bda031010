"""The commands for a chat's moderators: their community's summary, a daily digest of it by
direct message, and the community's settings."""

from __future__ import annotations

from datetime import timedelta

from bot.chat.context import CommandContext, UsageError, dm_target, reading_at, split_args
from bot.chat.registry import COMMANDS
from bot.prefs.community import apply_setting
from bot.prefs.subscriptions import Subscription, SubscriptionError, parse_timezone
from bot.render import quote, reading_text
from bot.types import Scope
from bot.userinput import whole_number
from connectors.types import Command, Reply, SlashParam

SUMMARY_SPANS = {"24h": timedelta(hours=24), "7d": timedelta(days=7)}


@COMMANDS.command(
    "summary",
    usage="/summary [24h|7d]   (moderators)",
    help="moderators: this community's mood, extremes, topics and spam",
    audience="moderator",
    params=(SlashParam("span", "how far back", choices=tuple(SUMMARY_SPANS)),),
)
def cmd_summary(cmd: Command, ctx: CommandContext) -> Reply:
    """Moderators: this community's mood trend, extremes, topics, spam and busiest channels."""
    _, span = split_args(cmd.args, tuple(SUMMARY_SPANS), ctx.assets)
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


@COMMANDS.command(
    "digest",
    usage="/digest HOUR [TIMEZONE] | /digest off   (moderators)",
    help="moderators: the summary by direct message every day",
    syntax="/digest 8 [Europe/Berlin]",
    audience="moderator",
    params=(
        SlashParam("hour", "hour of day, or off", required=True),
        SlashParam("timezone", "e.g. Europe/Berlin"),
    ),
)
def cmd_digest(cmd: Command, ctx: CommandContext) -> Reply:
    """Moderators: ``/digest HOUR [TZ]`` turns on a daily /summary by DM; ``/digest off``."""
    dm = dm_target(cmd)
    if cmd.args[:1] == ("off",):
        # In a group: this community's digest only (each community has its own); in a DM, all.
        mine = ctx.store.subscriptions(platform=cmd.platform, user=cmd.user)
        n = ctx.store.remove_subscriptions(
            [s for s in mine if s.is_digest and (cmd.is_private or s.community == cmd.community)]
        )
        return Reply(text="Daily digest off." if n else "The daily digest was not on.")
    if not cmd.args or len(cmd.args) > 2:
        raise UsageError("give the hour to send it")
    hour = whole_number(cmd.args[0], 0, 23)
    if hour is None:
        raise UsageError("the hour is a whole number from 0 to 23")
    try:
        tz = parse_timezone(cmd.args[1] if len(cmd.args) > 1 else "UTC")
    except SubscriptionError as exc:
        raise UsageError(str(exc)) from exc
    sub = Subscription(
        platform=cmd.platform,
        community=cmd.community,
        target=dm,
        user=cmd.user,
        asset="digest",  # one digest subscription per moderator and community
        kinds=("digest",),
        quiet_start=hour,  # the digest's hour
        tz=tz,
    )
    ctx.store.subscribe(sub, ctx.now)
    return Reply(text=f"Daily digest of this community by direct message at {hour:02d}:00 {tz}.")


@COMMANDS.command(
    "settings",
    usage="/settings [alerts on|off | quiet 22-7 [TZ] | extreme 20 80 | cooldown 6]",
    help="moderators: alerts on/off, quiet hours, thresholds and cooldown for this chat",
    syntax="/settings",
    audience="moderator",
    params=(
        SlashParam(
            "change",
            "empty to show; e.g. 'alerts off', 'quiet 22-7 Europe/Berlin', 'extreme 20 80',"
            " 'cooldown 6', 'listen off', 'channels all'",
        ),
    ),
)
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
