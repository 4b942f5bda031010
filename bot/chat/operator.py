"""The commands about the bot itself rather than a community: its health, as the operator sees
it on the console and moderators see it in their chat."""

from __future__ import annotations

from bot.chat.context import CommandContext, UsageError
from bot.chat.registry import COMMANDS
from connectors.types import Command, Reply


@COMMANDS.command(
    "status",
    usage="/status   (moderators)",
    help="moderators: the bot's connectors, backlog and X spend",
    audience="operator",
)
def cmd_status(cmd: Command, ctx: CommandContext) -> Reply:
    """The bot's health as the operator sees it, without error texts (they may name hosts)."""
    from bot.pipeline.status import status_report

    if cmd.args:
        raise UsageError("no arguments")
    return Reply(text=status_report(ctx.store, ctx.now, detail=False))
