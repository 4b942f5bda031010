"""The permission matrix: every command × caller × platform, driven through the real front ends
(Telegram's ChatSource with admin lists from the fake Bot API, Discord's slash commands under
simcord, the console and `moodring ask`) and checked against the table in docs/SECURITY.md,
which is generated from the command registry."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import discord
import pytest
import simcord

from bot.app.cli import main as cli_main
from bot.chat import permissions
from bot.chat.commands import COMMANDS, NOT_READ
from bot.chat.inbox import ChatSource, ConsoleSource, RateLimiter, discord_front
from bot.chat.permissions import (
    ANSWERED,
    CALLERS,
    NOT_APPLICABLE,
    OWN_COMMUNITY,
    REFUSED,
    WHOLE_BOT,
    Caller,
    Platform,
)
from bot.chat.registry import CommandSpec
from bot.store import Store, StoredMessage
from connectors.telegram import TelegramRoles, build_bot, update_to_event
from connectors.types import Candle, Command, Message
from nlp.types import Score
from tests.doubles import RecordingSink
from tests.fake_telegram import BOT_USERNAME, TOKEN, FakeTelegram

DOC = Path(__file__).resolve().parents[1] / "docs" / "SECURITY.md"

#: Arguments each command answers to in an ordinary way (the others answer to none). A new
#: command that needs arguments fails the matrix with a usage reply until it is listed here.
SAMPLE_ARGS: dict[str, tuple[str, ...]] = {
    "chart": ("BTC",),
    "price": ("BTC",),
    "liquidations": ("BTC",),
    "levels": ("BTC",),
    "corr": ("BTC", "ETH"),
    "subscribe": ("BTC", "extreme"),
    "quiet": ("22-7",),
    "forget": ("me",),
    "digest": ("8",),
}

# Telegram: the allow-listed group, a group that is not on the list, and who is who.
TG_GROUP, TG_OTHER = -1001111111111, -1002222222222
TG_MEMBER, TG_MODERATOR, TG_OPERATOR, TG_STRANGER, TG_OTHER_ADMIN = 1001, 42, 7, 1002, 43
# Discord: the allow-listed server and one that is not.
DC_GUILD, DC_OTHER = 111_111_111_111_111_111, 222_222_222_222_222_222


# ---------------------------------------------------------------------- the generated table


def test_the_table_in_security_md_is_the_generated_one() -> None:
    table = permissions.between_markers(DOC.read_text(encoding="utf-8"))
    assert table == permissions.render(), (
        "docs/SECURITY.md's permission table is not what the command registry gives: run "
        "`python -m bot.chat.permissions --write` and review the change"
    )


def test_every_command_has_a_row_and_the_console_only_an_operator() -> None:
    cells = permissions.matrix()
    assert {name for name, _, _ in cells} == set(COMMANDS.names())
    table = permissions.render()
    for spec in COMMANDS:
        assert f"| /{spec.name} " in table
    for (name, caller, platform), outcome in cells.items():
        on_console = platform == "console" and caller != "operator"
        assert (outcome == NOT_APPLICABLE) == on_console, (name, caller, platform)


def test_splice_replaces_only_what_is_between_the_markers() -> None:
    doc = f"# Security\n\nbefore\n{permissions.START}\nold\n{permissions.END}\nafter\n"
    spliced = permissions.splice(doc, "new table")
    assert (
        spliced
        == f"# Security\n\nbefore\n{permissions.START}\nnew table\n{permissions.END}\nafter\n"
    )
    assert permissions.splice(spliced, "new table") == spliced
    assert permissions.between_markers(spliced) == "new table"
    with pytest.raises(ValueError, match="permissions:start"):
        permissions.splice("no markers", "x")


def test_the_generator_prints_the_table_and_writes_it(tmp_path: Path, capsys) -> None:
    assert permissions.main([]) == 0
    assert capsys.readouterr().out == permissions.render() + "\n"
    doc = tmp_path / "SECURITY.md"
    doc.write_text(f"# Security\n{permissions.START}\n{permissions.END}\nrest\n", encoding="utf-8")
    assert permissions.main(["--write", "--doc", str(doc)]) == 0
    assert permissions.between_markers(doc.read_text(encoding="utf-8")) == permissions.render()
    assert doc.read_text(encoding="utf-8").endswith(f"{permissions.END}\nrest\n")


# ---------------------------------------------------------------------- what a reply says


def outcome_of(name: str, text: str) -> str:
    """The table's word for a reply (anything but an ordinary answer or a refusal shows)."""
    if text == NOT_READ:
        return permissions.NOT_READ
    if text == f"/{name} is for this chat's moderators only.":
        return REFUSED
    failed = ("Unknown command", "Sorry, that failed", "I don't know", "Slow down")
    if "Usage: " in text or text.startswith(failed):
        return f"not answered: {text[:160]!r} (add arguments to SAMPLE_ARGS?)"
    if name == "status":
        if text.startswith("Status of this community:"):
            return OWN_COMMUNITY
        if text.startswith("Connectors:"):
            return WHOLE_BOT
        return f"an unknown /status: {text[:160]!r}"
    return ANSWERED


def command_text(spec: CommandSpec) -> str:
    return " ".join((f"/{spec.name}", *SAMPLE_ARGS.get(spec.name, ())))


Seen = dict[tuple[str, Caller, str], str]  # (command, caller, who) → outcome


def check(platform: Platform, seen: Seen) -> None:
    """Each command × caller was driven (by at least one user), and got its table cell."""
    cells = permissions.matrix()
    callers = {caller for _, caller, _ in seen}
    assert callers == {c for c in CALLERS if cells["help", c, platform] != NOT_APPLICABLE}
    assert {name for name, _, _ in seen} == set(COMMANDS.names())
    wrong = [
        f"/{name} by {caller} ({who}): got {outcome!r}, the table says {cell!r}"
        for (name, caller, who), outcome in seen.items()
        if outcome != (cell := cells[name, caller, platform])
    ]
    assert not wrong, f"on {platform}:\n" + "\n".join(wrong[:20])


# ---------------------------------------------------------------------- a seeded store


def seeded_store(path: Path, communities: list[tuple[str, str]]) -> Store:
    """A store with a day of scored messages about BTC and ETH in each community, and 60
    daily candles of both, so the commands answer from data rather than from nothing."""
    store = Store(path)
    now = datetime.now(UTC).replace(microsecond=0)
    stored = []
    for platform, community in communities:
        for i in range(24):
            message = Message(
                platform=platform,
                community=community,
                channel=community,
                message_id=str(i + 1),
                author=f"author{i % 5}",
                text=f"$BTC and $ETH look {'strong' if i % 3 else 'weak'} today ({i})",
                created_at=now - timedelta(hours=23 - i, minutes=5),
            )
            stored.append(StoredMessage(message, message.text, ("BTC", "ETH"), None, None))
    store.add_messages(stored, now)
    scores = [
        (
            (s.message.platform, s.message.channel, s.message.message_id),
            Score(0.2, 0.3, 0.5, "positive", "test")
            if k % 3
            else Score(0.6, 0.3, 0.1, "negative", "test"),
        )
        for k, s in enumerate(stored)
    ]
    store.save_scores(scores, now)
    today = now.replace(hour=0, minute=0, second=0)
    store.add_candles(
        [
            Candle(asset, "1d", today - timedelta(days=d), c, c * 1.02, c * 0.98, c, 10.0)
            for asset, base in (("BTC", 60_000.0), ("ETH", 3_000.0))
            for d in range(1, 61)
            for c in [base * (1 + 0.01 * ((d * 7) % 11 - 5))]
        ],
        "test",
    )
    return store


# ---------------------------------------------------------------------- Telegram


def test_a_chat_source_keeps_the_rate_limiter_it_is_given(tmp_path: Path) -> None:
    """Regression: once RateLimiter had a length, ``limiter or RateLimiter()`` swapped a fresh
    (empty, so falsy) limiter for the default one, and the configured limits were ignored."""
    store = Store(tmp_path / "limiter.db")
    limiter = RateLimiter(per_user=10_000, per_chat=10_000)

    async def roles(cmd: Command) -> frozenset[str]:
        return frozenset()

    feed: Any = None
    try:
        source = ChatSource(
            "telegram", feed, RecordingSink(), store, roles, asyncio.Event(), limiter
        )
    finally:
        store.close()
    assert source.limiter is limiter


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram()
    server.admins[TG_GROUP] = [TG_MODERATOR]
    server.admins[TG_OTHER] = [TG_OTHER_ADMIN]
    server.start()
    yield server
    server.stop()


def telegram_update(update_id: int, text: str, user_id: int, chat_id: int) -> dict:
    """A raw Bot API update: a command typed by ``user_id`` in a group, or in their DM."""
    chat: dict[str, Any] = (
        {"id": chat_id, "type": "private", "first_name": f"u{user_id}"}
        if chat_id > 0
        else {"id": chat_id, "type": "supergroup", "title": f"Group {chat_id}"}
    )
    return {
        "update_id": update_id,
        "message": {
            "message_id": update_id,
            "from": {"id": user_id, "is_bot": False, "first_name": f"u{user_id}"},
            "chat": chat,
            "date": int(datetime.now(UTC).timestamp()),
            "text": text,
        },
    }


#: Who asks on Telegram, as (caller, who, user id, chat id); a chat id equal to the user's is
#: their direct message. The operator asking in the group is just a member there.
TELEGRAM_ASKERS: list[tuple[Caller, str, int, int]] = [
    ("member", "member", TG_MEMBER, TG_GROUP),
    ("member", "the operator in the group", TG_OPERATOR, TG_GROUP),
    ("moderator", "admin", TG_MODERATOR, TG_GROUP),
    ("operator", "operator", TG_OPERATOR, TG_OPERATOR),
    ("dm", "member", TG_MEMBER, TG_MEMBER),
    ("dm", "the group's admin", TG_MODERATOR, TG_MODERATOR),
    ("other", "member", TG_STRANGER, TG_OTHER),
    ("other", "its admin", TG_OTHER_ADMIN, TG_OTHER),
]


def test_the_matrix_on_telegram(tmp_path: Path, fake: FakeTelegram) -> None:
    """Raw updates translated by the real connector, roles from getChatAdministrators (the
    cached TelegramRoles the bot runs with), the operator allow-list and the community
    allow-list applied by ChatSource, answered by the real dispatcher."""
    store = seeded_store(tmp_path / "tg.db", [("telegram", str(TG_GROUP))])
    seen: Seen = {}

    async def main() -> None:
        tg = build_bot(TOKEN, fake.base_url)
        await tg.initialize()
        sink = RecordingSink()
        feed: Any = None  # only answer() runs here: the inbox is tested elsewhere
        source = ChatSource(
            "telegram",
            feed,
            sink,
            store,
            TelegramRoles(tg),
            asyncio.Event(),
            limiter=RateLimiter(per_user=10_000, per_chat=10_000),
            operators=(f"telegram:{TG_OPERATOR}",),
            communities=frozenset({f"telegram:{TG_GROUP}"}),
        )
        update_id = 0
        for spec in COMMANDS:
            for caller, who, user, chat in TELEGRAM_ASKERS:
                update_id += 1
                event = update_to_event(
                    telegram_update(update_id, command_text(spec), user, chat), BOT_USERNAME
                )
                assert isinstance(event, Command)
                assert await source.answer(event)
                (reply,) = sink.sent
                sink.sent.clear()
                assert reply.target == event.channel  # answered where it was asked
                seen[spec.name, caller, who] = outcome_of(spec.name, reply.text)
        await tg.shutdown()

    try:
        asyncio.run(main())
    finally:
        store.close()
    check("telegram", seen)
    # Admin lists are asked of the allow-listed group only: a DM has no admins to ask about,
    # and a group the bot does not read gets one line whoever asks, so it costs no lookup.
    asked = {int(c.params["chat_id"]) for c in fake.requests("getChatAdministrators")}
    assert asked == {TG_GROUP}


# ---------------------------------------------------------------------- Discord


def test_the_matrix_on_discord(tmp_path: Path) -> None:
    """Slash commands through discord.py's real client under simcord: roles from Manage
    Server or a configured role name, DMs from the bot's DM channel, the operator allow-list
    and the community allow-list applied by the Discord front end."""
    store = seeded_store(tmp_path / "dc.db", [("discord", str(DC_GUILD))])
    operators: set[str] = set()  # filled once simcord has given the operator an id
    connector, _ = discord_front(
        store,
        asyncio.Event(),
        admin_roles=("Mods",),
        limiter=RateLimiter(per_user=10_000, per_chat=10_000),
        operators=operators,
        communities=frozenset({f"discord:{DC_GUILD}"}),
    )
    seen: Seen = {}

    async def main() -> None:
        async with simcord.run(connector.client) as env:
            guild = env.create_guild("Allowed", id=DC_GUILD)
            channel = guild.create_text_channel("general")
            other = env.create_guild("Elsewhere", id=DC_OTHER)
            other_channel = other.create_text_channel("general")
            managers = guild.create_role(
                "Managers", permissions=discord.Permissions(manage_guild=True)
            )
            mods = guild.create_role("Mods")
            alice = guild.add_member(env.create_user("alice"))
            boss = guild.add_member(env.create_user("boss"), roles=[managers])
            mod = guild.add_member(env.create_user("mod"), roles=[mods])
            op = guild.add_member(env.create_user("op"))
            operators.add(f"discord:{op.id}")
            carol = other.add_member(env.create_user("carol"))
            other_managers = other.create_role(
                "Managers", permissions=discord.Permissions(manage_guild=True)
            )
            other_boss = other.add_member(env.create_user("other-boss"), roles=[other_managers])

            def in_channel(actor: Any, where: Any) -> Callable[..., Any]:
                return lambda name, **options: actor.slash(where, name, **options)

            def in_dm(actor: Any) -> Callable[..., Any]:
                return lambda name, **options: actor.user.slash(name, **options)

            askers: list[tuple[Caller, str, Callable[..., Any]]] = [
                ("member", "member", in_channel(alice, channel)),
                ("member", "the operator in the server", in_channel(op, channel)),
                ("moderator", "Manage Server", in_channel(boss, channel)),
                ("moderator", "a configured role", in_channel(mod, channel)),
                ("operator", "operator", in_dm(op)),
                ("dm", "member", in_dm(alice)),
                ("dm", "a moderator", in_dm(boss)),
                ("other", "member", in_channel(carol, other_channel)),
                ("other", "its Manage Server", in_channel(other_boss, other_channel)),
            ]
            for spec in COMMANDS:
                names = [p.name for p in spec.params]
                options = dict(zip(names, SAMPLE_ARGS.get(spec.name, ()), strict=False))
                for caller, who, ask in askers:
                    result = await ask(spec.name, **options)
                    assert result.response is not None, (spec.name, who)
                    text = "".join(m.content for m in (result.response, *result.followups))
                    seen[spec.name, caller, who] = outcome_of(spec.name, text)

    try:
        asyncio.run(main())
    finally:
        store.close()
    check("discord", seen)


# ---------------------------------------------------------------------- the console


def test_the_matrix_on_the_console(tmp_path: Path, capsys) -> None:
    """Lines typed at the terminal (ConsoleSource gives the operator's roles), and the same
    commands through `moodring ask`."""
    path = tmp_path / "console.db"
    seeded_store(path, [("console", "console")]).close()
    lines = tmp_path / "commands.txt"
    lines.write_text("".join(command_text(spec) + "\n" for spec in COMMANDS), encoding="utf-8")
    store = Store(path)
    sink = RecordingSink()

    async def serve() -> None:
        with lines.open("rb") as stream:
            await ConsoleSource(stream, sink, store, asyncio.Event()).serve()

    try:
        asyncio.run(serve())
    finally:
        store.close()
    seen: Seen = {}
    assert len(sink.sent) == len(COMMANDS)  # one reply per line, in order
    for spec, reply in zip(COMMANDS, sink.sent, strict=True):
        seen[spec.name, "operator", "terminal"] = outcome_of(spec.name, reply.text)
    for spec in COMMANDS:
        out = tmp_path / f"{spec.name}.png"
        code = cli_main(["--db", str(path), "ask", command_text(spec), "--out", str(out)])
        printed = capsys.readouterr()
        text = printed.out if code == 0 else printed.err
        seen[spec.name, "operator", "moodring ask"] = outcome_of(spec.name, text.rstrip("\n"))
    check("console", seen)
