"""Trust in chat (#13, findings 3 and 13): the operator's /status only for the operators,
group admins see their own community; digests per community, only to current moderators and
quoting only their community; a group's subscriptions belong to its current moderators."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.app.cli import main
from bot.chat.commands import CommandContext, handle
from bot.chat.digest import RoleLookup, send_due_digests
from bot.chat.inbox import ChatSource, RateLimiter, with_operator
from bot.pipeline.status import save_x_plan
from bot.pipeline.supervisor import Health, health_to_json
from bot.prefs.subscriptions import Subscription
from bot.settings import Settings
from bot.store import Store, StoredMessage
from bot.types import Alert, Scope
from connectors.errors import SourceUnavailable
from connectors.telegram import TelegramRoles, build_bot
from connectors.types import Command, Message, Reply
from nlp.types import Score
from tests.doubles import RecordingSink
from tests.fake_telegram import CHAT_NOT_FOUND, SERVER_ERROR, TOKEN, FakeTelegram

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

NOW = datetime(2024, 5, 1, 12, tzinfo=UTC)
GROUP_A, GROUP_B = -1001111, -1002222
MOD, OTHER_MOD, MEMBER, OPERATOR = 42, 43, 1005, 777
ADMIN = frozenset({"admin"})
#: What only the operator may read: a connector reading a private file, the X plan and spend.
SECRET_FILE = "replay:/srv/exports/private-posts.csv"


def stored(community: str, n: int, text: str) -> list[StoredMessage]:
    """``n`` Telegram messages of one community, an hour apart before NOW."""
    out = []
    for i in range(n):
        at = NOW - timedelta(hours=i + 1)
        m = Message("telegram", community, community, f"{community}-{i}", f"a{i}", text, at)
        out.append(StoredMessage(m, m.text, ("BTC",), None, None))
    return out


def fill(store: Store) -> Store:
    """Group A: 3 messages; group B: 5; the operator's X plan, spend and a file connector."""
    a = stored(str(GROUP_A), 3, "alpha group thinks BTC moons")
    b = stored(str(GROUP_B), 5, "bravo group private dump talk")
    store.add_messages(a + b, NOW)
    scores = [
        ((s.message.platform, s.message.channel, s.message.message_id), score)
        for s, score in [(s, Score(0.1, 0.2, 0.7, "positive", "t")) for s in a]
        + [(s, Score(0.7, 0.2, 0.1, "negative", "t")) for s in b]
    ]
    store.save_scores(scores, NOW)
    save_x_plan(store, 10_000, 0.005, NOW)
    store.add_usage("x", NOW.strftime("%Y-%m"), 1234)
    health = Health(SECRET_FILE, state="running", messages=8, last_message_at=NOW)
    store.save_health([(SECRET_FILE, health_to_json(health))], NOW)
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    db = fill(Store(tmp_path / "trust.db"))
    yield db
    db.close()


@pytest.fixture
def fake() -> Iterator[FakeTelegram]:
    server = FakeTelegram()
    server.admins[GROUP_A] = [MOD, OTHER_MOD]
    server.admins[GROUP_B] = [MOD]
    server.start()
    yield server
    server.stop()


def in_group(group: int, user: int, name: str, *args: str, roles=frozenset()) -> Command:
    return Command("telegram", str(group), str(group), str(user), name, args, roles)


def in_dm(user: int, name: str, *args: str) -> Command:
    return Command("telegram", str(user), str(user), str(user), name, args, is_private=True)


# ---------------------------------------------------------------------- /status


def ask_status(store: Store, cmd: Command, admins: dict[int, set[int]]) -> str:
    """``cmd`` answered by the real Telegram front end (roles looked up as it does), with
    the operator allow-list set to telegram:777."""

    async def roles(c: Command) -> frozenset[str]:
        return ADMIN if int(c.user) in admins.get(int(c.community), set()) else frozenset()

    sink = RecordingSink()
    feed: Any = None  # only answer() runs here
    source = ChatSource(
        "telegram",
        feed,
        sink,
        store,
        roles,
        asyncio.Event(),
        RateLimiter(per_user=100, per_chat=100),
        operators=(f"telegram:{OPERATOR}",),
    )
    asyncio.run(source.answer(cmd))
    [reply] = sink.sent
    return reply.text


def test_the_operator_gets_the_whole_bots_status_in_a_direct_message(store: Store) -> None:
    text = ask_status(store, in_dm(OPERATOR, "status"), {})
    assert "Connectors:" in text and SECRET_FILE in text
    assert "X reads in" in text and "of 10,000" in text  # this month's, against the cap
    assert "Messages: 8 stored" in text  # every community


def test_a_group_admin_sees_only_their_communitys_status(store: Store) -> None:
    store.subscribe(Subscription("telegram", str(GROUP_A), str(GROUP_A), str(MOD)), NOW)
    store.subscribe(Subscription("telegram", str(GROUP_B), str(GROUP_B), str(MOD)), NOW)
    alert = Alert("hype:BTC|*|*:24h:1", "hype", Scope("BTC"), NOW, "hype")
    targets = [("telegram", str(GROUP_A)), ("telegram", str(GROUP_B))]
    store.save_tick([], [alert], {}, lambda a: targets, ("index_tick", NOW.isoformat()), NOW)

    text = ask_status(store, in_group(GROUP_A, MOD, "status"), {GROUP_A: {MOD}})
    assert text.startswith("Status of this community:")
    assert "Messages: 3 stored, 3 scored, 0 waiting to be scored" in text
    assert "; newest " in text and " days ago" in text  # NOW - 1 h, read at the wall clock
    assert "1 delivered to the group" in text
    assert "Alert sends to the group not yet made: 1;" in text  # A's row, not B's too
    # Nothing about the bot as a whole, nor about other communities.
    for secret in ("Connectors", SECRET_FILE, "X reads", "10,000", "$", "8 stored", "ticked"):
        assert secret not in text


def test_the_operator_in_a_group_gets_the_groups_view_not_the_operators(store: Store) -> None:
    """Every member reads an answer given in a group: the full status only goes by DM."""
    text = ask_status(store, in_group(GROUP_A, OPERATOR, "status"), {GROUP_A: {OPERATOR}})
    assert text.startswith("Status of this community:") and "X reads" not in text


@pytest.mark.parametrize(
    "cmd",
    [in_group(GROUP_A, MEMBER, "status"), in_dm(MEMBER, "status"), in_dm(MOD, "status")],
    ids=["member in the group", "stranger by DM", "group admin by DM"],
)
def test_others_are_refused(store: Store, cmd: Command) -> None:
    text = ask_status(store, cmd, {GROUP_A: {MOD}})
    assert text == "/status is for this chat's moderators only."


def test_a_platform_cannot_claim_the_operator_role() -> None:
    forged = Command("telegram", "5", "5", "5", "status", (), frozenset({"operator"}), True)
    assert with_operator(forged, ("telegram:777",)).roles == frozenset()
    discord_op = Command("discord", "9", "9", "777", "status", (), frozenset(), True)
    assert with_operator(discord_op, ("telegram:777",)).roles == frozenset()  # other platform


@pytest.mark.parametrize(
    ("entries", "ok"),
    [
        (["telegram:12345", "discord:678"], True),
        (["telegram:-1001234"], False),  # a group or channel is nobody
        (["12345"], False),
        (["slack:12345"], False),
        (["telegram:@boss"], False),
    ],
)
def test_the_operators_setting_is_platform_and_user_id(entries: list[str], ok: bool) -> None:
    if ok:
        assert Settings(operators=entries).operators == tuple(entries)
    else:
        with pytest.raises(ValidationError, match="platform:user_id"):
            Settings(operators=entries)


# ---------------------------------------------------------------------- digests


def subscribe_digest(store: Store, group: int, user: int = MOD) -> None:
    reply = handle(in_group(group, user, "digest", "8", roles=ADMIN), CommandContext(store, NOW))
    assert "Daily digest of this community" in reply.text


def digests(store: Store, fake: FakeTelegram, sink: RecordingSink, at: datetime = NOW) -> int:
    """One run of the digest job, the roles re-checked through the real client and the fake
    Bot API, as ``moodring run`` wires it."""

    async def run() -> int:
        tg = build_bot(TOKEN, fake.base_url)
        await tg.initialize()
        roles: dict[str, RoleLookup] = {"telegram": TelegramRoles(tg).check}
        try:
            return await send_due_digests(store, {"telegram": sink}, at, roles)
        finally:
            await tg.shutdown()

    return asyncio.run(run())


def test_a_moderators_digests_of_two_groups_are_two_each_quoting_its_own(
    store: Store, fake: FakeTelegram
) -> None:
    subscribe_digest(store, GROUP_A)
    subscribe_digest(store, GROUP_B)
    assert len(store.subscriptions()) == 2
    sink = RecordingSink()
    assert digests(store, fake, sink) == 2
    by_group = {r.text.splitlines()[0]: r for r in sink.sent}
    assert len(by_group) == 2 and all(r.target == str(MOD) for r in sink.sent)
    [a] = [r.text for r in sink.sent if "alpha" in r.text]
    [b] = [r.text for r in sink.sent if "bravo" in r.text]
    assert "bravo" not in a and "alpha" not in b  # each quotes its own community only
    assert "3 messages" in a and "5 messages" in b
    assert digests(store, fake, sink) == 0  # once a day each
    # /digest off in one group leaves the other's.
    off = in_group(GROUP_A, MOD, "digest", "off", roles=ADMIN)
    assert handle(off, CommandContext(store, NOW)).text == "Daily digest off."
    assert [s.community for s in store.subscriptions()] == [str(GROUP_B)]


def test_a_demoted_moderator_gets_no_digest_and_loses_the_subscription(
    store: Store, fake: FakeTelegram, caplog
) -> None:
    subscribe_digest(store, GROUP_A)
    subscribe_digest(store, GROUP_B)
    fake.admins[GROUP_B] = []  # demoted in the private group B
    sink = RecordingSink()
    with caplog.at_level("INFO", logger="bot.chat.digest"):
        assert digests(store, fake, sink) == 1
    [reply] = sink.sent
    assert "alpha" in reply.text and "bravo" not in reply.text
    assert [s.community for s in store.subscriptions()] == [str(GROUP_A)]
    assert f"{GROUP_B} for {MOD} removed: no longer a moderator" in caplog.text
    # Made moderator again, they would /digest anew: the next day brings A's digest only.
    fake.admins[GROUP_B] = [MOD]
    assert digests(store, fake, sink, NOW + timedelta(days=1)) == 1


def test_a_digest_waits_while_the_role_cannot_be_checked(store: Store, fake: FakeTelegram) -> None:
    subscribe_digest(store, GROUP_A)
    sink = RecordingSink()
    fake.fail_next(dataclasses.replace(SERVER_ERROR, method="getChatAdministrators"))
    assert digests(store, fake, sink) == 0 and sink.sent == []
    assert len(store.subscriptions()) == 1  # not lost to a passing outage
    assert digests(store, fake, sink) == 1


def test_a_group_that_is_gone_ends_its_digest(store: Store, fake: FakeTelegram) -> None:
    subscribe_digest(store, GROUP_A)
    # The bot was removed from the group, or the group deleted.
    fake.fail_next(dataclasses.replace(CHAT_NOT_FOUND, method="getChatAdministrators"))
    assert digests(store, fake, RecordingSink()) == 0
    assert store.subscriptions() == []


def test_a_platform_without_a_role_lookup_sends_no_digest(store: Store) -> None:
    subscribe_digest(store, GROUP_A)
    sink = RecordingSink()
    assert asyncio.run(send_due_digests(store, {"telegram": sink}, NOW, {})) == 0
    assert sink.sent == [] and len(store.subscriptions()) == 1


def test_discord_checks_the_member_as_they_are_now() -> None:
    """The Discord lookup the digests use asks Discord, not the slash command's snapshot."""
    import simcord

    from tests.test_discord import Recorder, simulate

    async def scenario(env: simcord.Env, connector: Any) -> None:
        guild = env.create_guild()
        mods = guild.create_role("Mods")
        mod = guild.add_member(env.create_user("mod"), roles=[mods])
        alice = guild.add_member(env.create_user("alice"))

        def cmd(user: Any) -> Command:
            return Command("discord", str(guild.id), str(guild.id), str(user.id), "summary")

        assert await connector.roles_of(cmd(mod)) == ADMIN
        assert await connector.roles_of(cmd(alice)) == frozenset()
        guild.remove_member(mod)  # left the server
        assert await connector.roles_of(cmd(mod)) == frozenset()
        other = Command("discord", "123", "123", str(alice.id), "summary")
        assert await connector.roles_of(other) == frozenset()  # a server the bot is not in

    simulate(Recorder(), scenario, admin_roles=("mods",))


def test_discord_roles_are_unknown_before_the_bot_is_connected() -> None:
    from tests.test_discord import Recorder, connector_for

    connector = connector_for(Recorder())
    cmd = Command("discord", "123", "123", "456", "summary")
    with pytest.raises(SourceUnavailable):
        asyncio.run(connector.roles_of(cmd))


# ---------------------------------------------------------------------- group subscriptions


def say(store: Store, cmd: Command) -> str:
    return handle(cmd, CommandContext(store=store, now=NOW)).text


def test_any_current_moderator_lists_and_removes_the_groups_subscriptions(store: Store) -> None:
    assert "Subscribed here" in say(store, in_group(GROUP_A, MOD, "subscribe", "BTC", roles=ADMIN))
    assert "Subscribed here" in say(store, in_group(GROUP_A, MOD, "subscribe", roles=ADMIN))
    # Another moderator subscribing the same asset replaces it: no double alerts.
    say(store, in_group(GROUP_A, OTHER_MOD, "subscribe", "BTC", "hype", roles=ADMIN))
    assert len(store.subscriptions()) == 2
    listing = say(store, in_group(GROUP_A, OTHER_MOD, "alerts", roles=ADMIN))
    assert listing.startswith("This group's alerts:")
    assert "BTC: hype" in listing and "any asset: all alerts" in listing
    removed = say(store, in_group(GROUP_A, OTHER_MOD, "unsubscribe", "BTC", roles=ADMIN))
    assert removed == "Unsubscribed this group (1 removed)."
    assert say(store, in_group(GROUP_A, OTHER_MOD, "unsubscribe", "all", roles=ADMIN)) == (
        "Unsubscribed this group (1 removed)."
    )
    assert store.subscriptions() == []


def test_a_demoted_admin_no_longer_controls_the_groups_subscriptions(store: Store) -> None:
    say(store, in_group(GROUP_A, MOD, "subscribe", "BTC", roles=ADMIN))
    say(store, in_group(GROUP_A, MOD, "subscribe", "ETH"))  # a member's: by DM, theirs
    group_sub = [s for s in store.subscriptions() if s.is_group]
    # Demoted: the front end finds no admin role in the group any more.
    assert "This group's" not in say(store, in_group(GROUP_A, MOD, "alerts"))
    assert "Unsubscribed (1 removed)" in say(store, in_group(GROUP_A, MOD, "unsubscribe"))
    assert "no such subscription" in say(store, in_dm(MOD, "unsubscribe", "BTC"))
    assert "No subscriptions to quiet" in say(store, in_dm(MOD, "quiet", "22-7"))
    assert store.subscriptions() == group_sub  # untouched, quiet hours included
    # Any current moderator still can.
    assert "1 removed" in say(store, in_group(GROUP_A, OTHER_MOD, "unsubscribe", roles=ADMIN))


def test_the_front_end_checks_the_role_when_the_command_comes(
    store: Store, fake: FakeTelegram
) -> None:
    """Through the real client and the fake Bot API: demoted, the same /unsubscribe in the
    group no longer reaches the group's subscription."""
    say(store, in_group(GROUP_A, MOD, "subscribe", "BTC", roles=ADMIN))

    async def run(cmd: Command) -> Reply:
        tg = build_bot(TOKEN, fake.base_url)
        await tg.initialize()
        sink = RecordingSink()
        feed: Any = None
        source = ChatSource("telegram", feed, sink, store, TelegramRoles(tg), asyncio.Event())
        await source.answer(cmd)
        await tg.shutdown()
        [reply] = sink.sent
        return reply

    fake.admins[GROUP_A] = [OTHER_MOD]  # MOD demoted
    reply = asyncio.run(run(in_group(GROUP_A, MOD, "unsubscribe", "BTC")))
    assert "no such subscription" in reply.text and len(store.subscriptions()) == 1
    reply = asyncio.run(run(in_group(GROUP_A, OTHER_MOD, "unsubscribe", "BTC")))
    assert reply.text == "Unsubscribed this group (1 removed)." and store.subscriptions() == []


@pytest.mark.sqlite_only
def test_moodring_ask_is_the_operator(tmp_path: Path, capsys) -> None:
    # Last in this file: main() points logging at the captured stderr, closed after the test.
    db = tmp_path / "ask.db"
    fill(Store(db)).close()
    assert main(["--db", str(db), "ask", "--at", NOW.isoformat(), "/status"]) == 0
    assert "X reads in 2024-05" in capsys.readouterr().out
