"""The Telegram connector: a crash-safe long-polling inbox, update translation, and a Sink."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import time
import warnings
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

import telegram
from cachetools import TTLCache
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning, PTBUserWarning

from connectors.bounds import time_problem
from connectors.errors import DeliveryError, RecipientGone, Rejected, SourceUnavailable
from connectors.retry import backoff_delay, wait_or_stop
from connectors.text import split_once, storable, utf16_units
from connectors.text import split_text as chunks_of
from connectors.types import Command, Message, Reply

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.telegram.org/bot"
DEFAULT_ALLOWED_UPDATES = ("message", "edited_message", "channel_post", "edited_channel_post")
TEXT_LIMIT = 4096  # sendMessage text
CAPTION_LIMIT = 1024  # sendPhoto caption

# Which update fields carry a post, and whether they are edits.
_POST_KINDS = {
    "message": False,
    "edited_message": True,
    "channel_post": False,
    "edited_channel_post": True,
}
_COMMUNITY_CHATS = frozenset({"group", "supergroup", "channel"})
_COMMAND_NAME = re.compile(r"[A-Za-z0-9_]{1,32}")
# Bot tokens look like ``123456789:AAH…``; masked in anything this module logs or raises.
_TOKEN = re.compile(r"\d{6,}:[\w-]{30,}")


class _Malformed(Exception):
    """An update that lacks a field the translation needs (internal)."""


# ---------------------------------------------------------------------- translation


def update_to_event(update: dict, bot_username: str) -> Message | Command | None:
    """Translate one raw Bot API update (a JSON object) into a Message, a Command, or nothing.

    Group, supergroup and channel posts with text or a caption become Messages; an edit
    becomes a Message with the same key and the original ``created_at`` (the caller upserts).
    A text starting with ``/`` becomes a Command (never a Message), unless it names another
    bot (``/mood@otherbot``), is an edit, or is a channel post. Private chats give Commands
    only. Everything else (joins, stickers, service messages, malformed dicts) gives None;
    this function never raises.

    Args:
        update: one element of ``getUpdates``' result, as decoded JSON.
        bot_username: our bot's username (with or without ``@``), to recognise
            ``/cmd@ourbot``.

    Returns:
        The event, or None when the update is not something moodring uses.
    """
    try:
        return _translate(update, bot_username)
    except (_Malformed, KeyError, TypeError, ValueError, OverflowError) as exc:
        update_id = update.get("update_id") if isinstance(update, dict) else None
        # Never the text: it is user content and may be long or sensitive.
        logger.warning("skipping malformed telegram update %r: %s", update_id, _reason(exc))
        return None


def _reason(exc: Exception) -> str:
    if isinstance(exc, _Malformed):
        return str(exc)
    return type(exc).__name__


def _translate(update: dict, bot_username: str) -> Message | Command | None:
    if not isinstance(update, dict):
        raise _Malformed("update is not an object")
    kind = next((k for k in _POST_KINDS if k in update), None)
    if kind is None:
        return None  # another update type (my_chat_member, reactions, ...): not ours to use
    post = update[kind]
    if not isinstance(post, dict):
        raise _Malformed(f"{kind} is not an object")
    chat = post.get("chat")
    if not isinstance(chat, dict):
        raise _Malformed("no chat")
    chat_id = _int(chat.get("id"), "chat.id")
    chat_type = chat.get("type")
    body = post.get("text")
    if body is None:
        body = post.get("caption")
    if body is None:
        return None  # stickers, photos without caption, joins, pins, ...
    if not isinstance(body, str):
        raise _Malformed("text is not a string")
    if not body.strip():
        return None  # blank: nothing to score, no command
    body = storable(body)

    channel = str(chat_id)
    if post.get("is_topic_message") and post.get("message_thread_id") is not None:
        # Only forum topics: in plain supergroups message_thread_id marks a reply thread.
        channel = f"{chat_id}:{_int(post['message_thread_id'], 'message_thread_id')}"

    if body.startswith("/"):
        if _POST_KINDS[kind] or kind == "channel_post":
            return None  # an edited command must not run twice; channels have no user
        return _command(post, chat, channel, body, bot_username)

    if chat_type not in _COMMUNITY_CHATS:
        return None  # private chatter is not community mood
    if post.get("is_automatic_forward"):
        return None  # a linked channel's post copied into its group: counted once, as the post
    sender = post.get("from")
    if isinstance(sender, dict) and sender.get("is_bot") and "sender_chat" not in post:
        return None  # other bots' posts (price feeds, our own alerts) are not community mood
    # For an edit, ``date`` is still the original send time (``edit_date`` is the edit's).
    try:
        created_at = datetime.fromtimestamp(_int(post.get("date"), "date"), UTC)
    except (OverflowError, OSError, ValueError):  # OSError: past the platform's time_t
        raise _Malformed("date out of range") from None
    if problem := time_problem(created_at):
        raise _Malformed(problem)
    return Message(
        platform="telegram",
        community=str(chat_id),
        channel=channel,
        message_id=str(_int(post.get("message_id"), "message_id")),
        author=_sender(post),
        text=body,
        created_at=created_at,
        public=bool(chat.get("username")),
        language=None,
        community_title=_chat_title(chat),
    )


def _command(post: dict, chat: dict, channel: str, body: str, bot_username: str) -> Command | None:
    head, *args = body.split()
    name, _, addressee = head[1:].partition("@")
    if addressee and addressee.lower() != bot_username.lstrip("@").lower():
        return None  # addressed to another bot in the same group
    if not _COMMAND_NAME.fullmatch(name):
        return None  # "/", "/r/bitcoin ...": not a command, and never scored either
    return Command(
        platform="telegram",
        community=str(chat["id"]),
        channel=channel,
        user=_sender(post),
        name=name.lower(),
        args=tuple(args),
        roles=frozenset(),
        is_private=chat.get("type") == "private",
        community_title=_chat_title(chat),
        reply_to_author=_replied_to(post),
    )


def _replied_to(post: dict) -> str | None:
    """Who wrote the message ``post`` replies to (``/forget`` as a reply names its target).

    In a forum topic every message "replies" to the topic's first service message; that is
    no reply a user chose, so it names nobody.
    """
    replied = post.get("reply_to_message")
    if not isinstance(replied, dict) or "forum_topic_created" in replied:
        return None
    if post.get("is_topic_message") and replied.get("message_id") == post.get("message_thread_id"):
        return None
    try:
        return _sender(replied)
    except _Malformed:
        return None


def _chat_title(chat: dict) -> str:
    """A group's or channel's title ("" for a private chat, which has none, or a bad one)."""
    title = chat.get("title")
    if chat.get("type") not in _COMMUNITY_CHATS or not isinstance(title, str):
        return ""
    return storable(title)


def _sender(post: dict) -> str:
    """The author: the chat a post was sent as (channel, anonymous admin), else the user."""
    sender_chat = post.get("sender_chat")
    if isinstance(sender_chat, dict):
        return str(_int(sender_chat.get("id"), "sender_chat.id"))
    user = post.get("from")
    if not isinstance(user, dict):
        raise _Malformed("no sender")
    return str(_int(user.get("id"), "from.id"))


def _int(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Malformed(f"{field} is not an integer")
    return value


# ---------------------------------------------------------------------- polling

#: Update ids the inbox can hold (SQLite's INTEGER); Telegram's are far smaller.
_MAX_UPDATE_ID = 2**63 - 2  # the next offset, one more, must fit too


def inbox_rows(updates: Any) -> list[tuple[int, str]]:
    """The ``(update_id, payload)`` rows to store from a raw ``getUpdates`` result.

    Elements that are not objects with an update id the inbox can hold are left out. The
    payload is the update as JSON; one holding half a UTF-16 pair (which SQLite refuses as
    text) is kept with JSON's ``\\u`` escapes, as Telegram sent it.
    """
    if not isinstance(updates, list):
        return []
    rows: list[tuple[int, str]] = []
    for update in updates:
        if not isinstance(update, dict):
            continue
        update_id = update.get("update_id")
        if type(update_id) is not int or not 0 <= update_id <= _MAX_UPDATE_ID:
            continue
        payload = json.dumps(update, ensure_ascii=False)
        if storable(payload) != payload:
            payload = json.dumps(update)
        rows.append((update_id, payload))
    return rows


@runtime_checkable
class UpdateInbox(Protocol):
    """Where raw updates are kept until handled (``bot.store.Store`` satisfies it)."""

    def save_updates(
        self, platform: str, updates: Sequence[tuple[int, str]], next_offset: int, now: datetime
    ) -> int:
        """Store raw updates and the next offset in one transaction; return how many were new."""
        ...

    def next_offset(self, platform: str) -> int | None:
        """The offset to ask for next, or None before the first batch."""
        ...

    def pending_updates(
        self, platform: str, limit: int = 100, after: int | None = None
    ) -> list[tuple[int, str]]:
        """Stored ``(update_id, payload)`` pairs not yet handled, oldest first (only those
        after update ``after``, when given)."""
        ...

    def mark_update_done(
        self, platform: str, update_id: int, now: datetime, error: str | None = None
    ) -> None:
        """Record that an update was handled (or failed with ``error``)."""
        ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TelegramPoller:
    """Long-polls ``getUpdates`` into an inbox so that no update is lost or handled twice.

    Each batch is stored, with the next offset, before Telegram is asked for more; only that
    next request (with the higher offset) confirms the batch to Telegram. A crash at any point
    therefore either re-receives the batch (stored idempotently by ``update_id``) or finds it
    already stored.

    Example::

        bot = build_bot(token, base_url)
        async with bot:
            poller = TelegramPoller(bot, store)
            task = asyncio.create_task(poller.run(stop))
            for update_id, event in await poller.events():
                ...  # handle, then store.mark_update_done("telegram", update_id, now)
    """

    def __init__(
        self,
        bot: telegram.Bot,
        inbox: UpdateInbox,
        *,
        platform: str = "telegram",
        timeout: int = 25,
        allowed_updates: Sequence[str] = DEFAULT_ALLOWED_UPDATES,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        clock: Callable[[], datetime] = _utc_now,
        rng: random.Random | None = None,
    ) -> None:
        """Create the poller; nothing is sent until ``poll_once`` or ``run``.

        Args:
            bot: an initialised PTB ``Bot`` (``async with bot:``).
            inbox: where updates and the offset are stored.
            platform: the inbox key (one per bot token).
            timeout: the long-poll timeout in seconds (PTB adds it to the read timeout).
            allowed_updates: update types to ask for.
            backoff_base: first wait after a network error, in seconds.
            backoff_cap: the longest wait between retries, in seconds.
            clock: gives the time stored as ``received_at``.
            rng: jitter source (tests pass a seeded one).
        """
        self.bot = bot
        self.inbox = inbox
        self.platform = platform
        self.timeout = timeout
        self.allowed_updates = tuple(allowed_updates)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.clock = clock
        self.rng = rng or random.Random()
        self._username: str | None = None
        # We call getUpdates through do_api_request on purpose (raw JSON, see poll_once);
        # PTB nags about it on every call.
        warnings.filterwarnings(
            "ignore", message=r"Please use 'Bot\.getUpdates'", category=PTBUserWarning
        )

    async def poll_once(self) -> int:
        """Ask Telegram for updates after the stored offset and store them with the next offset.

        Returns:
            How many updates were newly stored.

        Raises:
            telegram.error.TelegramError: the request failed (``run`` handles these).
        """
        offset = self.inbox.next_offset(self.platform)
        kwargs: dict[str, object] = {
            "timeout": self.timeout,
            "allowed_updates": list(self.allowed_updates),
        }
        if offset is not None:
            kwargs["offset"] = offset
        # The raw JSON, not PTB's parsed Updates: one update PTB cannot parse would otherwise
        # fail the whole batch on every retry and stall the chat. Each update is translated
        # (and a bad one set aside) later, from the inbox.
        updates = await self.bot.do_api_request(
            "getUpdates", api_kwargs=kwargs, read_timeout=self.timeout + 10
        )
        if not updates:
            return 0
        rows = inbox_rows(updates)
        if not rows:
            return 0
        next_offset = max(update_id for update_id, _ in rows) + 1
        if offset is not None:
            next_offset = max(next_offset, offset)  # never move the offset backwards
        # One transaction; no await between here and the next get_updates that confirms them.
        added = self.inbox.save_updates(self.platform, rows, next_offset, self.clock())
        logger.debug(
            "telegram: stored %d of %d updates, next offset %d", added, len(rows), next_offset
        )
        return added

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop`` is set, backing off on network errors and honouring flood waits.

        Stopping mid-request cancels it; the batch was not stored, so Telegram sends it again.

        Raises:
            SourceUnavailable: the token is invalid or the request is rejected for good.
        """
        failures = 0
        while not stop.is_set():
            delay = 0.0
            poll = asyncio.ensure_future(self.poll_once())
            stopper = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait({poll, stopper}, return_when=asyncio.FIRST_COMPLETED)
            except asyncio.CancelledError:
                poll.cancel()
                stopper.cancel()
                raise
            stopper.cancel()
            if not poll.done():  # stopped mid-request: nothing of it was stored
                poll.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poll
                break
            try:
                await poll
                failures = 0
            except RetryAfter as exc:
                delay = retry_after_seconds(exc)
                logger.warning("telegram: flood control on getUpdates, waiting %.0f s", delay)
            except (InvalidToken, Forbidden) as exc:
                raise SourceUnavailable(f"telegram rejected the bot token: {_clean(exc)}") from exc
            except BadRequest as exc:  # a NetworkError subclass in PTB: check it first
                raise SourceUnavailable(f"telegram rejected getUpdates: {_clean(exc)}") from exc
            except (NetworkError, Conflict) as exc:
                # Conflict: another poller or a webhook; it may go away, so keep trying slowly.
                failures += 1
                delay = self._backoff(failures)
                logger.warning(
                    "telegram: getUpdates failed (%s: %s), retry %d in %.1f s",
                    type(exc).__name__,
                    _clean(exc),
                    failures,
                    delay,
                )
            except TelegramError as exc:
                raise SourceUnavailable(f"telegram getUpdates failed: {_clean(exc)}") from exc
            if delay > 0:
                await wait_or_stop(stop, delay)

    def _backoff(self, failures: int) -> float:
        return backoff_delay(failures, self.backoff_base, self.backoff_cap, self.rng)

    async def events(
        self, limit: int = 100, after: int | None = None
    ) -> list[tuple[int, Message | Command | None]]:
        """The stored, not yet handled updates after update ``after``, translated, oldest
        first (the caller passes the newest it already holds, so rows in flight are not read
        again on every loop).

        The caller handles each and then calls ``inbox.mark_update_done(platform, update_id,
        now)``; an update that translates to None is to be marked done too.
        """
        username = await self._bot_username()
        out: list[tuple[int, Message | Command | None]] = []
        for update_id, payload in self.inbox.pending_updates(self.platform, limit, after):
            try:
                update = json.loads(payload)
            except ValueError:
                logger.warning("telegram: stored update %d is not JSON; skipping", update_id)
                out.append((update_id, None))
                continue
            out.append((update_id, update_to_event(update, username)))
        return out

    async def _bot_username(self) -> str:
        if self._username is None:
            me = await self.bot.get_me()
            self._username = me.username or ""
        return self._username


# ---------------------------------------------------------------------- sending


class TelegramSink:
    """Sends Replies as plain text (no parse mode, so user text cannot inject formatting).

    ``reply.target`` is a chat id (``"-100123"``, ``"@channel"``) or ``"chat:topic"`` for a
    forum topic. Text over 4096 characters is split on line boundaries; an image goes out as a
    photo with the text (up to 1024 characters) as its caption and any rest as messages.

    Example::

        sink = TelegramSink(bot)
        await sink.send(Reply("BTC mood 62", target="-1001234", image=png))
    """

    def __init__(self, bot: telegram.Bot) -> None:
        """Create the sink over an initialised PTB ``Bot``."""
        self.bot = bot

    async def send(self, reply: Reply) -> None:
        """Deliver one reply.

        A reply that needs several messages is sent in order; if one fails, the earlier ones
        were delivered (the caller's retry repeats them).

        Raises:
            DeliveryError: the send failed; ``retry_after`` is set on flood control.
            RecipientGone: the bot was blocked, kicked, or the chat no longer exists.
            Rejected: Telegram refused the message itself (400): resending cannot help.
        """
        if not reply.target:
            raise DeliveryError("telegram reply has no target chat")
        chat_id, thread_id = parse_target(reply.target)
        try:
            rest = reply.text
            if reply.image is not None:
                caption, rest = split_once(reply.text, CAPTION_LIMIT, utf16_units)
                await self.bot.send_photo(
                    chat_id,
                    photo=telegram.InputFile(reply.image, filename=reply.image_name),
                    caption=caption if caption.strip() else None,
                    message_thread_id=thread_id,
                )
            for chunk in split_text(rest, TEXT_LIMIT):
                await self.bot.send_message(chat_id, chunk, message_thread_id=thread_id)
        except TelegramError as exc:
            raise _delivery_error(exc, reply.target) from exc


def parse_target(target: str) -> tuple[int | str, int | None]:
    """Split a Reply target into a chat id and an optional forum topic id.

    ``"-100123"`` → ``(-100123, None)``; ``"-100123:7"`` → ``(-100123, 7)``; ``"@news"`` →
    ``("@news", None)``.
    """
    head, sep, tail = target.rpartition(":")
    if sep and _is_int(head) and _is_int(tail):
        return int(head), int(tail)
    return (int(target) if _is_int(target) else target), None


def _is_int(text: str) -> bool:
    return bool(re.fullmatch(r"-?\d+", text))


def split_text(text: str, limit: int = TEXT_LIMIT) -> list[str]:
    """Split text into chunks Telegram accepts: lengths in UTF-16 code units, as Telegram
    counts them, so emoji never push a chunk over (see ``connectors.text``)."""
    return chunks_of(text, limit, utf16_units)


def _delivery_error(exc: TelegramError, target: str) -> DeliveryError:
    detail = f"telegram send to {target} failed: {_clean(exc)}"
    if isinstance(exc, RetryAfter):
        return DeliveryError(detail, retry_after=retry_after_seconds(exc))
    if isinstance(exc, Forbidden | ChatMigrated):
        # Forbidden: blocked, kicked, or not allowed to post; ChatMigrated: the group became
        # a supergroup with a new id; this id will never work again.
        return RecipientGone(detail)
    if isinstance(exc, BadRequest) and "chat not found" in exc.message.lower():
        return RecipientGone(detail)
    if isinstance(exc, BadRequest):
        return Rejected(detail)  # this message is refused; only 429, 5xx and network are transient
    return DeliveryError(detail)


def retry_after_seconds(exc: RetryAfter) -> float:
    """The wait a flood-control error asks for, in seconds (int or timedelta in PTB 22)."""
    with warnings.catch_warnings():
        # PTB 22 warns on every read unless PTB_TIMEDELTA is set; either type is handled here.
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def _clean(exc: BaseException) -> str:
    """An exception's text with anything token-like masked."""
    return _TOKEN.sub("<token>", str(exc))


# ---------------------------------------------------------------------- roles and setup


async def is_admin(bot: telegram.Bot, chat_id: str, user_id: str) -> bool:
    """Whether ``user_id`` administers ``chat_id``.

    In a private chat (its id is the user's id) the user is its admin; so is a group's
    anonymous admin, who posts as the group itself. Fails closed: if Telegram cannot be
    asked, the answer is False (logged).
    """
    chat, _ = parse_target(chat_id)
    if str(chat) == user_id:
        return True
    if isinstance(chat, int) and chat > 0:
        return False  # someone else's private chat
    admins = await _admin_ids(bot, chat)
    return admins is not None and user_id in admins


async def _admin_ids(bot: telegram.Bot, chat: int | str) -> frozenset[str] | None:
    """The user ids of a group's admins, or None (logged) when Telegram cannot be asked."""
    try:
        admins = await bot.get_chat_administrators(chat)
    except TelegramError as exc:
        logger.warning(
            "telegram: cannot list admins of %s (%s: %s)", chat, type(exc).__name__, _clean(exc)
        )
        return None
    return frozenset(str(member.user.id) for member in admins)


async def roles_for(bot: telegram.Bot, command: Command) -> frozenset[str]:
    """The roles of a command's user in its chat: ``{"admin"}`` or nothing (asks every time;
    ``TelegramRoles`` caches)."""
    if await is_admin(bot, command.community, command.user):
        return frozenset({"admin"})
    return frozenset()


class TelegramRoles:
    """``roles_for`` with each group's admin list cached for ``ttl_s`` seconds.

    A burst of moderator commands in one chat then costs one ``getChatAdministrators`` call,
    not one per command (each would wait on the serial inbox loop and spend API quota). An
    admin who was just demoted keeps the role until the entry expires; a minute is the
    trade-off. A failed lookup is not cached: it fails closed and the next command asks again.

    Args:
        bot: an initialised PTB ``Bot``.
        ttl_s: how long a chat's admin list is trusted, in seconds.
        max_chats: chats whose lists are kept at most (least recently used dropped first).
        timer: the clock entries expire by (tests pass a fake one).

    Example::

        roles = TelegramRoles(bot)
        await roles(command)  # frozenset({"admin"}) or frozenset()
    """

    def __init__(
        self,
        bot: telegram.Bot,
        ttl_s: float = 60.0,
        max_chats: int = 10_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bot = bot
        self._admins: TTLCache[int | str, frozenset[str]] = TTLCache(
            maxsize=max_chats, ttl=ttl_s, timer=timer
        )

    def __len__(self) -> int:
        """Chats whose admin list is held now (at most ``max_chats``)."""
        return len(self._admins)

    async def __call__(self, command: Command) -> frozenset[str]:
        """The roles of a command's user in its chat: ``{"admin"}`` or nothing."""
        if await self.is_admin(command.community, command.user):
            return frozenset({"admin"})
        return frozenset()

    async def is_admin(self, chat_id: str, user_id: str) -> bool:
        """``is_admin``, from the cached admin list of ``chat_id`` (fetched when missing)."""
        # Fails closed, uncached: the next command asks again.
        return await self._admin_or_unknown(chat_id, user_id) is True

    async def check(self, command: Command) -> frozenset[str]:
        """Like calling it, but a lookup that failed raises instead of failing closed: for a
        caller that acts on "not an admin" (the digest job drops a demoted moderator's
        subscription), "could not ask" must not read as "no".

        A chat Telegram refuses to list (the bot was removed, the chat is gone) has no admin
        the bot can confirm: nobody is one there.

        Raises:
            SourceUnavailable: Telegram could not be asked (network, flood control, 5xx).
        """
        chat, _ = parse_target(command.community)
        if isinstance(chat, int) and chat < 0 and self._admins.get(chat) is None:
            try:
                admins = await self.bot.get_chat_administrators(chat)
            except (BadRequest, Forbidden):  # BadRequest is a NetworkError: caught first
                return frozenset()
            except TelegramError as exc:
                raise SourceUnavailable(
                    f"telegram: cannot list the admins of {chat} ({type(exc).__name__})"
                ) from None
            self._admins[chat] = frozenset(str(member.user.id) for member in admins)
        admin = await self._admin_or_unknown(command.community, command.user)
        if admin is None:
            raise SourceUnavailable(f"telegram: cannot list the admins of {command.community}")
        return frozenset({"admin"}) if admin else frozenset()

    async def _admin_or_unknown(self, chat_id: str, user_id: str) -> bool | None:
        """Whether ``user_id`` administers ``chat_id``; None when Telegram cannot be asked."""
        chat, _ = parse_target(chat_id)
        if str(chat) == user_id:
            return True  # one's own private chat, or the group's anonymous admin
        if isinstance(chat, int) and chat > 0:
            return False  # someone else's private chat
        admins = self._admins.get(chat)
        if admins is None:
            admins = await _admin_ids(self.bot, chat)
            if admins is None:
                return None
            self._admins[chat] = admins
        return user_id in admins


def api_base_url(url: str | None) -> str:
    """The Bot API base URL PTB needs, from what the operator wrote.

    PTB appends the token straight to ``base_url``, so it must end in ``/bot``; a bare
    ``http://host:port`` (the usual way to write a self-hosted server's address) would
    otherwise ask ``http://host:port123:AA…/getMe`` and fail with a bare NetworkError. Both
    forms are accepted, with or without a trailing slash; None is Telegram's own server.

    ``"http://127.0.0.1:8081"`` → ``"http://127.0.0.1:8081/bot"``;
    ``"http://127.0.0.1:8081/bot/"`` → ``"http://127.0.0.1:8081/bot"``.
    """
    if not url:
        return DEFAULT_BASE_URL
    url = url.strip().rstrip("/")
    return url if url.endswith("/bot") else f"{url}/bot"


def build_bot(token: str, base_url: str | None = None) -> telegram.Bot:
    """A PTB ``Bot`` with timeouts fit for long polling; initialise it with ``async with``.

    getUpdates gets its own single-connection pool, so a hanging long poll never blocks
    sends; PTB adds the long-poll ``timeout`` to its read timeout.

    Args:
        token: the bot token from BotFather (never logged here; PTB logs its URL at DEBUG
            and httpx at INFO, so keep those loggers quiet or filtered).
        base_url: the Bot API server, ``http://host:port`` or ``http://host:port/bot``
            (see ``api_base_url``); default Telegram's.
    """
    request = HTTPXRequest(
        connection_pool_size=8,
        connect_timeout=10.0,
        read_timeout=20.0,
        write_timeout=20.0,
        pool_timeout=5.0,
        media_write_timeout=60.0,
    )
    updates_request = HTTPXRequest(
        connection_pool_size=1,
        connect_timeout=10.0,
        read_timeout=10.0,  # plus the long-poll timeout, added by get_updates
        write_timeout=10.0,
        pool_timeout=5.0,
    )
    return telegram.Bot(
        token,
        base_url=api_base_url(base_url),
        request=request,
        get_updates_request=updates_request,
    )


async def login(token: str, base_url: str | None = None) -> telegram.Bot:
    """``build_bot``, initialised (``getMe``): fails fast on a bad token or server.

    Raises:
        SourceUnavailable: the login failed. The message names the URL that was asked, with
            the token masked, so a wrong server address is plain to see; the exception's own
            text is left out (the token could be in it).
    """
    bot = build_bot(token, base_url)
    try:
        await bot.initialize()
    except Exception as exc:  # PTB raises its own tree (and httpx errors under it)
        asked = f"{api_base_url(base_url)}<token>/getMe"
        raise SourceUnavailable(f"Telegram login failed: {type(exc).__name__} at {asked}") from None
    return bot
