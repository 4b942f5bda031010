"""Chat commands, platform-agnostic: a `Command` in, a `Reply` out. The dispatch: it loads the
command modules into the registry and answers each command through it."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Literal

# Importing the command modules registers their commands (the registry orders them for /help).
from bot.chat import dashboard, member, moderator, operator, privacy  # noqa: F401
from bot.chat.context import (
    CommandContext,
    UnknownAssetError,
    UsageError,
    is_known_asset,
    known_assets,
    reading_at,
)
from bot.chat.registry import COMMANDS
from bot.render import REPLY_LIMIT, fit_reply, unknown_asset_text
from bot.types import CHAT_PLATFORMS
from connectors.text import storable
from connectors.types import Command, Reply

__all__ = [
    "COMMANDS",
    "Answer",
    "CommandContext",
    "Problem",
    "UnknownAssetError",
    "UsageError",
    "answer",
    "handle",
    "is_known_asset",
    "is_read",
    "known_assets",
    "parse_command_text",
    "reading_at",
]

log = logging.getLogger(__name__)

#: Why a command got no ordinary answer ("" when it did); ``moodring ask`` exits 2 on any other.
Problem = Literal[
    "", "usage", "unknown_command", "unknown_asset", "moderators_only", "community_not_read"
]
#: The one line a group that is not on the allow-list gets, whatever it asks.
NOT_READ = (
    "This bot does not read this group: its operator has not added it to"
    " MOODRING_COMMUNITIES. Direct messages to the bot still work."
)
#: How many known assets an "I don't know X" reply lists.
KNOWN_LISTED = 10


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


def is_read(cmd: Command, communities: frozenset[str] | None) -> bool:
    """Whether ``cmd`` comes from where the bot reads: a direct message, the console, or a
    group on the operator's allow-list ``communities`` (None: no list, every group is read)."""
    return (
        communities is None
        or cmd.is_private
        or cmd.platform not in CHAT_PLATFORMS
        or f"{cmd.platform}:{cmd.community}" in communities
    )


def answer(cmd: Command, ctx: CommandContext) -> Answer:
    """Answer one command, saying whether it was understood.

    Never raises for user input: bad arguments get the usage line, an unknown command the
    list of commands, an asset nobody has seen the list of known assets. Every reply can be
    sent: at most ``REPLY_LIMIT`` characters, and UTF-8 text.

    Args:
        cmd: The command as a platform parsed it.
        ctx: The store, "now" and the index parameters.

    Returns:
        The reply, with ``problem`` set when it is not an ordinary answer.
    """
    result = _answer(cmd, ctx)
    return dataclasses.replace(result, reply=_sendable(cmd.name, result.reply))


def _answer(cmd: Command, ctx: CommandContext) -> Answer:
    if not is_read(cmd, ctx.communities):
        return Answer(Reply(text=NOT_READ), "community_not_read")
    spec = COMMANDS.get(cmd.name)
    if spec is None:
        # /help first: it is the way in.
        names = ("help", *(n for n in COMMANDS.names() if n != "help"))
        text = f"Unknown command /{cmd.name[:32]}. Try: {' '.join(f'/{n}' for n in names)}"
        return Answer(Reply(text=text), "unknown_command")
    if spec.moderators_only and not cmd.roles & spec.allowed_roles:
        text = f"/{cmd.name} is for this chat's moderators only."
        return Answer(Reply(text=text), "moderators_only")
    try:
        return Answer(spec.handler(cmd, ctx))
    except UsageError as exc:
        text = f"{exc}. Usage: {spec.usage}"
        return Answer(Reply(text=text), "usage")
    except UnknownAssetError as exc:
        text = unknown_asset_text(exc.asset, known_assets(ctx.store), KNOWN_LISTED)
        return Answer(Reply(text=text), "unknown_asset")
    except (ValueError, OSError):
        # A backstop: the handlers parse with bot.userinput and raise UsageError, but a parser
        # that lets odd input through (int() of '²', ZoneInfo of a directory) is a bug in that
        # parser, not the user's fault: they get the usage line, the operator the traceback.
        log.warning("/%s raised on its arguments %.200r", spec.name, cmd.args, exc_info=True)
        text = f"I could not read those arguments. Usage: {spec.usage}"
        return Answer(Reply(text=text), "usage")


def _sendable(name: str, reply: Reply) -> Reply:
    """``reply`` as every platform takes it. Backstops: cut to ``REPLY_LIMIT``, so that no
    state users built up (a member's hundreds of subscriptions, say) makes one command flood
    the chat (a handler that needs it should list less, so the operator is told); and half a
    UTF-16 pair, which a platform's JSON can carry into a command's name or arguments, made
    U+FFFD, since UTF-8 has no such character and the reply would never be sent."""
    text = storable(fit_reply(reply.text))
    if text == reply.text:
        return reply
    if len(reply.text) > REPLY_LIMIT:
        log.warning("/%.32s replied with %d characters: cut", name, len(reply.text))
    return dataclasses.replace(reply, text=text)


def handle(cmd: Command, ctx: CommandContext) -> Reply:
    """Answer one command (see :func:`answer`). Never raises for user input."""
    return answer(cmd, ctx).reply
