"""Erasure on request (#13 finding 12): /forget, `moodring forget`, the do-not-store list, and
retention of raw chat updates and alert quotes."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import discord
import pytest
import simcord

from bot.app.cli import main
from bot.chat.commands import CommandContext, answer
from bot.chat.inbox import discord_front
from bot.chat.privacy import InboxRetention
from bot.mood.index import IndexParams, compute_reading
from bot.store import Store, StoredMessage, iso
from bot.store.privacy import PSEUDONYM_PREFIX, WITHHELD
from bot.store.rows import TICK_CHECKPOINT
from bot.types import Alert, Scope
from connectors.telegram import update_to_event
from connectors.types import Command, Message
from nlp.scorer import Scorer
from nlp.types import Score
from tests.doubles import ListSource
from tests.fake_telegram import FakeTelegram
from tests.test_chat_telegram import ADMIN, GROUP, group_update, sent_texts, serve_until
from tests.test_pipeline_e2e import make_pipeline

pytestmark = pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")

T0 = datetime(2024, 3, 1, 12, tzinfo=UTC)
NOW = T0 + timedelta(hours=6)
ALICE, BOB = "5550001234", "5550005678"  # long: never a chance part of a hex digest
ALICE_TEXTS = [
    "$BTC to the moon, alice was here and is very bullish on this breakout today",
    "$ETH dump incoming, alice says sell everything before the weekend crash",
    "alice lives at 12 Example Street and holds 40 $BTC",
]


def post(
    author: str, n: int, text: str, community: str = "g1", platform: str = "telegram"
) -> Message:
    return Message(
        platform=platform,
        community=community,
        channel=community,
        message_id=str(n),
        author=author,
        text=text,
        created_at=T0 + timedelta(minutes=n),
        author_followers=1234,
        author_created_at=T0 - timedelta(days=400),
        author_verified=True,
    )


def fill(store: Store) -> list[Message]:
    """Alice posts in two groups, Bob in one; all scored by model "m1"."""
    msgs = [
        post(ALICE, 1, ALICE_TEXTS[0]),
        post(ALICE, 2, ALICE_TEXTS[1]),
        post(ALICE, 3, ALICE_TEXTS[2], community="g2"),
        post(BOB, 4, "$BTC bob thinks the chart looks fine"),
        post(BOB, 5, "$ETH bob is watching the volume"),
    ]
    store.add_messages(
        [StoredMessage(m, m.text, ("BTC",), None, None, 0.8) for m in msgs], T0 + timedelta(hours=1)
    )
    scores = [
        (("telegram", m.channel, m.message_id), Score(0.1 * i, 0.2, 0.7 - 0.1 * i, "pos", "m1"))
        for i, m in enumerate(msgs)
    ]
    store.save_scores(scores, T0 + timedelta(hours=1))
    return msgs


def add_alert(store: Store, key: str, evidence: tuple[str, ...], at: datetime) -> None:
    alert = Alert(key=key, kind="extreme", scope=Scope(), at=at, title="t", evidence=evidence)
    store.save_tick([], [alert], {}, lambda a: [], (TICK_CHECKPOINT, iso(at)), at)


def evidence(store: Store, key: str) -> list[str]:
    [(raw,)] = store.query("SELECT evidence FROM alerts WHERE key = ?", [key])
    return json.loads(raw)


def tg_update(update_id: int, user: int, text: str, chat: int = GROUP, **extra: object) -> str:
    message = {
        "message_id": update_id,
        "from": {"id": user, "is_bot": False, "first_name": f"Name{user}", "username": f"u{user}"},
        "chat": {"id": chat, "title": "Crypto Talk", "type": "supergroup"},
        "date": int(T0.timestamp()),
        "text": text,
        **extra,
    }
    return json.dumps({"update_id": update_id, "message": message})


# ---------------------------------------------------------------------- the store


def test_erasing_removes_texts_quotes_metadata_and_keeps_scores_and_counts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = Store(tmp_path / "f.db")
    fill(store)
    params = IndexParams()
    before_rows = store.scored_since(T0, NOW)
    before = compute_reading([r.to_point() for r in before_rows], Scope(), "24h", NOW, params)
    cut = ALICE_TEXTS[0][:40].rstrip() + "…"  # as bot.render.quote cuts a long post
    add_alert(store, "a1", (cut, ALICE_TEXTS[1], "$BTC bob thinks the chart looks fine"), NOW)
    store.db.execute(
        "INSERT INTO subscriptions (platform, community, target, user, asset, kinds, created_at,"
        " active) VALUES ('telegram', 'g1', ?, ?, 'BTC', 'extreme', ?, 1)",
        [ALICE, ALICE, iso(T0)],
    )

    with caplog.at_level(logging.INFO):
        erased = store.forget_author("telegram", ALICE, NOW, requested_by="the member")

    assert (erased.messages, erased.quotes, erased.subscriptions) == (3, 2, 1)
    rows = store.query(
        "SELECT author, text, norm_text, author_followers, author_created_at, author_verified"
        " FROM messages WHERE message_id IN ('1', '2', '3')"
    )
    assert {r[0] for r in rows} == {erased.pseudonym}  # one pseudonym for all their messages
    assert erased.pseudonym.startswith(PSEUDONYM_PREFIX) and ALICE not in erased.pseudonym
    assert all(r[1:] == (None,) * 5 for r in rows)
    # Bob is untouched; the quotes of Alice's messages went, Bob's stayed.
    assert store.query("SELECT author, text FROM messages WHERE message_id = '4'") == [
        (BOB, "$BTC bob thinks the chart looks fine")
    ]
    assert evidence(store, "a1") == ["$BTC bob thinks the chart looks fine"]
    assert store.subscriptions(platform="telegram", user=ALICE) == []
    # Scores, model ids, polarity and the number of distinct authors are what they were, so
    # the reading over them is the same.
    after_rows = store.scored_since(T0, NOW)
    assert [(r.key, r.polarity, r.model_id) for r in after_rows] == [
        (r.key, r.polarity, r.model_id) for r in before_rows
    ]
    assert len({r.author for r in after_rows}) == len({r.author for r in before_rows}) == 2
    after = compute_reading([r.to_point() for r in after_rows], Scope(), "24h", NOW, params)
    assert (after.value, after.sample_size, after.confidence) == (
        before.value,
        before.sample_size,
        before.confidence,
    )
    # Logged, without the text and without the id.
    logged = "\n".join(r.getMessage() for r in caplog.records if "erased" in r.getMessage())
    assert "3 messages" in logged and erased.pseudonym in logged
    assert ALICE not in logged and "moon" not in logged
    # The do-not-store entry names nobody: no id, no plain or unsalted hash of it.
    [(platform, digest, community)] = store.query(
        "SELECT platform, digest, community FROM do_not_store"
    )
    assert (platform, community) == ("telegram", "")
    plain = f"telegram\x00{ALICE}".encode()
    assert ALICE not in digest
    assert digest not in {hashlib.sha256(plain).hexdigest(), hashlib.sha256(b"1001").hexdigest()}
    other = Store(tmp_path / "other.db")  # another database: another salt, another digest
    other.forget_author("telegram", ALICE, NOW)
    assert other.query("SELECT digest FROM do_not_store") != [(digest,)]
    other.close()
    store.close()


def test_a_moderators_erasure_stays_in_their_community(tmp_path: Path) -> None:
    store = Store(tmp_path / "f.db")
    msgs = fill(store)
    erased = store.forget_author("telegram", ALICE, NOW, community="g1")
    assert erased.messages == 2 and erased.subscriptions == 0
    assert store.query("SELECT author, text FROM messages WHERE message_id = '3'") == [
        (ALICE, ALICE_TEXTS[2])
    ]
    # Not stored again in g1; still in g2.
    later = [post(ALICE, 10, "again in g1"), post(ALICE, 11, "again in g2", community="g2")]
    assert store.withheld(later) == {("telegram", "g1", "10")}
    assert store.withheld(msgs[3:]) == set()  # Bob
    store.close()


def test_raw_chat_updates_of_the_person_are_cleared(tmp_path: Path) -> None:
    store = Store(tmp_path / "f.db")
    quoted = json.loads(tg_update(3, int(ALICE), "alice's pending post"))["message"]
    store.save_updates(
        "telegram",
        [
            (1, tg_update(1, int(ALICE), "alice's old post")),
            (2, tg_update(2, int(BOB), "bob's old post")),
            (3, tg_update(3, int(ALICE), "alice's pending post")),
            (4, tg_update(4, int(BOB), "bob replies", reply_to_message=quoted)),
            (5, tg_update(5, int(ALICE), "alice in another group", chat=-1009)),
        ],
        6,
        T0,
    )
    for done in (1, 2):
        store.mark_update_done("telegram", done, T0)

    store.forget_author("telegram", ALICE, NOW, community=str(GROUP))

    rows = {
        r[0]: (r[1], r[2], r[3])
        for r in store.query("SELECT update_id, payload, done_at, error FROM chat_inbox")
    }
    assert rows[1][0] is None  # done: cleared
    assert rows[3] == (None, iso(NOW), "erased on request")  # hers, pending: never read
    bobs_reply = json.loads(rows[4][0])["message"]
    assert rows[4][1] is None and "reply_to_message" not in bobs_reply  # still to be read
    assert bobs_reply["text"] == "bob replies"
    assert json.loads(rows[2][0])["message"]["text"] == "bob's old post"
    assert "alice in another group" in rows[5][0]  # another community: not this moderator's
    # Her next post arrives: stored as handled, without its payload (a command still works).
    store.save_updates(
        "telegram",
        [(6, tg_update(6, int(ALICE), "alice again")), (7, tg_update(7, int(ALICE), "/mood"))],
        8,
        NOW,
    )
    [(payload, done_at, error)] = store.query(
        "SELECT payload, done_at, error FROM chat_inbox WHERE update_id = 6"
    )
    assert (payload, done_at, error) == (None, iso(NOW), WITHHELD)
    assert [u for u, _ in store.pending_updates("telegram")] == [4, 5, 7]
    store.close()


# ---------------------------------------------------------------------- intake


def test_intake_does_not_store_a_forgotten_author_and_counts_it(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    store = Store(tmp_path / "f.db")
    store.forget_author("replay", ALICE, T0)
    posts = [
        post(ALICE, 1, "$BTC alice is bullish on the breakout", platform="replay"),
        post(BOB, 2, "$BTC bob is bearish, dump incoming", platform="replay"),
        post(ALICE, 3, "$ETH alice says moon", platform="replay"),
    ]
    pipeline = make_pipeline(store, Scorer(tiny_model_dir, cache_size=0), {})
    counters = asyncio.run(pipeline.run([ListSource(posts, name="replay")]))
    assert store.query("SELECT author, message_id FROM messages") == [(BOB, "2")]
    assert counters.withheld == 2 and counters.added == 1
    store.close()


# ---------------------------------------------------------------------- /forget


def forget(store: Store, *args: str, user: str = "42", admin: bool = True, **kw: object) -> str:
    cmd = Command(
        "telegram",
        "g1",
        "g1",
        user,
        "forget",
        args,
        roles=frozenset({"admin"}) if admin else frozenset(),
        **kw,  # type: ignore[arg-type]
    )
    return answer(cmd, CommandContext(store=store, now=NOW)).reply.text


def authors(store: Store) -> dict[str, str]:
    return dict(store.query("SELECT message_id, author FROM messages"))


def test_a_moderator_forgets_a_member_by_reply_id_or_mention(tmp_path: Path) -> None:
    store = Store(tmp_path / "f.db")
    fill(store)
    text = forget(store, reply_to_author=ALICE)
    assert text.startswith("Erased that member's data in this community: 2 messages")
    assert authors(store)["1"].startswith(PSEUDONYM_PREFIX)
    assert authors(store)["3"] == ALICE  # g2 is not this moderator's community
    assert "in this community: 2 messages" in forget(store, BOB)
    assert authors(store)["4"].startswith(PSEUDONYM_PREFIX)
    # A Discord mention as a slash option carries it.
    store.add_messages(
        [StoredMessage(post("777", 9, "hello $BTC"), "hello $BTC", ("BTC",), None, None)], NOW
    )
    assert "1 message " in forget(store, "<@777>")
    assert authors(store)["9"].startswith(PSEUDONYM_PREFIX)
    # A Telegram @username cannot be turned into an id: the reply says how to do it.
    assert "reply /forget to one of their messages" in forget(store, "@alice")
    assert "reply /forget to one of their messages" in forget(store)  # no reply, no id
    store.close()


def test_only_moderators_may_forget_someone_else(tmp_path: Path) -> None:
    store = Store(tmp_path / "f.db")
    fill(store)
    text = forget(store, ALICE, user=BOB, admin=False)
    assert text.startswith("Only this chat's moderators")
    assert forget(store, user=BOB, admin=False, reply_to_author=ALICE).startswith("Only")
    assert authors(store)["1"] == ALICE
    assert store.query("SELECT COUNT(*) FROM do_not_store") == [(0,)]
    store.close()


def test_a_member_forgets_themself_everywhere_on_the_platform(tmp_path: Path) -> None:
    store = Store(tmp_path / "f.db")
    fill(store)
    text = forget(store, "me", user=ALICE, admin=False)
    assert "Erased your data everywhere moodring reads on telegram: 3 messages" in text
    assert "will not be stored again" in text
    assert {authors(store)[i][: len(PSEUDONYM_PREFIX)] for i in "123"} == {PSEUDONYM_PREFIX}
    assert store.withheld([post(ALICE, 20, "x", community="g-elsewhere")])
    store.close()


def test_a_reply_names_who_it_replies_to_but_a_forum_topic_does_not() -> None:
    reply = json.loads(tg_update(2, 42, "/forget"))
    reply["message"]["reply_to_message"] = json.loads(tg_update(1, 1001, "hi"))["message"]
    cmd = update_to_event(reply, "moodring_bot")
    assert isinstance(cmd, Command) and cmd.reply_to_author == "1001"
    topic = json.loads(tg_update(3, 42, "/forget", is_topic_message=True, message_thread_id=7))
    topic["message"]["reply_to_message"] = {
        **json.loads(tg_update(7, 1001, "x"))["message"],
        "forum_topic_created": {"name": "BTC"},
    }
    cmd = update_to_event(topic, "moodring_bot")
    assert isinstance(cmd, Command) and cmd.reply_to_author is None


def test_forget_as_a_reply_on_telegram_end_to_end(
    tmp_path: Path, fake: FakeTelegram, tiny_model_dir: Path
) -> None:
    store = Store(tmp_path / "tg.db")
    now = datetime.now(UTC).replace(microsecond=0)
    member = 1001
    first = group_update(1, "$BTC member one is bullish on this breakout", member, now)
    fake.queue_update(first)
    fake.queue_update(group_update(2, "$BTC member two watches the chart", 1002, now))

    def stored(n: int) -> bool:
        return store.query("SELECT COUNT(*) FROM messages") == [(n,)]

    asyncio.run(serve_until(store, fake, tiny_model_dir, lambda: stored(2)))
    command = group_update(3, "/forget", ADMIN, now)
    command["message"]["reply_to_message"] = first["message"]
    fake.queue_update(command)
    fake.queue_update(group_update(4, "$BTC member one again, this must not be kept", member, now))
    fake.queue_update(group_update(5, "$BTC member two again", 1002, now))

    def done() -> bool:
        return stored(3) and any("Erased" in t for t in sent_texts(fake))

    counters = asyncio.run(serve_until(store, fake, tiny_model_dir, done))
    assert any(
        t.startswith("Erased that member's data in this community: 1 message")
        for t in sent_texts(fake)
    )
    rows = store.query("SELECT message_id, author, text FROM messages ORDER BY message_id")
    assert [r[0] for r in rows] == ["1", "2", "5"]  # the member's later post was not stored
    assert rows[0][1].startswith(PSEUDONYM_PREFIX) and rows[0][2] is None
    assert store.query("SELECT COUNT(*) FROM scores WHERE message_id = '1'") == [(1,)]
    # No raw update keeps the member: their posts' payloads are gone, the command lost its quote.
    payloads = [p for (p,) in store.query("SELECT payload FROM chat_inbox") if p]
    assert not any("member one" in p for p in payloads)
    # Withheld at intake (it reached the inbox before the erasure) or by the inbox itself.
    [(at_inbox,)] = store.query("SELECT COUNT(*) FROM chat_inbox WHERE error = ?", [WITHHELD])
    assert counters.withheld + at_inbox == 1
    store.close()


def test_forget_by_mention_on_discord(tmp_path: Path) -> None:
    store = Store(tmp_path / "dc.db")
    connector, _ = discord_front(store, asyncio.Event())

    async def main() -> None:
        async with simcord.run(connector.client) as env:
            guild = env.create_guild()
            channel = guild.create_text_channel("general")
            member = guild.add_member(env.create_user("member"))
            other = guild.add_member(env.create_user("other"))
            managers = guild.create_role(
                "Managers", permissions=discord.Permissions(manage_guild=True)
            )
            boss = guild.add_member(env.create_user("boss"), roles=[managers])
            for n, who in enumerate((member, member, other)):
                m = post(str(who.id), n, f"$BTC post {n}", str(guild.id), "discord")
                store.add_messages([StoredMessage(m, m.text, ("BTC",), None, None)], NOW)

            refused = await other.slash(channel, "forget", who=f"<@{member.id}>")
            assert refused.response.message.content.startswith("Only this chat's moderators")
            done = await boss.slash(channel, "forget", who=f"<@{member.id}>")
            assert "in this community: 2 messages" in done.response.message.content
            mine = await other.slash(channel, "forget", who="me")
            assert "everywhere moodring reads on discord: 1 message" in (
                mine.response.message.content
            )

    asyncio.run(main())
    assert all(a.startswith(PSEUDONYM_PREFIX) for a in authors(store).values())
    store.close()


# ---------------------------------------------------------------------- the CLI


@pytest.mark.sqlite_only
def test_moodring_forget_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "cli.db"
    store = Store(db)
    fill(store)
    store.close()
    code = main(["--db", str(db), "forget", "--platform", "telegram", "--author", ALICE])
    out = capsys.readouterr().out
    assert code == 0
    assert "erased on telegram (everywhere): 3 messages" in out and ALICE not in out
    store = Store(db)
    assert ALICE not in authors(store).values()
    assert store.withheld([post(ALICE, 30, "x")])
    store.close()
    code = main(
        ["--db", str(db), "forget", "--platform", "telegram", "--author", BOB, "--community", "g1"]
    )
    assert code == 0 and "(community g1): 2 messages" in capsys.readouterr().out


# ---------------------------------------------------------------------- retention


def test_purge_clears_old_alert_quotes_and_processed_inbox_payloads(tmp_path: Path) -> None:
    store = Store(tmp_path / "f.db")
    fill(store)
    add_alert(store, "old", ("an old quote",), T0)
    add_alert(store, "new", ("a new quote",), NOW)
    store.purge_texts(T0 + timedelta(hours=1))
    assert evidence(store, "old") == [] and evidence(store, "new") == ["a new quote"]

    store.save_updates("telegram", [(u, tg_update(u, 1002, f"post {u}")) for u in (1, 2, 3)], 4, T0)
    store.mark_update_done("telegram", 1, NOW - timedelta(days=3))
    store.mark_update_done("telegram", 2, NOW - timedelta(hours=1))
    job = InboxRetention(store, timedelta(days=2))
    assert asyncio.run(job(NOW)) == 1
    payloads = dict(store.query("SELECT update_id, payload FROM chat_inbox"))
    assert payloads[1] is None  # processed three days ago
    assert payloads[2] is not None and payloads[3] is not None  # recent; not yet processed
    # At most once an hour; then the next one clears what has aged since.
    store.mark_update_done("telegram", 3, NOW - timedelta(days=5))
    assert asyncio.run(job(NOW + timedelta(minutes=10))) == 0
    assert asyncio.run(job(NOW + timedelta(hours=1))) == 1
    store.close()


@pytest.fixture
def fake():
    server = FakeTelegram()
    server.admins[GROUP] = [ADMIN]
    server.start()
    yield server
    server.stop()
