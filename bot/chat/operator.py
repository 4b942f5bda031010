"""The commands about the bot itself rather than a community: its health, in full for the
operator (the console, ``moodring ask``, the ``operators`` setting's users in a DM), and only
their own community's part for a chat's moderators."""

from __future__ import annotations

from bot.chat.context import CommandContext, UsageError
from bot.chat.registry import COMMANDS
from connectors.types import Command, Reply


@COMMANDS.command(
    "status",
    usage="/status   (moderators: this community; the operator: the whole bot)",
    help="moderators: this community's messages, backlog and alerts; the operator: the bot's",
    audience="operator",
)
def cmd_status(cmd: Command, ctx: CommandContext) -> Reply:
    """The operator: the bot's health (without error texts: they may name hosts). A chat's
    moderator: their community's part only, since anyone can make a group and be its admin."""
    from bot.pipeline.status import community_status, status_report

    if cmd.args:
        raise UsageError("no arguments")
    if "operator" in cmd.roles:
        return Reply(text=status_report(ctx.store, ctx.now, detail=False))
    return Reply(text=community_status(ctx.store, cmd.platform, cmd.community, ctx.now))
