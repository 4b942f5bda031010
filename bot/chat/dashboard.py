"""``/dashboard``: a moderator's signed link to their community's web dashboard, sent by
direct message where the platform allows, and ``/dashboard revoke``."""

from __future__ import annotations

from bot.chat.context import CommandContext, UsageError, dm_target
from bot.chat.registry import COMMANDS
from bot.types import CHAT_PLATFORMS
from connectors.types import Command, Reply, SlashParam

NOT_SET_UP = "The dashboard is not set up on this bot (its operator runs `moodring serve`)."


@COMMANDS.command(
    "dashboard",
    usage="/dashboard [revoke]   (moderators)",
    help="moderators: a private link to this community's web dashboard",
    syntax="/dashboard",
    audience="moderator",
    params=(SlashParam("action", "empty for a link; revoke voids yours", choices=("revoke",)),),
)
def cmd_dashboard(cmd: Command, ctx: CommandContext) -> Reply:
    """Moderators: a link to this community's dashboard, or ``revoke`` to void theirs."""
    if cmd.args[:1] == ("revoke",) and len(cmd.args) == 1:
        if ctx.links is None:
            return Reply(text=NOT_SET_UP)
        ctx.store.revoke_dashboard(cmd.platform, cmd.community, cmd.user, ctx.links.clock())
        return Reply(text="Every dashboard link you were given for this community is revoked.")
    if cmd.args:
        raise UsageError("only 'revoke', or nothing")
    if ctx.links is None:
        return Reply(text=NOT_SET_UP)
    token = ctx.links.token(cmd.platform, cmd.community, cmd.user, ctx.links.clock())
    hours = ctx.links.ttl_s / 3600
    text = (
        f"Your dashboard of this community (valid {hours:g} h; do not share it,"
        f" /dashboard revoke voids it):\n{ctx.links.url(token)}"
    )
    if cmd.is_private or cmd.platform not in CHAT_PLATFORMS:
        return Reply(text=text)  # only the asker reads this chat (a DM, the console)
    if cmd.platform == "telegram" and not ctx.store.has_private_chat(cmd.platform, cmd.user):
        # Telegram lets a bot write only to users who opened a private chat with it.
        return Reply(
            text="I send dashboard links by direct message: open a private chat with me,"
            " press Start, then type /dashboard here again."
        )
    # A group reads replies: the link goes to the asker alone (a Telegram DM; on Discord a
    # reply to ``user:ID`` is sent as an ephemeral answer only the asker sees).
    return Reply(text=text, target=dm_target(cmd))
