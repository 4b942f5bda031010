"""What the operator and moderators see of a running bot: connectors, spend, backlog."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.pipeline.supervisor import health_from_json
from bot.store import TICK_CHECKPOINT, Store, parse_ts

#: Where ``moodring run`` records the X plan it was configured with, for ``/status``.
X_PLAN_CHECKPOINT = "x:plan"


def save_x_plan(store: Store, cap: int, price_per_read: float, now: datetime) -> None:
    """Record the configured X plan, so the operator's ``/status`` prices reads the same way."""
    store.set_checkpoint(X_PLAN_CHECKPOINT, json.dumps({"cap": cap, "price": price_per_read}), now)


def stored_x_plan(store: Store) -> tuple[int, float] | None:
    """The X plan ``moodring run`` last recorded: (monthly read cap, USD per read)."""
    text = store.checkpoint(X_PLAN_CHECKPOINT)
    if text is None:
        return None
    doc = json.loads(text)
    return int(doc["cap"]), float(doc["price"])


def month_of(now: datetime) -> str:
    """The usage month of ``now`` ("2026-11"), in UTC like everything we store."""
    return now.strftime("%Y-%m")


def x_spend_line(store: Store, now: datetime, cap: int, price_per_read: float) -> str:
    """X reads this month against the plan's cap, and what they cost."""
    reads = store.usage("x", month_of(now))
    share = f" ({reads / cap:.0%} of the cap)" if cap > 0 else ""
    return (
        f"X reads in {month_of(now)}: {reads:,} of {cap:,}{share},"
        f" ≈ ${reads * price_per_read:,.2f} at ${price_per_read:g}/read"
    )


def _span(seconds: float) -> str:
    """12s / 7 min / 3.5 h / 2.0 days."""
    s = max(seconds, 0.0)
    if s < 90:
        return f"{s:.0f}s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    if s < 129600:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:,.1f} days"


def _ago(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "never"
    return _span((now - then).total_seconds()) + " ago"


def status_report(
    store: Store,
    now: datetime,
    *,
    plan: tuple[int, float] | None = None,
    detail: bool = True,
) -> str:
    """A plain-text report: each connector's health, X spend, messages, the alert backlog
    and the sends abandoned as too old, the last tick.

    ``plan`` is X's (monthly read cap, USD per read); by default the one ``moodring run``
    recorded. ``detail`` adds the error texts (``moodring status``; the chat's ``/status``
    gets the short one). Only for the operator: moderators get ``community_status``.
    """
    lines = ["Connectors:"]
    stored = store.health()
    if not stored:
        lines.append("  none has reported yet (is `moodring run` running on this database?)")
    for name, doc, _saved_at in stored:
        h = health_from_json(doc)
        parts = [f"  {name}: {h.state}"]
        if h.note:
            parts.append(f"({h.note})")
        if h.state != "off":
            parts.append(f"· {h.messages:,} msgs, last {_ago(h.last_message_at, now)}")
            if h.lag_s is not None:
                parts.append(f"· lag {_span(h.lag_s)}")
            parts.append(f"· {h.errors} errors, {h.restarts} restarts")
            if h.reads:
                parts.append(f"· {h.reads:,} reads")
        line = " ".join(parts)
        if detail and h.last_error:
            line += f"\n    last error: {h.last_error}"
        lines.append(line)
    if stored:
        newest = max(saved_at for _, _, saved_at in stored)
        lines.append(f"  (reported {_ago(newest, now)})")
    plan = plan or stored_x_plan(store)
    if plan is not None:
        lines.append(x_spend_line(store, now, *plan))
    elif reads := store.usage("x", month_of(now)):
        lines.append(f"X reads in {month_of(now)}: {reads:,}")
    lines.append(communities_line(store))
    lines += gaps_lines(store, now, detail)
    counts = store.counts()
    total = sum(counts.get(k, 0) for k in ("new", "scored", "failed"))
    spam_share = counts.get("spam", 0) / total if total else 0.0
    lines.append(
        f"Messages: {total:,} stored, {counts.get('scored', 0):,} scored,"
        f" {counts.get('new', 0):,} waiting, {counts.get('failed', 0):,} set aside with an error;"
        f" spam {spam_share:.1%}"
    )
    pending = store.count_unsent()
    # Abandoned sends are alerts users never got (a platform down past alert_max_age_s):
    # shown on their own, so an outage that lost alerts is seen, not folded into the backlog.
    abandoned = store.count_abandoned()
    tick = store.checkpoint(TICK_CHECKPOINT)
    lines.append(
        f"Alert sends not yet made: {pending:,}; abandoned as too old: {abandoned:,};"
        " index last ticked"
        f" {'never' if tick is None else tick + ' (' + _ago(parse_ts(tick), now) + ')'}"
    )
    return "\n".join(lines)


def gaps_lines(store: Store, now: datetime, detail: bool) -> list[str]:
    """The live streams' gaps of the last 24 h (liquidations): reported, never filled in."""
    gaps = store.stream_gaps(now - timedelta(days=1))
    if not gaps:
        return []
    missed = sum(
        (min(g.until, now) - max(g.since, now - timedelta(days=1)) for g in gaps), timedelta(0)
    )
    lines = [
        f"Stream gaps in 24h: {len(gaps)}, {_span(missed.total_seconds())} not seen"
        " (what happened then is not counted)"
    ]
    if detail:
        lines += [
            f"  {g.source}: {g.since:%m-%d %H:%M:%S}–{g.until:%H:%M:%S} UTC ({g.reason})"
            for g in gaps[-5:]
        ]
    return lines


#: The checkpoint where ``moodring run`` records the allow-list it reads (``save_communities``).
COMMUNITIES_CHECKPOINT = "communities"


def save_communities(store: Store, communities: Sequence[str], now: datetime) -> None:
    """Record the communities this run reads, for ``/status`` and ``moodring status``."""
    store.set_checkpoint(COMMUNITIES_CHECKPOINT, json.dumps(sorted(communities)), now)


def communities_line(store: Store) -> str:
    """Which chat communities the bot reads (the operator's MOODRING_COMMUNITIES)."""
    saved = store.checkpoint(COMMUNITIES_CHECKPOINT)
    if saved is None:
        return "Communities read: not recorded yet (start `moodring run`)"
    listed = json.loads(saved)
    if not listed:
        return "Communities read: none (MOODRING_COMMUNITIES is empty: no group is read)"
    shown = ", ".join(listed[:10]) + (f" and {len(listed) - 10} more" if len(listed) > 10 else "")
    return f"Communities read ({len(listed)}, MOODRING_COMMUNITIES): {shown}"


def community_status(store: Store, platform: str, community: str, now: datetime) -> str:
    """What a chat's moderators see with ``/status``: their own community only.

    Anyone can make a group and be its admin, so nothing here is about the bot as a whole (no
    connectors, X spend, caps or other communities' counts): the community's messages and
    scoring backlog, its subscriptions, and the alerts waiting for or lost to its group.
    """
    counts, newest = store.community_message_counts(platform, community)
    total = sum(counts.values())
    last = "none yet" if newest is None else f"newest {_ago(newest, now)}"
    lines = [
        "Status of this community:",
        f"Messages: {total:,} stored, {counts.get('scored', 0):,} scored,"
        f" {counts.get('new', 0):,} waiting to be scored,"
        f" {counts.get('failed', 0):,} set aside with an error; {last}",
    ]
    subs = store.subscriptions(platform=platform, community=community)
    group = [s for s in subs if s.is_group]
    digests = sum(s.is_digest for s in subs)
    lines.append(
        f"Subscriptions made here: {len(group):,} delivered to the group,"
        f" {len(subs) - len(group) - digests:,} by direct message, {digests:,} daily digests"
    )
    pending, abandoned = store.count_outbox_to(platform, sorted({s.target for s in group}))
    lines.append(
        f"Alert sends to the group not yet made: {pending:,}; abandoned as too old: {abandoned:,}"
    )
    lines.append("(The bot's own health and costs are for its operator.)")
    return "\n".join(lines)
