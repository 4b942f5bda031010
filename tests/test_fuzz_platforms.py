"""Fuzzing what chat platforms send: raw Telegram updates and Discord gateway message payloads."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import discord
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.chat.inbox import CommunityTitles
from bot.store import Store
from connectors.discord import message_to_event
from connectors.telegram import TelegramPoller, build_bot, inbox_rows, update_to_event
from connectors.types import Command, Message
from tests.fake_telegram import TOKEN, FakeTelegram
from tests.fuzz_checks import check_command, check_message, fresh_key, fuzz, store_messages
from tests.fuzz_checks import shared_store as store

BOT = "moodring_bot"
NOW_S = int(datetime.now(UTC).timestamp())

# ---------------------------------------------------------------------- hostile values

HUGE = 10**30
#: Strings platforms should never send but a broken or hostile server can: NUL, lone
#: surrogates (JSON's "\ud800" escapes decode to them), RTL overrides, zero-width characters,
#: blanks, and very long text.
odd_text = st.one_of(
    st.sampled_from(
        ["", " ", "\t\n", "\x00", "a\x00b", "\ud800", "x\udfff", "\u202e\u200b", "\ufeff"]
    ),
    st.text(max_size=20),
    st.builds(lambda c, n: c * n, st.sampled_from("a \u200b🚀"), st.just(100_000)),
)
odd_int = st.one_of(
    st.sampled_from([0, -1, HUGE, -HUGE, 2**63, 2**64, True, False]),
    st.integers(-(2**70), 2**70),
)
json_scalar = st.one_of(
    st.none(), st.booleans(), odd_int, st.floats(allow_nan=False), odd_text
)  # JSON has no NaN: Telegram and Discord send standard JSON
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)


# ---------------------------------------------------------------------- Telegram

post_text = st.text(min_size=1, max_size=30)
command_text = st.builds(
    lambda name, at, args: f"/{name}{at} {args}",
    st.sampled_from(["mood", "price", "subscribe", "forget", "", "r/bitcoin", "a" * 40, "MOOD"]),
    st.sampled_from(["", f"@{BOT}", "@otherbot", "@", f"@{BOT.upper()}"]),
    st.text(max_size=20),
)
tg_date = st.one_of(
    st.integers(1_231_000_000, NOW_S),  # 2009 to now
    st.integers(1_231_000_000, NOW_S),
    st.sampled_from([0, -1, NOW_S + 10**6, 10**12, 10**17, 10**20, -(10**12)]),
)


@st.composite
def mangled(draw: st.DrawFn, plausible: dict[str, st.SearchStrategy[Any]]) -> dict[str, Any]:
    """An object with the real fields, plausible values, and then a few of them dropped or
    replaced by anything JSON can hold, and maybe an unknown field added."""
    obj = draw(st.fixed_dictionaries(plausible))
    broken = draw(st.sampled_from([0, 0, 0, 0, 1, 2]))  # mostly whole, for deep paths
    for key in draw(st.lists(st.sampled_from(sorted(plausible)), max_size=broken, unique=True)):
        if draw(st.booleans()):
            del obj[key]
        else:
            obj[key] = draw(json_value)
    if draw(st.integers(0, 9)) == 0:
        obj[draw(st.text(max_size=6))] = draw(json_value)
    return obj


tg_user = mangled(
    {
        "id": st.integers(1, 2**52),
        "is_bot": st.sampled_from([False, False, True]),
        "username": st.text(max_size=12),
        "first_name": odd_text,
    }
)
tg_chat = mangled(
    {
        "id": st.integers(-(2**52), 2**52),
        "type": st.sampled_from(["supergroup", "group", "private", "channel", "secret"]),
        "title": odd_text,
        "username": st.one_of(st.none(), st.text(max_size=12)),
    }
)


def tg_post(reply: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    required = {
        "message_id": st.integers(1, 2**40),
        "date": tg_date,
        "chat": tg_chat,
        "from": tg_user,
        "text": st.one_of(post_text, post_text, command_text, odd_text),
    }
    extras = {
        "sender_chat": tg_chat,
        "caption": st.one_of(post_text, odd_text),
        "entities": st.lists(st.fixed_dictionaries({"type": st.text(max_size=8)}), max_size=2),
        "reply_to_message": reply,
        "is_topic_message": st.booleans(),
        "message_thread_id": st.integers(1, 2**31),
        "is_automatic_forward": st.booleans(),
        "forum_topic_created": st.just({"name": "t"}),
        "edit_date": tg_date,
    }
    return st.builds(
        lambda post, more: {**post, **more},
        mangled(required),
        st.fixed_dictionaries({}, optional=extras),
    )


tg_reply = tg_post(st.nothing())
KINDS = ["message", "message", "message", "edited_message", "channel_post", "edited_channel_post"]
KINDS += ["my_chat_member"]


@st.composite
def tg_update(draw: st.DrawFn) -> Any:
    """A raw ``getUpdates`` element: the real shape with hostile values, or any JSON at all."""
    if draw(st.integers(0, 19)) == 0:
        return draw(json_value)
    kind = draw(st.sampled_from(KINDS)) if draw(st.integers(0, 9)) else draw(st.text(max_size=6))
    return draw(mangled({"update_id": st.integers(0, 2**31), kind: tg_post(tg_reply)}))


@fuzz(400)
@given(tg_update())
def test_telegram_updates_translate_to_our_types_or_nothing(update: Any) -> None:
    event = update_to_event(update, BOT)
    assert event is None or isinstance(event, Message | Command)
    if isinstance(event, Message):
        check_message(event)
    elif isinstance(event, Command):
        check_command(event)


def check_event(event: Message | Command | None) -> None:
    assert event is None or isinstance(event, Message | Command)
    if isinstance(event, Message):
        check_message(event)
    elif isinstance(event, Command):
        check_command(event)


batch_update = st.one_of(
    tg_update(),
    st.builds(
        lambda update, update_id: (
            {**update, "update_id": update_id} if isinstance(update, dict) else update
        ),
        tg_update(),
        st.one_of(
            st.integers(0, 5),  # ids repeated within a batch
            st.sampled_from([-1, 2**63 - 1, 2**63, 2**64, HUGE, True, "7", 7.0, None]),
        ),
    ),
)


@fuzz(200)
@given(st.lists(batch_update, max_size=5))
def test_telegram_batches_go_through_the_inbox_unchanged(batch: list[Any]) -> None:
    """``getUpdates`` → inbox rows → ``save_updates`` → ``pending_updates`` → translation, and
    on to the store (intake's messages, the titles kept): nothing raises, and an update read
    back from the inbox means what it meant when it came."""
    platform = f"telegram-{fresh_key()}"
    db = store()
    rows = inbox_rows(batch)
    ids = [update_id for update_id, _ in rows]
    if rows:
        db.save_updates(platform, rows, max(ids) + 1, datetime.now(UTC))
        assert db.next_offset(platform) == max(ids) + 1
    pending = db.pending_updates(platform, limit=100)
    assert [update_id for update_id, _ in pending] == sorted(set(ids))
    first: dict[int, Any] = {}
    for update in batch:  # the first of a repeated id is the one stored
        update_id = update.get("update_id") if isinstance(update, dict) else None
        if type(update_id) is int and update_id in ids:
            first.setdefault(update_id, update)
    titles = CommunityTitles(db)
    for update_id, payload in pending:
        event = update_to_event(json.loads(payload), BOT)
        check_event(event)
        assert event == update_to_event(first[update_id], BOT)
        if isinstance(event, Message):
            store_messages(db, [event])
        if event is not None:
            titles.note(event)
        db.mark_update_done(platform, update_id, datetime.now(UTC))


@pytest.fixture
def fake(fake_telegram: FakeTelegram) -> FakeTelegram:
    return fake_telegram


def test_a_lone_surrogate_from_telegram_neither_stalls_the_inbox_nor_reaches_the_store(
    fake: FakeTelegram,
) -> None:
    # Half a UTF-16 pair, escaped in the Bot API's JSON, made save_updates raise
    # UnicodeEncodeError: the batch was never stored, so getUpdates returned it again and
    # again and the chat stalled; a title or text holding it failed intake the same way.
    update = {
        "update_id": 7,
        "message": {
            "message_id": 70,
            "date": 1714564800,
            "chat": {"id": -100123, "type": "supergroup", "title": "BTC \ud800 club"},
            "from": {"id": 42, "is_bot": False, "first_name": "a"},
            "text": "moon \udfff soon",
        },
    }
    fake.queue_update(update)
    db = Store(":memory:", memory=True)

    async def main() -> list[tuple[int, Message | Command | None]]:
        async with build_bot(TOKEN, fake.base_url) as bot:
            poller = TelegramPoller(bot, db)
            assert await poller.poll_once() == 1
            return await poller.events()

    [(update_id, event)] = asyncio.run(main())
    assert update_id == 7 and isinstance(event, Message)
    assert (event.text, event.community_title) == ("moon \ufffd soon", "BTC \ufffd club")
    store_messages(db, [event])
    CommunityTitles(db).note(event)
    assert db.next_offset("telegram") == 8


@pytest.mark.parametrize(
    "post",
    [
        {"date": 10**17},  # past time_t: OSError escaped the "never raises" translation
        {"date": 10**20},
        {"text": " \n"},  # blank text became a Message with nothing to score
        {"caption": "\t", "text": None},
    ],
)
def test_telegram_translation_regressions(post: dict[str, Any]) -> None:
    update = {
        "update_id": 1,
        "message": {
            "message_id": 1,
            "date": 1714564800,
            "chat": {"id": -1, "type": "group"},
            "from": {"id": 1, "is_bot": False},
            "text": "gm",
            **post,
        },
    }
    if post.get("text", "") is None:
        del update["message"]["text"]
    assert update_to_event(update, BOT) is None


# ---------------------------------------------------------------------- Discord

#: discord.py's client state, without a connection: enough to build its Message objects from
#: gateway payloads as its own MESSAGE_CREATE parser does.
_client = discord.Client(intents=discord.Intents.none())
GUILD, CHANNEL = 1_000_000_000_000_000_001, 1_000_000_000_000_000_002
DISCORD_EPOCH_MS = 1_420_070_400_000
#: Ids carry their time (milliseconds since 2015 << 22): mostly ones sent by now.
sent_snowflake = st.builds(
    lambda ms, low: ms << 22 | low,
    st.integers(0, NOW_S * 1000 - DISCORD_EPOCH_MS),
    st.integers(0, 2**22 - 1),
)
snowflake = st.one_of(
    sent_snowflake,
    sent_snowflake,
    st.integers(1, 2**64 - 1),
    st.sampled_from([0, 1, 2**63 - 1, 2**64 - 1, 1_100_000_000_000_000_000]),
)
count = st.one_of(st.integers(0, 50), st.sampled_from([-1, -(2**40), 2**53, 2**63, 2**64, HUGE]))


def snowflake_text(value: int) -> str:
    return str(value)


dc_author = st.fixed_dictionaries(
    {
        "id": snowflake.map(snowflake_text),
        "username": st.text(max_size=10),
        "discriminator": st.just("0"),
        "avatar": st.none(),
    },
    optional={"bot": st.booleans(), "global_name": st.one_of(st.none(), odd_text)},
)
dc_reaction = st.fixed_dictionaries(
    {"count": count, "me": st.booleans(), "emoji": st.just({"id": None, "name": "🚀"})}
)


def dc_thread(message_count: int) -> dict[str, Any]:
    return {
        "id": str(CHANNEL + 1),
        "guild_id": str(GUILD),
        "parent_id": str(CHANNEL),
        "owner_id": "1",
        "name": "t",
        "type": 11,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": message_count,
        "member_count": 1,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 60,
            "archive_timestamp": "2024-01-01T00:00:00+00:00",
            "locked": False,
        },
    }


dc_payload = st.fixed_dictionaries(
    {
        "id": snowflake.map(snowflake_text),
        "channel_id": st.just(str(CHANNEL)),
        "type": st.one_of(st.sampled_from([0, 0, 0, 19]), st.integers(0, 50)),
        "content": st.one_of(post_text, odd_text),
        "author": dc_author,
        "timestamp": st.just("2024-01-01T00:00:00+00:00"),
        "edited_timestamp": st.none(),
        "tts": st.booleans(),
        "mention_everyone": st.booleans(),
        "mentions": st.just([]),
        "mention_roles": st.just([]),
        "attachments": st.just([]),
        "embeds": st.just([]),
        "pinned": st.booleans(),
    },
    optional={
        "reactions": st.lists(dc_reaction, max_size=4),
        "webhook_id": snowflake.map(snowflake_text),
        "thread": count.map(dc_thread),
        "guild_id": st.just(str(GUILD)),
    },
)


def discord_message(payload: dict[str, Any], guild_name: str, own_id: int | None) -> Any:
    state = _client._connection
    guild = discord.Guild(
        data={"id": str(GUILD), "name": guild_name, "channels": [], "roles": [], "members": []},
        state=state,
    )
    channel = discord.TextChannel(
        state=state,
        guild=guild,
        data={"id": str(CHANNEL), "type": 0, "name": "general", "position": 0},
    )
    return discord.Message(state=state, channel=channel, data=payload)  # type: ignore[arg-type]


@fuzz(300)
@given(dc_payload, odd_text, st.one_of(st.none(), snowflake))
def test_discord_messages_translate_to_our_types_or_nothing(
    payload: dict[str, Any], guild_name: str, own_id: int | None
) -> None:
    event = message_to_event(discord_message(payload, guild_name, own_id), own_id)
    assert event is None or isinstance(event, Message)
    if event is not None:
        check_message(event)
        store_messages(store(), [event])


def base_payload(**changes: Any) -> dict[str, Any]:
    sent = (1_714_564_800_000 - DISCORD_EPOCH_MS) << 22  # 2024-05-01
    payload = {
        "id": str(sent),
        "channel_id": str(CHANNEL),
        "type": 0,
        "content": "BTC looks strong",
        "author": {"id": "42", "username": "alice", "discriminator": "0", "avatar": None},
        "timestamp": "2024-05-01T00:00:00+00:00",
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
    }
    return {**payload, **changes}


def test_discord_message_dated_in_the_future_by_its_id_is_skipped() -> None:
    # The snowflake says when a message was sent; one from 2026 and beyond was a Message
    # dated in the future (found by the fuzz test above).
    payload = base_payload(id=str(2**64 - 1))
    assert message_to_event(discord_message(payload, "G", None)) is None


@pytest.mark.parametrize(
    ("counts", "thread_count", "likes", "replies"),
    [
        ([-5, 3], -1, 3, 0),  # negative counts
        ([2**63, 2**64], 2**64, 0, 0),  # past SQLite's integers: intake failed to store it
        ([2**53, 2**53], 7, 2**53, 7),  # each fine, the sum capped
    ],
)
def test_discord_counts_stay_within_bounds(
    counts: list[int], thread_count: int, likes: int, replies: int
) -> None:
    reactions = [{"count": n, "me": False, "emoji": {"id": None, "name": "x"}} for n in counts]
    payload = base_payload(reactions=reactions, thread=dc_thread(thread_count))
    event = message_to_event(discord_message(payload, "G", None))
    assert isinstance(event, Message) and (event.likes, event.replies) == (likes, replies)
    store_messages(Store(":memory:", memory=True), [event])


def test_discord_lone_surrogates_become_replacement_characters() -> None:
    payload = base_payload(content="moon \ud800")
    event = message_to_event(discord_message(payload, "club \udfff", None))
    assert isinstance(event, Message)
    assert (event.text, event.community_title) == ("moon \ufffd", "club \ufffd")
    store_messages(Store(":memory:", memory=True), [event])
