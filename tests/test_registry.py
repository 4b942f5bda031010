"""The command registry: every command declared once, with help and usage, and offered alike on
Telegram, Discord, the console and `moodring ask` (each set read from that platform's code path)."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.app.cli import main
from bot.chat.commands import COMMANDS, CommandContext, answer
from bot.chat.inbox import ChatSource, ConsoleSource, RateLimiter, discord_front
from bot.chat.registry import Registry
from bot.store import Store, StoredMessage
from connectors.console import ConsoleSink
from connectors.telegram import update_to_event
from connectors.types import Command, Message, Reply, SlashParam
from nlp.types import Score
from tests.doubles import RecordingSink

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
#: The commands as /help lists them (the order users have always seen).
LISTED = (
    "mood",
    "fear",
    "why",
    "trending",
    "chart",
    "price",
    "liquidations",
    "levels",
    "corr",
    "subscribe",
    "unsubscribe",
    "alerts",
    "quiet",
    "forget",
    "dashboard",
    "summary",
    "digest",
    "settings",
    "status",
    "help",
)
#: A name no platform may answer, to show each probe below can tell the difference.
BOGUS = "frobnicate"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    path = tmp_path / "registry.db"
    db = Store(path)
    msgs = [
        Message("cli", "cli", "c", f"m{i}", f"a{i}", "$BTC ok", NOW - timedelta(hours=i))
        for i in range(3)
    ]
    db.add_messages([StoredMessage(m, m.text, ("BTC",), None, None) for m in msgs], NOW)
    score = Score(0.2, 0.5, 0.3, "neutral", "test")
    db.save_scores([((m.platform, m.channel, m.message_id), score) for m in msgs], NOW)
    yield db
    db.close()


def test_every_command_has_help_and_usage() -> None:
    assert COMMANDS.names() == LISTED
    help_text = COMMANDS.help_text()
    assert help_text.startswith("moodring reads this community's messages")
    for spec in COMMANDS:
        assert spec.help and spec.usage.startswith(f"/{spec.name}")
        assert spec.help_line() in help_text
        assert COMMANDS.usage(spec.name) == spec.usage
    listed = [line.split()[0][1:] for line in help_text.splitlines() if line.startswith("/")]
    assert tuple(listed) == LISTED
    assert COMMANDS.get("start") is COMMANDS.get("help")  # Telegram's /start is /help


def test_role_checks_come_from_the_audience() -> None:
    moderators = {s.name for s in COMMANDS if s.moderators_only}
    assert moderators == {"dashboard", "summary", "digest", "settings", "status"}
    # Moderators' commands, and those whose answer depends on who asks, look the roles up.
    needs_roles = {s.name for s in COMMANDS if s.needs_roles}
    assert needs_roles == moderators | {"subscribe", "unsubscribe", "alerts", "levels", "forget"}


def test_telegram_discord_console_and_ask_offer_the_same_commands(
    store: Store, tmp_path: Path, capsys
) -> None:
    registered = set(COMMANDS.names())
    assert telegram_commands(store) == registered
    assert discord_commands(store) == registered
    assert console_commands(store, tmp_path) == registered
    assert ask_commands(tmp_path / "registry.db", capsys) == registered


def test_telegram_looks_up_roles_only_for_the_commands_that_need_them(store: Store) -> None:
    asked: list[str] = []
    telegram_commands(store, asked)
    assert set(asked) == {s.name for s in COMMANDS if s.needs_roles}


# ---------------------------------------------------------------------- each platform's set


def probes() -> list[str]:
    return [*COMMANDS.names(), BOGUS]


def unknown(text: str) -> bool:
    return text.startswith("Unknown command /")


def telegram_commands(store: Store, asked: list[str] | None = None) -> set[str]:
    """The commands a Telegram group gets answered: update → Command → ChatSource → reply."""
    sink = RecordingSink()

    async def roles_for(cmd: Command) -> frozenset[str]:
        if asked is not None:
            asked.append(cmd.name)
        return frozenset({"admin"})

    limiter = RateLimiter(per_user=1_000, per_chat=1_000)
    feed: Any = None  # only ChatSource.answer runs here, and it never reads the inbox
    source = ChatSource("telegram", feed, sink, store, roles_for, asyncio.Event(), limiter)
    answered = set()
    for n, name in enumerate(probes()):
        update = {
            "update_id": n,
            "message": {
                "message_id": n,
                "from": {"id": 7, "is_bot": False, "first_name": "u"},
                "chat": {"id": -100, "title": "g", "type": "supergroup"},
                "date": int(NOW.timestamp()),
                "text": f"/{name}@moodring_bot",
            },
        }
        cmd = update_to_event(update, "moodring_bot")
        assert isinstance(cmd, Command)
        asyncio.run(source.answer(cmd))
        if not unknown(sink.sent[-1].text):
            answered.add(name)
    return answered


def discord_commands(store: Store) -> set[str]:
    """The slash commands of the tree the Discord connector builds from the bot's specs."""
    connector, _ = discord_front(store, asyncio.Event())
    return {c.name for c in connector.tree.get_commands()}


def console_commands(store: Store, tmp_path: Path) -> set[str]:
    """The commands the console answers, each typed on its own line."""
    path = tmp_path / "typed.txt"
    path.write_text("".join(f"/{name}\n" for name in probes()))
    out = io.StringIO()
    with path.open("rb") as stream:
        console = ConsoleSource(stream, ConsoleSink(out), store, asyncio.Event())
        asyncio.run(console.serve())
    lines = out.getvalue().splitlines()
    unknowns = {line.split()[2].strip("/.") for line in lines if unknown(line)}
    assert unknowns == {BOGUS}
    return set(probes()) - unknowns


def ask_commands(db: Path, capsys) -> set[str]:
    """The commands `moodring ask` understands (a usage line is still a known command)."""
    answered = set()
    for name in probes():
        main(["--db", str(db), "ask", f"/{name}", "--at", NOW.isoformat()])
        if not unknown(capsys.readouterr().err):
            answered.add(name)
    return answered


# ---------------------------------------------------------------------- the registry itself


def test_a_command_is_declared_once_with_a_decorator() -> None:
    registry = Registry(intro="Hello.")

    @registry.command(
        "ping",
        usage="/ping [WHO]   e.g. /ping all",
        help="answers pong",
        params=(SlashParam("who", "whom to ping", choices=("all", "me")),),
    )
    def cmd_ping(cmd: Command, ctx: CommandContext) -> Reply:
        return Reply(text="pong")

    spec = registry.get("ping")
    assert spec is not None and spec.handler is cmd_ping  # the handler comes back unchanged
    assert registry.names() == ("ping", "help")
    assert registry.help_text() == (
        "Hello.\n\n/ping [WHO] — answers pong\n/help — what moodring can do (this message)"
    )
    (ping, _) = registry.slash_specs()
    assert ping.description == "Answers pong" and ping.params[0].choices == ("all", "me")
    with pytest.raises(ValueError, match="declared twice"):
        registry.command("ping", usage="/ping", help="again")(cmd_ping)
    with pytest.raises(ValueError, match="required options must come before"):
        registry.command(
            "late",
            usage="/late",
            help="a required option after an optional one",
            params=(SlashParam("a", "a"), SlashParam("b", "b", required=True)),
        )(cmd_ping)
    with pytest.raises(ValueError, match="must start with /bad"):
        registry.command("bad", usage="/other", help="x")(cmd_ping)


def test_help_orders_by_audience_whatever_the_import_order() -> None:
    registry = Registry(intro="Hi.")
    for name, audience in [("op", "operator"), ("mod", "moderator"), ("one", "member")]:
        registry.command(name, usage=f"/{name}", help=name, audience=audience)(
            lambda cmd, ctx: Reply(text="")
        )
    registry.command("two", usage="/two", help="two")(lambda cmd, ctx: Reply(text=""))
    assert registry.names() == ("one", "two", "mod", "op", "help")


def test_the_unknown_command_reply_lists_the_registry(store: Store) -> None:
    cmd = Command("telegram", "g", "c", "u", BOGUS)
    result = answer(cmd, CommandContext(store=store, now=NOW))
    assert result.problem == "unknown_command"
    listed = result.reply.text.split("Try: ", 1)[1].split()
    assert listed[0] == "/help"  # the way in comes first
    assert sorted(listed) == sorted(f"/{n}" for n in COMMANDS.names())
