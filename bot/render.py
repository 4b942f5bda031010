"""Rendering: alerts into replies, readings into short human text."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bot.types import Alert, MoodReading, Scope
from connectors.types import Reply

KIND_ICON = {"extreme": "🚨", "swing": "↕️", "hype": "📣", "levels": "📏", "divergence": "🔀"}


def scope_label(scope: Scope, community_title: str = "") -> str:
    """'BTC', 'all sources', 'BTC in Crypto Talk' (the community's title; its id without one) …"""
    what = scope.asset if scope.asset != "*" else "all assets"
    if scope.community != "*":
        return f"{what} in {community_title or scope.community}"
    if scope.platform != "*":
        return f"{what} on {scope.platform}"
    return what if scope.asset != "*" else "all sources"


def quote(text: str, limit: int = 140) -> str:
    """A post as a one-line quote of at most ``limit`` characters ("…" when cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def alert_title(alert: Alert, titles: Mapping[str, str] | None = None) -> str:
    """The alert's title with its community named by its title (``titles``: community id →
    title) rather than by its id, e.g. "Overall in Crypto Talk on telegram: …"."""
    community = alert.scope.community
    title = (titles or {}).get(community, "")
    if community == "*" or not title:
        return alert.title
    # The mood rules word the title from the scope's id (they know no names); the title is
    # known only here, at delivery.
    return alert.title.replace(f" in {community}", f" in {title}", 1)


def render_alert(alert: Alert, target: str = "", titles: Mapping[str, str] | None = None) -> Reply:
    """An alert as a chat reply: title, the numbers, then the quoted drivers (``titles``:
    community id → title, to name the alert's community)."""
    icon = next((v for k, v in KIND_ICON.items() if alert.kind.startswith(k)), "🔔")
    lines = [f"{icon} {alert_title(alert, titles)}"]
    if alert.detail:
        lines.append(alert.detail)
    if alert.evidence:
        lines.append("Driven by:")
        lines += [f"  “{q}”" for q in alert.evidence]
    lines.append(f"({alert.at:%Y-%m-%d %H:%M} UTC)")
    return Reply(text="\n".join(lines), target=target)


def reading_text(reading: MoodReading) -> str:
    """'31/100 Fear (24h, 412 msgs, confidence 0.91)' or 'collecting (12 msgs)'.

    A reading over messages scored by different models says so: its history is not
    comparable until ``moodring rescore`` has re-scored them.
    """
    msgs = f"{reading.sample_size} msg" + ("" if reading.sample_size == 1 else "s")
    if reading.value is None:
        return f"collecting ({msgs} in {reading.window})"
    mixed = ", mixed models" if reading.mixed_models else ""
    return (
        f"{round(reading.value)}/100 {reading.band}{norm_text(reading)} ({reading.window}, "
        f"{msgs}, confidence {reading.confidence:.2f}{mixed})"
    )


def norm_text(reading: MoodReading) -> str:
    """', 6 above its 30-day norm' (or 'below', or 'at'); empty until the scope has a norm."""
    delta = reading.components.get("vs_norm")
    if delta is None:
        return ""
    points = round(delta)
    if points == 0:
        return ", at its 30-day norm"
    return f", {abs(points)} {'above' if points > 0 else 'below'} its 30-day norm"


def models_text(reading: MoodReading) -> str:
    """'scored by moodring-…-v2' or 'mixed models: a (old), b' for a line under a reading."""
    if not reading.models:
        return ""
    if reading.mixed_models:
        return f"mixed models: {', '.join(reading.models)} (moodring rescore re-scores them)"
    return f"scored by {reading.models[0]}"


def unknown_asset_text(asset: str, known: Sequence[str], limit: int = 10) -> str:
    """The answer about an asset nobody has seen: "I don't know NOSUCH: no message has
    mentioned it and there are no prices for it. Known assets: BTC, ETH, IGV."

    Args:
        asset: The symbol asked about.
        known: The assets the store knows, most mentioned first.
        limit: How many of them to list; the rest are counted ("and 3 more").
    """
    listed = ", ".join(known[:limit]) or "none yet"
    if len(known) > limit:
        listed += f" and {len(known) - limit} more"
    return (
        f"I don't know {asset}: no message has mentioned it and there are no prices for it."
        f" Known assets: {listed}."
    )


#: The most characters one command's reply may have: two Discord messages (2,000 each), two
#: Telegram ones at most (4,096 UTF-16 units). Replies that list what users made (subscriptions,
#: levels) list less (``listing``); ``fit_reply`` is the dispatcher's backstop.
REPLY_LIMIT = 4000
CUT_NOTE = "\n… (cut: too long for one reply)"


def listing(items: Sequence[str], limit: int) -> list[str]:
    """The first ``limit`` of ``items``, then "… and N more" in their place if there are more."""
    if len(items) <= limit:
        return list(items)
    return [*items[:limit], f"… and {len(items) - limit} more"]


def fit_reply(text: str, limit: int = REPLY_LIMIT) -> str:
    """``text`` cut to at most ``limit`` characters, at a line end when one is near the cut,
    ending with a note that it was cut. One command must not flood a chat with messages."""
    if len(text) <= limit:
        return text
    room = limit - len(CUT_NOTE)
    head = text[:room]
    newline = head.rfind("\n")
    if newline > room // 2:
        head = head[:newline]
    return head.rstrip() + CUT_NOTE


def render_digest(
    alerts: list[Alert], target: str = "", titles: Mapping[str, str] | None = None
) -> Reply:
    """Several held-back alerts (quiet hours) as one message, oldest first."""
    lines = [f"🔔 {len(alerts)} alerts while you were away:"]
    for alert in sorted(alerts, key=lambda a: (a.at, a.key)):
        lines.append(f"• {alert.at:%m-%d %H:%M} UTC — {alert_title(alert, titles)}")
        lines += [f"  {line}" for line in alert.detail.splitlines()]
    return Reply(text="\n".join(lines), target=target)


def money(price: float) -> str:
    """$74,680 / $3,512.40 / $0.42101: a precision that fits the price."""
    if price >= 1000:
        return f"${price:,.0f}"
    if price >= 1:
        return f"${price:,.2f}"
    return f"${price:.4g}"
