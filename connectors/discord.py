"""The Discord connector: guild messages in, slash commands answered, replies out (discord.py)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import io
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Literal

import aiohttp
import discord
from discord import app_commands
from discord.utils import MISSING

from connectors.bounds import MAX_COUNT, count_ok, time_problem
from connectors.errors import DeliveryError, RecipientGone, SourceUnavailable
from connectors.retry import retry_after_s
from connectors.text import split_text as chunks_of
from connectors.text import storable
from connectors.types import Command, Message, Reply, SlashSpec

logger = logging.getLogger(__name__)

PLATFORM = "discord"
TEXT_LIMIT = 2000  # message content, in characters
DEFAULT_BACKFILL_LIMIT = 500  # per channel and reconnect; older gaps are given up
DEFAULT_DEFER_AFTER = 2.0  # seconds; Discord drops an interaction not acknowledged in 3 s
FAILED_TEXT = "Sorry, that failed on our side. Try again in a minute."

# Only what users write; joins, pins, boosts and the like are not community mood.
_USER_MESSAGE_TYPES = frozenset({discord.MessageType.default, discord.MessageType.reply})
#: Options split on spaces and on commas ("extreme, swing"), but not a thousands separator
#: inside a number ("60,000").
_ARG_SPLIT = re.compile(r"\s+|(?<!\d),|,(?!\d)")

Answer = Callable[[Command], Awaitable[Reply]]
OnMessage = Callable[[Message], Awaitable[None]]
OnDelete = Callable[[str, str, str], Awaitable[None]]
LastSeen = Callable[[str], int | None]
Respond = Callable[[discord.Interaction], Awaitable[None]]


# ---------------------------------------------------------------------- translation


def message_to_event(msg: discord.Message, own_id: int | None = None) -> Message | None:
    """Translate a guild text-channel or thread message into a Message, or None.

    Bots (ourselves included), webhooks, system messages, direct messages and messages
    without text give None. An edited message gives the same key and the original
    ``created_at`` (the caller upserts). Discord servers are private communities, so
    ``public`` is False.

    Args:
        msg: a message from discord.py's cache, an event, or ``channel.history``.
        own_id: our bot user's id (ignored even if Discord stops flagging it as a bot).

    Returns:
        The Message, or None when the message is not community chatter or is dated in the
        future (its id says when it was sent). Text and the server's name are made storable
        (``connectors.text.storable``); a count that cannot be one counts 0.
    """
    if msg.guild is None or not isinstance(msg.channel, discord.TextChannel | discord.Thread):
        return None
    if msg.author.bot or msg.webhook_id is not None or msg.author.id == own_id:
        return None
    if msg.type not in _USER_MESSAGE_TYPES or not msg.content.strip():
        return None
    if problem := time_problem(msg.created_at):  # an id no real message has
        logger.warning("discord: skipping message %s: %s", msg.id, problem)
        return None
    return Message(
        platform=PLATFORM,
        community=str(msg.guild.id),
        channel=str(msg.channel.id),
        message_id=str(msg.id),
        author=str(msg.author.id),
        text=storable(msg.content),
        created_at=msg.created_at,  # from the snowflake: aware UTC, unchanged by edits
        likes=min(sum(_count(reaction.count) for reaction in msg.reactions), MAX_COUNT),
        replies=_count(msg.thread.message_count) if msg.thread is not None else 0,
        public=False,
        community_title=storable(msg.guild.name or ""),
    )


def _count(value: object) -> int:
    """A count as reported, or 0 when it cannot be one (negative, absurdly large, not int)."""
    return value if type(value) is int and count_ok(value) else 0


def interaction_to_command(
    interaction: discord.Interaction, admin_roles: Collection[str] = ()
) -> Command:
    """Translate a slash-command interaction into a Command.

    Arguments follow the command's declared parameter order (not the order the user filled
    them in), skipping empty ones; a value with spaces or commas (``kinds: "extreme swing"``)
    becomes several arguments, as typed text would. The user is an admin when they have
    Manage Server or a role named in ``admin_roles`` (case-insensitive).

    Args:
        interaction: an application-command interaction, as the command tree dispatched it.
        admin_roles: role names that count as moderators besides Manage Server.

    Returns:
        The Command; ``is_private`` for a direct message.
    """
    command = interaction.command
    data: Mapping[str, object] = interaction.data or {}  # a union of TypedDicts; "name" is optional
    name = command.name if command is not None else str(data.get("name", ""))
    args: list[str] = []
    parameters = command.parameters if isinstance(command, app_commands.Command) else []
    for parameter in parameters:
        value = getattr(interaction.namespace, parameter.name, None)
        if value is not None:
            args.extend(part for part in _ARG_SPLIT.split(str(value)) if part)
    channel = str(interaction.channel_id)
    guild_id = interaction.guild_id
    guild = interaction.guild  # None in a DM, or for a server not in the client's cache
    return Command(
        platform=PLATFORM,
        community=str(guild_id) if guild_id is not None else channel,
        channel=channel,
        user=str(interaction.user.id),
        name=name,
        args=tuple(args),
        roles=_roles(interaction.user, admin_roles),
        is_private=guild_id is None,
        community_title=(guild.name or "") if guild is not None else "",
    )


def _roles(user: discord.User | discord.Member, admin_roles: Collection[str]) -> frozenset[str]:
    if not isinstance(user, discord.Member):
        return frozenset()  # a DM: no server, no roles
    wanted = {name.casefold() for name in admin_roles}
    if user.guild_permissions.manage_guild or any(
        role.name.casefold() in wanted for role in user.roles
    ):
        return frozenset({"admin"})
    return frozenset()


#: What asking Discord can fail with besides an HTTP error status: a rate limit longer than
#: the client waits (``RateLimited``), and the network (aiohttp's errors, timeouts).
_UNREACHABLE = (discord.DiscordException, aiohttp.ClientError, TimeoutError, OSError)


async def _member_roles(
    guild: discord.Guild, user_id: int, admin_roles: Collection[str]
) -> frozenset[str]:
    """The roles member ``user_id`` holds in ``guild`` now, fetched from Discord."""
    try:
        member = await guild.fetch_member(user_id)
    except discord.NotFound:
        return frozenset()  # no longer in the server
    except discord.HTTPException as exc:
        raise SourceUnavailable(f"discord: cannot look up a member ({exc.status})") from None
    except _UNREACHABLE as exc:  # rate limited past the wait allowed, or the network failed
        raise SourceUnavailable(f"discord: cannot look up a member ({exc!r})") from None
    return _roles(member, admin_roles)


async def rest_roles(
    client: discord.Client, command: Command, admin_roles: Collection[str]
) -> frozenset[str]:
    """``DiscordConnector.roles_of`` for a client with no gateway (``rest_client``): the
    server and the member are both fetched over HTTP, so a process that does not read the
    gateway (``moodring serve``) can still re-check a moderator.

    Raises:
        SourceUnavailable: Discord cannot say now (an outage, or the request failed).
    """
    if not command.community.isdigit() or not command.user.isdigit():
        return frozenset()
    try:
        guild = await client.fetch_guild(int(command.community), with_counts=False)
    except (discord.NotFound, discord.Forbidden):
        return frozenset()  # a server the bot is not in (or has left)
    except discord.HTTPException as exc:
        raise SourceUnavailable(f"discord: cannot look up a server ({exc.status})") from None
    except _UNREACHABLE as exc:
        raise SourceUnavailable(f"discord: cannot look up a server ({exc!r})") from None
    return await _member_roles(guild, int(command.user), admin_roles)


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split text into chunks Discord accepts (``limit`` characters, see ``connectors.text``)."""
    return chunks_of(text, limit)


def _file(reply: Reply) -> discord.File:
    assert reply.image is not None
    return discord.File(io.BytesIO(reply.image), filename=reply.image_name)


# ---------------------------------------------------------------------- the client


class DiscordConnector:
    """Owns a ``discord.Client``: guild messages go to ``on_message``, slash commands to
    ``answer``, edits and deletes to their callbacks; after each READY (a fresh session, not
    a resume) the listened channels are backfilled from the last seen message.

    Example::

        connector = DiscordConnector(answer=answer, on_message=store_message,
                                     on_delete=forget, last_seen=last_seen, commands=specs)
        await connector.run(token, stop)
    """

    def __init__(
        self,
        *,
        answer: Answer,
        on_message: OnMessage,
        on_delete: OnDelete,
        last_seen: LastSeen,
        commands: Iterable[SlashSpec],
        channel_ids: Iterable[int] = (),
        admin_roles: Collection[str] = (),
        sync_commands: bool = True,
        backfill_limit: int = DEFAULT_BACKFILL_LIMIT,
        defer_after: float = DEFAULT_DEFER_AFTER,
        max_ratelimit_timeout: float = 30.0,
        shards: int | Literal["auto"] | None = None,
    ) -> None:
        """Build the client and its command tree; nothing connects until ``run``.

        Args:
            answer: answers a Command (rate limits, roles policy and errors are its business).
            on_message: receives each guild message, edit and backfilled message.
            on_delete: receives ``("discord", channel_id, message_id)`` for each deletion.
            last_seen: the newest stored message id of a channel (our string id), or None.
            commands: the slash commands to offer (the bot's command registry makes them).
            channel_ids: the channels (or thread parents) to listen to; empty means all.
            admin_roles: role names that count as moderators besides Manage Server.
            sync_commands: publish the slash commands globally at login (Discord keeps them;
                turn off once published to save a request).
            backfill_limit: the most messages fetched per channel after a new session.
            defer_after: seconds to wait for ``answer`` before acknowledging with "thinking…"
                and sending the reply as a follow-up.
            max_ratelimit_timeout: longer rate-limit waits raise instead of sleeping, so the
                caller's delivery queue decides when to retry.
            shards: None for one gateway connection; a shard count, or "auto" for the count
                Discord recommends, runs ``discord.AutoShardedClient`` (Discord requires
                sharding from 2,500 servers on); each shard's new session backfills the
                channels of its own servers.
        """
        self.answer = answer
        self.on_message = on_message
        self.on_delete = on_delete
        self.last_seen = last_seen
        self.channel_ids = frozenset(channel_ids)
        self.admin_roles = tuple(admin_roles)
        self.sync_commands = sync_commands
        self.backfill_limit = backfill_limit
        self.defer_after = defer_after
        self.sessions = 0  # READY events seen: each is a new gateway session
        self.client: _Client
        if shards is None:
            self.client = _Client(self, max_ratelimit_timeout)
        else:
            count = None if shards == "auto" else shards
            self.client = _ShardedClient(self, max_ratelimit_timeout, shard_count=count)
        self.tree = self.client.tree
        for spec in commands:
            self.tree.add_command(slash_command(spec, self.respond))

    async def run(self, token: str, stop: asyncio.Event) -> None:
        """Connect and serve until ``stop`` is set; discord.py reconnects on its own.

        Raises:
            SourceUnavailable: the token was rejected, the Message Content intent is not
                enabled for the application, or the gateway closed for good.
        """
        async with self.client:
            serve = asyncio.ensure_future(self.client.start(token))
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({serve, stopper}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopper.cancel()
                if not serve.done():
                    await self.client.close()  # makes start() return
                    with contextlib.suppress(asyncio.CancelledError):
                        await serve
            try:
                serve.result()
            except discord.LoginFailure as exc:
                raise SourceUnavailable("discord rejected the bot token") from exc
            except discord.PrivilegedIntentsRequired as exc:
                raise SourceUnavailable(
                    "discord: enable the Message Content intent for this application"
                ) from exc
            except (discord.DiscordException, OSError) as exc:
                # discord.py retries transient failures itself; what reaches here is fatal.
                raise SourceUnavailable(f"discord connection failed: {exc!r}") from exc

    # -------------------------------------------------------------- events (from _Client)

    def listens_to(self, channel: Any) -> bool:
        """Whether messages in ``channel`` (a channel or thread) are ours to read."""
        if not self.channel_ids:
            return True
        parent_id = getattr(channel, "parent_id", None)
        return channel.id in self.channel_ids or parent_id in self.channel_ids

    def _listens_to_id(self, channel_id: int) -> bool:
        channel = self.client.get_channel(channel_id)
        if channel is None:
            return not self.channel_ids or channel_id in self.channel_ids
        return self.listens_to(channel)

    def _own_id(self) -> int | None:
        return self.client.user.id if self.client.user is not None else None

    async def handle_message(self, msg: discord.Message) -> None:
        """Hand a new or edited guild message on, if it is one we listen to."""
        if not self.listens_to(msg.channel):
            return
        event = message_to_event(msg, self._own_id())
        if event is not None:
            await self.on_message(event)

    async def handle_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        """An edit that changed the text: the same key with the new text."""
        if "content" not in payload.data:
            return  # embeds unfurled, pinned, ...: the text did not change
        await self.handle_message(payload.message)

    async def handle_delete(self, channel_id: int, message_ids: Iterable[int]) -> None:
        """Deleted messages: tell ``on_delete`` (unknown ids are its business)."""
        if not self._listens_to_id(channel_id):
            return
        for message_id in message_ids:
            await self.on_delete(PLATFORM, str(channel_id), str(message_id))

    async def handle_ready(self, shard_id: int | None = None) -> None:
        """A new gateway session (of one shard, when sharded): events since the last one are
        lost, so backfill (that shard's servers only)."""
        self.sessions += 1
        shard = "" if shard_id is None else f" (shard {shard_id})"
        logger.info("discord: session %d ready%s, backfilling", self.sessions, shard)
        await self.backfill(shard_id)

    def backfill_channels(
        self, shard_id: int | None = None
    ) -> list[discord.TextChannel | discord.Thread]:
        """The channels to backfill: the configured ones we can see, else every text channel;
        with ``shard_id``, only those of servers on that shard."""
        if self.channel_ids:
            found = [self.client.get_channel(channel_id) for channel_id in self.channel_ids]
            channels = [c for c in found if isinstance(c, discord.TextChannel | discord.Thread)]
        else:
            channels = [
                channel
                for guild in self.client.guilds
                for channel in guild.text_channels
                if channel.permissions_for(guild.me).read_message_history
            ]
        if shard_id is not None:
            channels = [c for c in channels if c.guild.shard_id == shard_id]
        return sorted(channels, key=lambda c: c.id)

    async def backfill(self, shard_id: int | None = None) -> int:
        """Fetch, oldest first, what each channel (of ``shard_id``'s servers, when given)
        got after its last seen message.

        A channel never seen (``last_seen`` gives None) is skipped: old history is not live
        mood. Errors are logged per channel, never raised.

        Returns:
            How many Messages were handed to ``on_message``.
        """
        sent = 0
        own_id = self._own_id()
        for channel in self.backfill_channels(shard_id):
            last = self.last_seen(str(channel.id))
            if last is None:
                continue
            try:
                async for msg in channel.history(
                    limit=self.backfill_limit, after=discord.Object(last), oldest_first=True
                ):
                    event = message_to_event(msg, own_id)
                    if event is not None:
                        await self.on_message(event)
                        sent += 1
            except discord.HTTPException as exc:
                logger.warning(
                    "discord: cannot backfill channel %s (%s %s)", channel.id, exc.status, exc.code
                )
        logger.info("discord: backfilled %d messages", sent)
        return sent

    async def roles_of(self, command: Command) -> frozenset[str]:
        """The roles ``command``'s user holds in its server now, asked of Discord (the digest
        job re-checks a moderator this way; a slash command carries its own roles).

        Someone no longer in the server, or a server the bot has left, has none.

        Raises:
            SourceUnavailable: Discord cannot say now (not connected yet, the server is in an
                outage, or the request failed).
        """
        if not command.community.isdigit() or not command.user.isdigit():
            return frozenset()
        if not self.client.is_ready():
            raise SourceUnavailable("discord: not connected, roles unknown")
        guild = self.client.get_guild(int(command.community))
        if guild is None:
            return frozenset()  # not a server the bot is in (or a DM channel)
        if guild.unavailable:
            raise SourceUnavailable(f"discord: server {guild.id} is unavailable")
        # Asked, not read from the cache: without the members intent a cached member's
        # roles are not kept up to date, and a demotion must count.
        return await _member_roles(guild, int(command.user), self.admin_roles)

    async def respond(self, interaction: discord.Interaction) -> None:
        """Answer a slash command: ``answer`` it, then reply with mentions disabled."""
        command = interaction_to_command(interaction, self.admin_roles)
        task = asyncio.ensure_future(self._answer(command))
        done, _ = await asyncio.wait({task}, timeout=self.defer_after)
        deferred = not done
        if deferred:
            # Slow (a chart, a busy store): acknowledge now, reply as a follow-up.
            await interaction.response.defer(thinking=True)
        reply = await task
        # A reply addressed to the asker alone (a private link) is ephemeral: only they see it.
        private = reply.target == f"user:{command.user}"
        chunks = split_text(reply.text) or [""]
        file: discord.File = _file(reply) if reply.image is not None else MISSING
        attachments: Sequence[discord.File] = [file] if reply.image is not None else MISSING
        none = discord.AllowedMentions.none()
        if deferred and private:
            # The "thinking…" message is public: it says where the answer went instead.
            await interaction.edit_original_response(content="Answered privately.")
            await interaction.followup.send(
                content=chunks[0], allowed_mentions=none, ephemeral=True
            )
        elif deferred:  # the "thinking…" message becomes the reply
            await interaction.edit_original_response(
                content=chunks[0],
                attachments=attachments,
                allowed_mentions=none,
            )
        else:
            await interaction.response.send_message(
                content=chunks[0], file=file, allowed_mentions=none, ephemeral=private
            )
        for chunk in chunks[1:]:
            await interaction.followup.send(content=chunk, allowed_mentions=none, ephemeral=private)

    async def _answer(self, command: Command) -> Reply:
        try:
            return await self.answer(command)
        except Exception:  # a bug must not leave the user with "The application did not respond"
            logger.exception("discord: /%s failed", command.name)
            return Reply(text=FAILED_TEXT)


class _Client(discord.Client):
    """A discord.Client that forwards its events to a DiscordConnector."""

    def __init__(
        self, connector: DiscordConnector, max_ratelimit_timeout: float, **shards: Any
    ) -> None:
        intents = discord.Intents.none()
        intents.guilds = True
        intents.guild_messages = True
        intents.message_content = True  # privileged: must be enabled in the developer portal
        intents.dm_messages = True
        super().__init__(
            intents=intents,
            # Replies quote user text; nothing we send may ever ping anyone.
            allowed_mentions=discord.AllowedMentions.none(),
            max_ratelimit_timeout=max_ratelimit_timeout,
            **shards,
        )
        self.connector = connector
        # On the client, where discord.py convention (and test harnesses) look for it.
        self.tree = app_commands.CommandTree(self)

    async def setup_hook(self) -> None:
        if self.connector.sync_commands:
            synced = await self.connector.tree.sync()
            logger.info("discord: %d slash commands published", len(synced))

    async def on_ready(self) -> None:
        await self.connector.handle_ready()

    async def on_resumed(self) -> None:
        logger.info("discord: session resumed; Discord replays what was missed")

    async def on_message(self, message: discord.Message) -> None:
        await self.connector.handle_message(message)

    async def on_raw_message_edit(self, payload: discord.RawMessageUpdateEvent) -> None:
        await self.connector.handle_edit(payload)

    async def on_raw_message_delete(self, payload: discord.RawMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await self.connector.handle_delete(payload.channel_id, [payload.message_id])

    async def on_raw_bulk_message_delete(self, payload: discord.RawBulkMessageDeleteEvent) -> None:
        if payload.guild_id is not None:
            await self.connector.handle_delete(payload.channel_id, sorted(payload.message_ids))


class _ShardedClient(_Client, discord.AutoShardedClient):
    """``_Client`` over one gateway connection per shard: each shard that starts a new
    session backfills its own servers (``on_ready`` comes once, when all are up)."""

    async def on_ready(self) -> None:
        logger.info("discord: all %s shards ready", self.shard_count)

    async def on_shard_ready(self, shard_id: int) -> None:
        await self.connector.handle_ready(shard_id)

    async def on_shard_resumed(self, shard_id: int) -> None:
        logger.info("discord: shard %d resumed; Discord replays what was missed", shard_id)


async def rest_client(token: str, max_ratelimit_timeout: float = 30.0) -> discord.Client:
    """A client logged in over HTTP only, no gateway: enough for ``DiscordSink`` and
    ``rest_roles`` where another process reads the gateway (a stage worker that delivers
    alerts, ``moodring serve`` re-checking a dashboard's moderator). Close it after.

    Raises:
        SourceUnavailable: the token was rejected, or Discord could not be reached.
    """
    intents = discord.Intents.none()
    intents.guilds = True  # unused without a gateway; unset, discord.py warns at every login
    client = discord.Client(
        intents=intents,
        allowed_mentions=discord.AllowedMentions.none(),
        max_ratelimit_timeout=max_ratelimit_timeout,
    )
    try:
        await client.login(token)
    except discord.LoginFailure as exc:
        await client.close()
        raise SourceUnavailable("discord rejected the bot token") from exc
    except (discord.DiscordException, aiohttp.ClientError, OSError) as exc:
        await client.close()
        raise SourceUnavailable(f"discord login failed: {exc!r}") from exc
    except BaseException:  # a cancel or a timeout around it: let the session go all the same
        await client.close()
        raise
    return client


# ---------------------------------------------------------------------- slash commands


def slash_command(spec: SlashSpec, respond: Respond) -> app_commands.Command[Any, ..., None]:
    """An app command built from ``spec``; invoking it calls ``respond``.

    discord.py reads a command's options from its callback's signature, so the callback gets
    one made from ``spec.params``: a ``str`` option each (``str | None = None`` when optional),
    in the declared order, with fixed choices where the spec lists them.
    """

    async def callback(interaction: discord.Interaction, **options: str | None) -> None:
        await respond(interaction)  # the options are read back from interaction.namespace

    parameters = [inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD)] + [
        inspect.Parameter(
            p.name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=str if p.required else str | None,
            default=inspect.Parameter.empty if p.required else None,
        )
        for p in spec.params
    ]
    callback.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    callback.__name__ = callback.__qualname__ = f"slash_{spec.name}"
    if spec.params:
        app_commands.describe(**{p.name: p.description for p in spec.params})(callback)
    choices = {
        p.name: [app_commands.Choice(name=c, value=c) for c in p.choices]
        for p in spec.params
        if p.choices
    }
    if choices:
        app_commands.choices(**choices)(callback)
    return app_commands.Command(name=spec.name, description=spec.description, callback=callback)


# ---------------------------------------------------------------------- sending


class DiscordSink:
    """Sends Replies as plain content that can never mention anyone.

    ``reply.target`` is a channel or thread id (``"1234"``) or ``"user:<id>"`` for a direct
    message. Text over 2000 characters is split on line boundaries; an image goes out as an
    attachment on the first message.

    Example::

        sink = DiscordSink(connector.client)
        await sink.send(Reply("BTC mood 62", target="1234", image=png))
    """

    def __init__(self, client: discord.Client) -> None:
        """Create the sink over a logged-in ``discord.Client``."""
        self.client = client

    async def send(self, reply: Reply) -> None:
        """Deliver one reply.

        A reply that needs several messages is sent in order; if one fails, the earlier ones
        were delivered (the caller's retry repeats them).

        Raises:
            DeliveryError: the send failed; ``retry_after`` is set when rate limited.
            RecipientGone: no access (kicked, DMs closed, missing permission) or the channel
                or user no longer exists.
        """
        if not reply.target:
            raise DeliveryError("discord reply has no target")
        none = discord.AllowedMentions.none()
        try:
            channel = await self._channel(reply.target)
            chunks = split_text(reply.text)
            if reply.image is not None:
                first = chunks.pop(0) if chunks else None
                await channel.send(content=first, file=_file(reply), allowed_mentions=none)
            for chunk in chunks:
                await channel.send(content=chunk, allowed_mentions=none)
        except discord.RateLimited as exc:  # a wait longer than max_ratelimit_timeout
            raise DeliveryError(
                f"discord send to {reply.target} rate limited", retry_after=exc.retry_after
            ) from exc
        except discord.HTTPException as exc:
            raise delivery_error(exc, reply.target) from exc
        except (OSError, TimeoutError) as exc:  # network (aiohttp errors are OSErrors)
            raise DeliveryError(f"discord send to {reply.target} failed: {exc!r}") from exc

    async def _channel(self, target: str) -> discord.abc.Messageable:
        kind, sep, raw = target.partition(":")
        if sep and kind == "user":
            user_id = _snowflake(raw, target)
            user = self.client.get_user(user_id) or await self.client.fetch_user(user_id)
            return user.dm_channel or await user.create_dm()
        channel_id = _snowflake(target, target)
        channel = self.client.get_channel(channel_id)
        if isinstance(channel, discord.abc.Messageable):
            return channel
        return self.client.get_partial_messageable(channel_id)  # no fetch: send and see


def _snowflake(text: str, target: str) -> int:
    if not text.isdigit():
        raise RecipientGone(f"discord target {target!r} is not a channel or user:<id>")
    return int(text)


def delivery_error(exc: discord.HTTPException, target: str) -> DeliveryError:
    """Map a discord.py HTTP error to ours: 403/404 → RecipientGone; 429 → retry_after."""
    detail = f"discord send to {target} failed: {exc.status} {exc.code} {exc.text[:200]}"
    if isinstance(exc, discord.Forbidden | discord.NotFound):
        return RecipientGone(detail)
    if exc.status == 429:
        return DeliveryError(detail, retry_after=_retry_after(exc))
    return DeliveryError(detail)


def _retry_after(exc: discord.HTTPException) -> float | None:
    value = getattr(exc, "retry_after", None)
    if value is None:
        headers = getattr(exc.response, "headers", None) or {}
        value = headers.get("Retry-After")
    return retry_after_s(value)
