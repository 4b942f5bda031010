"""The moderators' daily digest: their community's /summary, by direct message, once a day,
to whoever is still one of its moderators when it goes out."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.chat.context import CommandContext
from bot.chat.moderator import cmd_summary
from bot.store import Store, iso
from connectors.base import Sink
from connectors.errors import ConnectorError, DeliveryError, RecipientGone
from connectors.types import Command

log = logging.getLogger(__name__)

#: A platform's live role lookup, the one its commands are checked with: the roles of a
#: command's user in the command's community, e.g. ``frozenset({"admin"})``. It raises a
#: ``ConnectorError`` when the platform cannot say now (the digest then waits).
RoleLookup = Callable[[Command], Awaitable[frozenset[str]]]


def due(hour: int, tz: str, now: datetime, last_sent_day: str | None) -> str | None:
    """The local date to send for, if ``now`` is at or past ``hour`` today and today's digest
    has not gone out yet; else None."""
    local = now.astimezone(ZoneInfo(tz))
    today = local.date().isoformat()
    if local.hour >= hour and last_sent_day != today:
        return today
    return None


async def send_due_digests(
    store: Store, sinks: Mapping[str, Sink], now: datetime, roles: Mapping[str, RoleLookup]
) -> int:
    """Send every digest that is due; each at most once per local day (checkpointed).

    Each is the summary of the one community it was asked for in (a moderator of two groups
    gets two), and goes out only if its user is still a moderator there, asked through
    ``roles`` (by platform) right before the send: the summary quotes that community's
    messages, which a demoted moderator, or one who left a private group, must not read. A
    subscriber who is no longer a moderator loses the subscription; one whose role cannot be
    checked now (the platform is down, or has no lookup in ``roles``) waits.
    """
    sent = 0
    for sub in store.subscriptions():
        if not sub.is_digest or sub.platform not in sinks:
            continue
        key = f"digest:{sub.platform}:{sub.community}:{sub.target}"
        day = due(sub.quiet_start or 0, sub.tz, now, store.checkpoint(key))
        if day is None:
            continue
        cmd = Command(sub.platform, sub.community, sub.community, sub.user, "summary", ("24h",))
        lookup = roles.get(sub.platform)
        if lookup is None:
            log.warning("digest of %s for %s waits: no role lookup", sub.community, sub.user)
            continue
        try:
            held = await lookup(cmd)
        except ConnectorError as exc:
            log.warning("digest of %s for %s waits: %s", sub.community, sub.user, exc)
            continue
        if "admin" not in held:
            store.remove_subscriptions([sub])
            log.info(
                "digest of %s %s for %s removed: no longer a moderator there",
                sub.platform,
                sub.community,
                sub.user,
            )
            continue
        reply = cmd_summary(
            dataclasses.replace(cmd, roles=held), CommandContext(store=store, now=now)
        )
        name = store.community_title(sub.platform, sub.community) or sub.community
        text = f"Daily digest for {name} ({day})\n{reply.text}"
        try:
            await sinks[sub.platform].send(dataclasses.replace(reply, text=text, target=sub.target))
        except RecipientGone:
            store.unsubscribe_target(sub.platform, sub.target)
            continue
        except DeliveryError as exc:
            log.warning("digest to %s not delivered: %s", sub.target, exc)
            continue
        store.set_checkpoint(key, day, now)  # right after the send: at most one repeat
        sent += 1
        log.info("digest sent to %s at %s", sub.target, iso(now))
    return sent
