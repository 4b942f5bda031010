"""Chat front ends in the pipeline: a platform's stored inbox read as a message source that
also answers commands, with per-user and per-chat rate limits."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from asyncio import FIRST_COMPLETED
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Sequence, Sized
from datetime import UTC, datetime
from typing import TYPE_CHECKING, BinaryIO, Literal, Protocol

from cachetools import LRUCache, TTLCache

from bot.chat.commands import COMMANDS, CommandContext, handle, is_read
from bot.chat.context import HeldPoints
from bot.chat.links import DashboardLinks
from bot.store import Store
from connectors.base import Sink
from connectors.errors import (
    DeliveryError,
    MalformedInput,
    RecipientGone,
    Rejected,
    SourceUnavailable,
)
from connectors.retry import wait_or_stop
from connectors.types import Command, Message, Reply

if TYPE_CHECKING:  # discord.py is imported only when the Discord front is built
    from connectors.discord import DiscordConnector

log = logging.getLogger(__name__)

TITLE_LIMIT = 128  # Telegram's longest group title; Discord's server names are shorter


class RateLimiter:
    """Sliding-window limits per user and per chat (``now`` passed in, so it is testable).

    Each key's hits live in a ``cachetools.TTLCache`` entry that expires one window after the
    key's newest hit, when none of its hits count any more: idle users and chats are forgotten
    without a scan, so memory follows the recently active keys and a command costs O(1).

    Args:
        per_user: commands one user may send per window, over all chats.
        per_chat: commands one chat may receive per window.
        window_s: the sliding window, in seconds.
        max_keys: users and chats remembered at most; beyond it (that many distinct keys
            within one window) the least recently active are forgotten early, so memory
            stays bounded even under a flood of throwaway accounts.
    """

    def __init__(
        self,
        per_user: int = 5,
        per_chat: int = 20,
        window_s: float = 60.0,
        max_keys: int = 100_000,
    ) -> None:
        self.per_user, self.per_chat, self.window_s = per_user, per_chat, window_s
        # The cache's clock is the ``now`` of the latest call (never moving backwards, which
        # the cache's expiry order relies on), so expiry follows the caller's time.
        self._now = float("-inf")
        self._hits: TTLCache[tuple[str, str], deque[float]] = TTLCache(
            maxsize=max_keys, ttl=window_s, timer=lambda: self._now
        )

    def allow(self, cmd: Command, now: float) -> bool:
        """Whether ``cmd`` is within its user's and its chat's limits (and if so, count it)."""
        self._now = max(self._now, now)
        keys = [
            (("user", f"{cmd.platform}:{cmd.user}"), self.per_user),
            (("chat", f"{cmd.platform}:{cmd.channel}"), self.per_chat),
        ]
        live: list[tuple[tuple[str, str], deque[float]]] = []
        for key, limit in keys:
            hits = self._hits.get(key) or deque()
            while hits and hits[0] <= now - self.window_s:
                hits.popleft()
            if len(hits) >= limit:
                return False
            live.append((key, hits))
        for key, hits in live:
            hits.append(now)
            self._hits[key] = hits  # (re)set: the key now expires one window after this hit
        return True

    def keys_held(self, now: float) -> int:
        """How many users and chats the limiter still remembers at ``now``."""
        self._now = max(self._now, now)
        self._hits.expire()
        return len(self._hits)

    def __len__(self) -> int:
        """Users and chats held in memory now (expired ones count until the next call
        drops them): never more than ``max_keys``."""
        return len(self._hits)


async def answer_command(
    cmd: Command,
    store: Store,
    limiter: RateLimiter,
    communities: frozenset[str] | None = None,
    held: HeldPoints | None = None,
    links: DashboardLinks | None = None,
) -> Reply | None:
    """The reply to a command, or None when the user is over their rate limit."""
    now = datetime.now(UTC)
    if not within_limit(limiter, cmd, now):
        return None
    return await run_command(cmd, store, now, communities, held, links)


def within_limit(limiter: RateLimiter, cmd: Command, now: datetime) -> bool:
    """Whether ``cmd`` passes the rate limit (counted if so; logged if not)."""
    if limiter.allow(cmd, now.timestamp()):
        return True
    log.info("rate limit: %s in %s", cmd.user, cmd.channel)
    return False


#: The role a front end gives the ``operators`` setting's users in a direct message, and the
#: console always: the operator's full /status. Never in a group, where every member would
#: read the answer.
OPERATOR = "operator"


def with_operator(cmd: Command, operators: Collection[str]) -> Command:
    """``cmd`` with the operator role when it came by direct message from one of ``operators``
    ("platform:user_id"), without it otherwise (whatever the platform claimed)."""
    roles = cmd.roles - {OPERATOR}
    if cmd.is_private and f"{cmd.platform}:{cmd.user}" in operators:
        roles |= {OPERATOR}
    return cmd if roles == cmd.roles else dataclasses.replace(cmd, roles=roles)


def clean_title(title: str) -> str:
    """A community title fit to name it in a reply: one line, at most ``TITLE_LIMIT`` long.

    Titles are chosen by whoever runs the group; a newline in one would let it pose as a
    further line of the bot's own reply.
    """
    return " ".join(title.split())[:TITLE_LIMIT].rstrip()


class CommunityTitles:
    """Keeps each community's latest title in the store, writing only when it changed (the
    titles last written are remembered, a bounded number of communities at most)."""

    def __init__(self, store: Store, max_communities: int = 10_000) -> None:
        self.store = store
        self._written: LRUCache[tuple[str, str], str] = LRUCache(maxsize=max_communities)

    def note(self, event: Message | Command) -> None:
        """Remember the title ``event`` carries for its community (if it carries one)."""
        title = clean_title(event.community_title)
        key = (event.platform, event.community)
        if not title or self._written.get(key) == title:
            return
        self.store.set_community_title(event.platform, event.community, title, datetime.now(UTC))
        self._written[key] = title

    def __len__(self) -> int:
        """Communities whose last written title is remembered (at most ``max_communities``)."""
        return len(self._written)


async def run_command(
    cmd: Command,
    store: Store,
    now: datetime,
    communities: frozenset[str] | None = None,
    held: HeldPoints | None = None,
    links: DashboardLinks | None = None,
) -> Reply:
    """The reply to a command that passed the rate limit (a failure becomes an apology).

    ``communities`` is the operator's allow-list (None: not checked, as on the console);
    ``held`` the live bot's recent messages, which readings read instead of the store;
    ``links`` signs ``/dashboard``'s links."""
    ctx = CommandContext(store=store, now=now, communities=communities, held=held, links=links)
    try:
        return await asyncio.to_thread(handle, cmd, ctx)
    except Exception:  # a bug must not take the chat down; the user still gets an answer
        log.exception("command /%s failed", cmd.name)
        return Reply(text="Sorry, that failed on our side. Try again in a minute.")


class QueueSource:
    """A push-style platform (Discord's gateway calls us) as a pipeline Source.

    Messages wait in a bounded in-memory queue until intake stores them. A crash can lose what
    waits there, which is why the Discord connector backfills from the newest stored id on
    every new session.
    """

    def __init__(
        self,
        name: str,
        stopping: asyncio.Event,
        maxsize: int = 10_000,
        limiter: RateLimiter | None = None,
        titles: CommunityTitles | None = None,
    ) -> None:
        self.name = name
        self.stopping = stopping
        self._queue: asyncio.Queue[Message] = asyncio.Queue(maxsize)
        # The front end's own state, held here only so ``state_sizes`` can report it.
        self.limiter, self.titles = limiter, titles

    async def put(self, message: Message) -> None:
        await self._queue.put(message)  # waits when intake is behind: backpressure

    def qsize(self) -> int:
        """Messages waiting for intake (at most ``maxsize``)."""
        return self._queue.qsize()

    def state_sizes(self) -> dict[str, int]:
        """Sizes of the front end's in-memory state, for the periodic "state sizes" log."""
        sizes = {"queue": self.qsize()}
        if self.limiter is not None:
            sizes["limiter"] = len(self.limiter)
        if self.titles is not None:
            sizes["titles"] = len(self.titles)
        return sizes

    async def messages(self) -> AsyncIterator[Message]:
        while not self.stopping.is_set():
            try:
                yield await asyncio.wait_for(self._queue.get(), timeout=0.5)
            except TimeoutError:
                continue


class EventFeed(Protocol):
    """What a chat connector offers: stored, translated updates (``TelegramPoller`` fits)."""

    async def events(
        self, limit: int = 100, after: int | None = None
    ) -> list[tuple[int, Message | Command | None]]: ...


class ChatSource:
    """Reads a chat platform's durable inbox.

    Messages are yielded to the pipeline and acknowledged (the inbox row marked done) only
    once the pipeline has stored them; commands are answered here and then marked done, so a
    crash re-answers at most the command it interrupted. A reply that fails transiently (flood
    control, a network error, a 5xx) is sent again up to ``reply_attempts`` times in all,
    after ``reply_backoff_s`` doubling or the platform's ``retry_after``; a wait longer than
    ``reply_wait_cap_s`` gives up instead, so one reply never stalls the inbox for long.
    Groups' titles and who has a private chat with the bot are kept in the store.
    """

    def __init__(
        self,
        platform: str,
        feed: EventFeed,
        sink: Sink,
        store: Store,
        roles_for: Callable[[Command], Awaitable[frozenset[str]]],
        stopping: asyncio.Event,
        limiter: RateLimiter | None = None,
        idle_s: float = 0.5,
        reply_attempts: int = 3,
        reply_backoff_s: float = 1.0,
        reply_wait_cap_s: float = 10.0,
        operators: Collection[str] = (),
        communities: frozenset[str] | None = None,
        held: HeldPoints | None = None,
        links: DashboardLinks | None = None,
    ) -> None:
        self.name = platform
        self.communities = communities  # the operator's allow-list (None: not checked)
        self.held = held  # the index engine's messages, for readings (None: the store's)
        self.links = links  # signs /dashboard's links (None: not set up)
        self.platform = platform
        self.feed = feed
        self.sink = sink
        self.store = store
        self.roles_for = roles_for
        self.stopping = stopping
        # Not ``limiter or ...``: a limiter with no keys yet has len() 0, so it is falsy.
        self.limiter = limiter if limiter is not None else RateLimiter()
        self.idle_s = idle_s
        self.reply_attempts = max(reply_attempts, 1)
        self.reply_backoff_s = reply_backoff_s
        self.reply_wait_cap_s = reply_wait_cap_s
        self.operators = frozenset(operators)  # "platform:user_id", see ``with_operator``
        self.titles = CommunityTitles(store)
        # Message key → inbox rows not yet stored by the pipeline (a post and its edits).
        self._in_flight: dict[tuple[str, str, str], list[int]] = {}
        # The newest inbox row handed out: the next read starts after it, so rows in flight
        # (yielded, not yet stored) are not read again on every loop.
        self._read_up_to: int | None = None

    async def messages(self) -> AsyncIterator[Message]:
        while not self.stopping.is_set():
            fresh = await self.feed.events(after=self._read_up_to)
            if not fresh:
                await wait_or_stop(self.stopping, self.idle_s)
                continue
            for update_id, event in fresh:
                self._read_up_to = max(update_id, self._read_up_to or update_id)
                if isinstance(event, Message):
                    self.titles.note(event)
                    key = (event.platform, event.channel, event.message_id)
                    self._in_flight.setdefault(key, []).append(update_id)
                    yield event
                elif isinstance(event, Command):
                    self.titles.note(event)
                    if not await self.answer(event):
                        return  # stopped before the reply went out: answered again next run
                    self._done(update_id)
                else:
                    self._done(update_id)

    def state_sizes(self) -> dict[str, int]:
        """Sizes of the in-memory state, for the periodic "state sizes" log: the rate
        limiter's keys, the titles remembered, posts handed on and not yet stored, and the
        cached admin lists when the role lookup keeps any (``TelegramRoles``)."""
        sizes = {
            "limiter": len(self.limiter),
            "titles": len(self.titles),
            "in_flight": len(self._in_flight),
        }
        if isinstance(self.roles_for, Sized):
            sizes["roles"] = len(self.roles_for)
        return sizes

    def reset(self) -> None:
        """Before a restart: inbox rows handed to a failed intake are read again (they were
        never marked done, so nothing is lost; the store's keys keep them from doubling)."""
        self._in_flight.clear()
        self._read_up_to = None

    def ack(self, messages: Sequence[Message]) -> None:
        """The pipeline stored these: forget their inbox rows."""
        for m in messages:
            for update_id in self._in_flight.pop((m.platform, m.channel, m.message_id), []):
                self._done(update_id)

    def _done(self, update_id: int, error: str | None = None) -> None:
        self.store.mark_update_done(self.platform, update_id, datetime.now(UTC), error)

    async def answer(self, cmd: Command) -> bool:
        """Answer one command in the chat it came from (errors logged, never raised).

        Returns:
            Whether the command is finished with (answered, refused, or its reply given up);
            False only when the bot stopped while a reply waited to be sent again.
        """
        now = datetime.now(UTC)
        # The rate limit comes before the roles: a role lookup is a platform API call on this
        # serial loop, and a flood of moderator commands must not turn into a flood of them.
        if not within_limit(self.limiter, cmd, now):
            return True
        if cmd.is_private:
            # Only someone who opened a private chat can be sent DMs (Telegram's Start).
            self.store.note_private_chat(cmd.platform, cmd.user, now)
        spec = COMMANDS.get(cmd.name)
        # Moderators' commands, and those whose answer depends on the asker's roles, need the
        # real roles in a group (a lookup, so only for these; the platform may cache them). A
        # group off the allow-list gets one line whatever its roles: anyone can add the bot
        # to groups, and theirs must not cost a lookup on this serial loop.
        if (
            spec is not None
            and spec.needs_roles
            and not cmd.is_private
            and is_read(cmd, self.communities)
        ):
            cmd = dataclasses.replace(cmd, roles=await self.roles_for(cmd))
        cmd = with_operator(cmd, self.operators)
        reply = await run_command(cmd, self.store, now, self.communities, self.held, self.links)
        # A reply with its own target (/dashboard's link, by DM) goes there, not to the chat.
        target = reply.target or cmd.channel
        return await self._send_reply(cmd, dataclasses.replace(reply, target=target))

    async def _send_reply(self, cmd: Command, reply: Reply) -> bool:
        """Send a command's reply, again after a transient failure (bounded); False when the
        bot stopped while waiting to try again."""
        for attempt in range(1, self.reply_attempts + 1):
            try:
                await self.sink.send(reply)
                return True
            except (RecipientGone, Rejected) as exc:
                # Blocked, kicked, or this message refused: sending again cannot help.
                log.warning("reply to /%s in %s not delivered: %s", cmd.name, cmd.channel, exc)
                return True
            except DeliveryError as exc:
                backoff = self.reply_backoff_s * 2 ** (attempt - 1)
                wait = max(exc.retry_after or 0.0, min(backoff, self.reply_wait_cap_s))
                if attempt == self.reply_attempts or wait > self.reply_wait_cap_s:
                    log.warning(
                        "reply to /%s in %s not delivered after %d attempts: %s",
                        cmd.name,
                        cmd.channel,
                        attempt,
                        exc,
                    )
                    return True
                log.info(
                    "reply to /%s in %s failed (%s); again in %.1f s",
                    cmd.name,
                    cmd.channel,
                    exc,
                    wait,
                )
                if await wait_or_stop(self.stopping, wait):
                    return False
        return True


class UntilStopped:
    """A source that yields nothing and ends only when the bot stops: it keeps `moodring run`
    up for connectors that feed the store beside the pipeline (prices, quotes) once every
    message source has ended (the console at end of input, a finished replay)."""

    def __init__(self, stopping: asyncio.Event) -> None:
        self.name = "keepalive"
        self.internal = True  # not a connector: not supervised, not shown in status
        self.stopping = stopping

    async def messages(self) -> AsyncIterator[Message]:
        await self.stopping.wait()
        return
        yield  # unreachable: makes this an async generator that yields nothing


class ConsoleSource:
    """Commands typed at the terminal (or piped in), answered on the console sink.

    It yields no messages; as a pipeline Source it keeps ``moodring run`` serving commands
    when no platform is configured, and ends at the end of input.
    """

    def __init__(
        self,
        stream: BinaryIO,
        sink: Sink,
        store: Store,
        stopping: asyncio.Event,
        held: HeldPoints | None = None,
        links: DashboardLinks | None = None,
    ) -> None:
        self.name = "console"
        self.links = links
        self.stream = stream
        self.sink = sink
        self.store = store
        self.stopping = stopping
        self.held = held
        # The operator is not rate-limited by the per-user chat limits.
        self.limiter = RateLimiter(per_user=1_000, per_chat=1_000)

    def state_sizes(self) -> dict[str, int]:
        """Sizes of the in-memory state, for the periodic "state sizes" log."""
        return {"limiter": len(self.limiter)}

    async def messages(self) -> AsyncIterator[Message]:
        await self.serve()
        return
        yield  # unreachable: makes this an async generator that yields nothing

    async def serve(self) -> None:
        """Answer commands line by line until the input ends or the bot stops."""
        from connectors.console import parse_console_command, read_lines

        lines = read_lines(self.stream)  # an async generator: its own iterator
        stop = asyncio.ensure_future(self.stopping.wait())
        line_task: asyncio.Future[str] | None = None
        try:
            while not self.stopping.is_set():
                line_task = asyncio.ensure_future(lines.__anext__())
                done, _ = await asyncio.wait({line_task, stop}, return_when=FIRST_COMPLETED)
                if line_task not in done:
                    return
                try:
                    line = line_task.result()
                except StopAsyncIteration:
                    return
                except SourceUnavailable as exc:
                    log.warning("console commands off: %s", exc)
                    return
                try:
                    cmd = parse_console_command(line)
                except MalformedInput as exc:
                    await self._say(Reply(text=str(exc)))
                    continue
                if cmd is not None:
                    # Whoever holds the terminal runs the bot: the operator.
                    cmd = dataclasses.replace(cmd, roles=cmd.roles | {OPERATOR})
                    reply = await answer_command(
                        cmd, self.store, self.limiter, held=self.held, links=self.links
                    )
                    if reply is not None:
                        await self._say(reply)
        finally:
            stop.cancel()
            if line_task is not None and not line_task.done():
                # The generator is suspended inside the pending read: cancel that read first,
                # or closing the generator fails ("asynchronous generator is already running").
                line_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await line_task
            await lines.aclose()

    async def _say(self, reply: Reply) -> None:
        try:
            await self.sink.send(reply)
        except DeliveryError as exc:
            log.warning("console reply not written: %s", exc)


async def console_roles(cmd: Command) -> frozenset[str]:
    """The console's roles, for the digests' re-check: whoever holds the terminal runs the
    bot (``ConsoleSource`` answers its commands as the operator, a moderator too)."""
    return frozenset({"admin", OPERATOR})


def discord_front(
    store: Store,
    stopping: asyncio.Event,
    channel_ids: Sequence[int] = (),
    admin_roles: Sequence[str] = (),
    limiter: RateLimiter | None = None,
    operators: Collection[str] = (),
    communities: frozenset[str] | None = None,
    held: HeldPoints | None = None,
    shards: int | Literal["auto"] | None = None,
    links: DashboardLinks | None = None,
) -> tuple[DiscordConnector, QueueSource]:
    """Discord's connector wired to the bot: messages into a queue source, slash commands
    answered from the store, deletions removed, backfill from the newest stored id."""
    from connectors.discord import DiscordConnector

    limiter = limiter if limiter is not None else RateLimiter()  # an empty one is falsy
    titles = CommunityTitles(store)
    source = QueueSource("discord", stopping, limiter=limiter, titles=titles)

    async def answer(cmd: Command) -> Reply:
        titles.note(cmd)
        reply = await answer_command(
            with_operator(cmd, operators), store, limiter, communities, held, links
        )
        return reply or Reply(text="Slow down a little: try again in a minute.")

    async def on_message(message: Message) -> None:
        titles.note(message)
        await source.put(message)

    async def on_delete(platform: str, channel: str, message_id: str) -> None:
        await asyncio.to_thread(store.delete_message, platform, channel, message_id)

    connector = DiscordConnector(
        answer=answer,
        on_message=on_message,
        on_delete=on_delete,
        last_seen=lambda channel: store.last_message_id("discord", channel),
        commands=COMMANDS.slash_specs(),
        channel_ids=channel_ids,
        admin_roles=admin_roles,
        shards=shards,
    )
    return connector, source
