"""Erasure on request: /forget (a member's own data, or a moderator's for a member) and the
retention of raw chat updates."""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime, timedelta

from bot.chat.context import CommandContext, UsageError
from bot.chat.registry import COMMANDS
from bot.store import Erasure, Store
from connectors.types import Command, Reply, SlashParam

log = logging.getLogger(__name__)

#: A Discord user mention as a slash option carries it: ``<@123>`` or ``<@!123>``.
_MENTION = re.compile(r"<@!?(\d{1,20})>")
#: A numeric platform id (Telegram's channels and anonymous admins are negative).
_ID = re.compile(r"-?\d{1,20}")


def target_of(cmd: Command, arg: str | None) -> str:
    """Whose data a moderator's /forget erases: the author of the message it replies to, or
    the id or Discord mention given.

    Raises:
        UsageError: neither names anyone (a Telegram @username cannot: the Bot API does not
            turn usernames into ids).
    """
    if arg is None:
        if cmd.reply_to_author is None:
            raise UsageError("reply /forget to one of their messages, or give their id")
        return cmd.reply_to_author
    if mention := _MENTION.fullmatch(arg):
        return mention.group(1)
    if _ID.fullmatch(arg):
        return arg
    if arg.startswith("@"):
        raise UsageError(
            "a bot cannot look up @usernames: reply /forget to one of their messages,"
            " or give their numeric id"
        )
    raise UsageError(f"{arg[:20]!r} is neither 'me', an id nor a mention")


def _what(e: Erasure) -> str:
    return (
        f"{e.messages} message{'s' if e.messages != 1 else ''} (their scores stay, under a "
        f"random pseudonym, so readings do not change), {e.quotes} alert quote"
        f"{'s' if e.quotes != 1 else ''} and {e.updates} raw chat update"
        f"{'s' if e.updates != 1 else ''}"
    )


@COMMANDS.command(
    "forget",
    usage="/forget me | /forget ID|@mention (moderators; or as a reply)   e.g. /forget me",
    help="erase your messages and stop moodring storing them (moderators: a member's)",
    syntax="/forget me",
    uses_roles=True,  # a moderator may erase a member of their community
    params=(SlashParam("who", "'me', or (moderators) a member's @mention or id"),),
    note="moderators: reply /forget to a member's message, or /forget ID (on Discord, @member)",
)
def cmd_forget(cmd: Command, ctx: CommandContext) -> Reply:
    """``/forget me``: the asker's data everywhere on this platform. A moderator's ``/forget``
    (a reply, an id or a mention): that member's data in this community."""
    if len(cmd.args) > 1:
        raise UsageError("one person at a time")
    arg = cmd.args[0] if cmd.args else None
    if arg is not None and arg.lower() == "me":
        e = ctx.store.forget_author(cmd.platform, cmd.user, ctx.now, requested_by="the member")
        subs = f", {e.subscriptions} alert subscription{'s' if e.subscriptions != 1 else ''}"
        return Reply(
            text=f"Erased your data everywhere moodring reads on {cmd.platform}: {_what(e)}"
            f"{subs}. Your messages on {cmd.platform} will not be stored again."
        )
    if cmd.is_private or "admin" not in cmd.roles:
        return Reply(
            text="Only this chat's moderators may erase someone else's data. "
            f"/forget me erases yours, everywhere on {cmd.platform}."
        )
    target = target_of(cmd, arg)
    e = ctx.store.forget_author(
        cmd.platform,
        target,
        ctx.now,
        community=cmd.community,
        requested_by=f"moderator {cmd.user} of {cmd.platform}:{cmd.community}",
    )
    return Reply(
        text=f"Erased that member's data in this community: {_what(e)}. "
        "Their messages here will not be stored again."
    )


class InboxRetention:
    """A periodic job of the live bot: clears the raw payload of chat updates processed more
    than ``keep`` ago, at most once per ``every`` (the rows stay: they are known handled)."""

    def __init__(self, store: Store, keep: timedelta, every: timedelta = timedelta(hours=1)):
        self.store = store
        self.keep = keep
        self.every = every
        self._next: datetime | None = None

    async def __call__(self, now: datetime) -> int:
        """Purge if due; how many payloads were cleared."""
        if self._next is not None and now < self._next:
            return 0
        self._next = now + self.every
        n = await asyncio.to_thread(self.store.purge_inbox, now - self.keep)
        if n:
            log.info("retention: cleared the payload of %d processed chat updates", n)
        return n
