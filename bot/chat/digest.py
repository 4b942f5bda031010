"""The moderators' daily digest: their community's /summary, by direct message, once a day."""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime
from zoneinfo import ZoneInfo

from bot.chat.context import CommandContext
from bot.chat.moderator import cmd_summary
from bot.store import Store, iso
from connectors.base import Sink
from connectors.errors import DeliveryError, RecipientGone
from connectors.types import Command

log = logging.getLogger(__name__)


def due(hour: int, tz: str, now: datetime, last_sent_day: str | None) -> str | None:
    """The local date to send for, if ``now`` is at or past ``hour`` today and today's digest
    has not gone out yet; else None."""
    local = now.astimezone(ZoneInfo(tz))
    today = local.date().isoformat()
    if local.hour >= hour and last_sent_day != today:
        return today
    return None


async def send_due_digests(store: Store, sinks: dict[str, Sink], now: datetime) -> int:
    """Send every digest that is due; each at most once per local day (checkpointed)."""
    sent = 0
    for sub in store.subscriptions():
        if not sub.is_digest or sub.platform not in sinks:
            continue
        key = f"digest:{sub.platform}:{sub.community}:{sub.target}"
        day = due(sub.quiet_start or 0, sub.tz, now, store.checkpoint(key))
        if day is None:
            continue
        cmd = Command(sub.platform, sub.community, sub.community, sub.user, "summary", ("24h",))
        reply = cmd_summary(cmd, CommandContext(store=store, now=now))
        text = f"Daily digest for {sub.community} ({day})\n{reply.text}"
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
