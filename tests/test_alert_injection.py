"""Alert injection (#13 finding 1): one group cannot make moodring alert everyone.

Alerts go only about known assets; an all-sources extreme or hype alert needs breadth
(effective authors, no community over half the weight) where several untrusted communities
are read; alerts quote only trusted public sources, or the receiving community's own posts;
and the bot reads only the communities the operator allow-listed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.app.wiring import needs_breadth, pipeline_config
from bot.chat.commands import NOT_READ, CommandContext, answer
from bot.mood.alerts import breadth
from bot.mood.index import Point
from bot.pipeline.config import PipelineConfig
from bot.pipeline.ticks import IndexEngine
from bot.settings import Settings
from bot.store import Store, StoredMessage
from bot.types import Alert, Scope
from connectors.types import Command, Message
from nlp.types import Score
from tests.test_pipeline_e2e import make_pipeline

T0 = datetime(2026, 11, 2, tzinfo=UTC)
GREED = Score(0.01, 0.04, 0.95, "positive", "test")
CALM = Score(0.2, 0.5, 0.3, "neutral", "test")
ATTACK = "-1009999"  # a public Telegram group (it has a username), run by the attacker


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "moodring.db")
    yield s
    s.close()


def put(store: Store, rows: list[tuple[Message, tuple[str, ...], Score]]) -> None:
    items = [StoredMessage(m, m.text.lower(), assets, None, None) for m, assets, _ in rows]
    store.add_messages(items, T0)
    keys = [(m.platform, m.channel, m.message_id) for m, _, _ in rows]
    store.save_scores([(k, s) for k, (_, _, s) in zip(keys, rows, strict=True)], T0)


def background(store: Store, days: int = 3) -> None:
    """A calm week of ordinary talk about BTC in two other groups and on X."""
    rows = []
    for h in range(days * 24):
        at = T0 + timedelta(hours=h, minutes=7)
        for place, platform in (("-1001", "telegram"), ("-1002", "telegram"), ("x", "x")):
            msg = Message(platform, place, place, f"bg{h}", f"u{h % 40}", "$BTC steady", at)
            rows.append((msg, ("BTC",), CALM))
    put(store, rows)


def attack(store: Store, start: datetime) -> None:
    """60 posts from 15 fresh accounts in one public group, all pushing $SCAMX."""
    rows = []
    for i in range(60):
        at = start + timedelta(minutes=i)
        text = f"$SCAMX to the moon 🚀 buy now {i}"
        msg = Message("telegram", ATTACK, ATTACK, f"s{i}", f"fresh{i % 15}", text, at)
        rows.append((msg, ("SCAMX",), GREED))
    put(store, rows)


def run(store: Store, config: PipelineConfig, until: datetime) -> list[Alert]:
    engine = IndexEngine(store, config)
    engine.load(until)
    return engine.advance(until)[1]


def attacked(store: Store, config: PipelineConfig) -> list[Alert]:
    background(store)
    start = T0 + timedelta(days=3)
    attack(store, start)
    return run(store, config, start + timedelta(hours=2))


def test_a_busy_unknown_cashtag_gets_readings_but_never_alerts(store: Store) -> None:
    alerts = attacked(store, PipelineConfig(need_breadth=True))
    assert not [a for a in alerts if a.scope.asset == "SCAMX"]
    # It is still read (a member may ask /mood SCAMX), just never pushed to anyone.
    assert store.query("SELECT COUNT(*) FROM readings WHERE asset = 'SCAMX'")[0][0] > 0


def test_an_operator_listed_asset_may_alert(store: Store) -> None:
    alerts = attacked(store, PipelineConfig(alert_assets=("SCAMX",)))
    assert {a.kind for a in alerts if a.scope.asset == "SCAMX"} >= {"hype"}


def test_one_group_cannot_set_off_an_all_sources_alert(store: Store) -> None:
    narrow = attacked(store, PipelineConfig(need_breadth=True))
    assert not [a for a in narrow if a.scope == Scope() and a.kind in ("extreme", "hype")]
    # The attacker's own group still hears about its own mood: that goes to nobody else.
    assert [a for a in narrow if a.scope.community == ATTACK]


def test_without_the_breadth_rule_the_same_attack_alerts_everyone(tmp_path: Path) -> None:
    """The control: the scenario above is an attack that works when breadth is not asked
    (a deployment exempt from it, reading one community)."""
    store = Store(tmp_path / "exempt.db")
    try:
        alerts = attacked(store, PipelineConfig(need_breadth=False))
    finally:
        store.close()
    assert [a for a in alerts if a.scope == Scope() and a.kind in ("extreme", "hype")]


def point(author: str, community: str, platform: str = "telegram", w: float = 1.0) -> Point:
    return Point(T0, author, 0.9, community=community, platform=platform, reputation=w)


def test_breadth_counts_effective_authors_and_the_largest_community_share() -> None:
    now = T0 + timedelta(hours=1)
    one_group = [point(f"a{i % 15}", ATTACK) for i in range(60)]
    authors, share = breadth(one_group, now, 86400)
    assert round(authors) == 15 and share == 1.0
    spread = [point(f"a{i}", f"g{i % 4}") for i in range(40)]
    authors, share = breadth(spread, now, 86400)
    assert round(authors) == 40 and share == 0.25
    loud = [point("loud", "g1")] * 50 + [point(f"q{i}", "g2") for i in range(5)]
    authors, _ = breadth(loud, now, 86400)
    assert authors < 2  # one loud account among a few quiet ones is about one voice
    # Towards greed, only the messages that clearly push that way count: calm talk in two
    # other groups does not make a flood of shilling from one group broad.
    calm = [Point(T0, f"c{i}", 0.1, community=f"g{i % 2}", platform="telegram") for i in range(60)]
    authors, share = breadth(calm + one_group[:6], now, 86400, direction=1)
    assert share == 1.0 and round(authors) == 6
    # X and replays are no community: they count in the total only.
    searches = [point(f"x{i}", "q", platform="x") for i in range(30)] + one_group[:10]
    assert breadth(searches, now, 86400)[1] == pytest.approx(10 / 40)


def test_alerts_quote_only_trusted_public_sources_or_the_receiving_community(
    store: Store,
) -> None:
    """A Telegram group with a username is not a public source unless the operator says so:
    an all-sources alert quotes only X (and listed sources); a group's own alert quotes
    that group."""
    rows = []
    start = T0 + timedelta(days=3)
    background(store)
    for i in range(40):
        at = start + timedelta(minutes=i)
        tg = Message("telegram", "-1001", "-1001", f"t{i}", f"t{i}", f"private greed {i}", at)
        x = Message("x", "x", "x", f"x{i}", f"x{i}", f"public greed on x {i}", at)
        rows += [(tg, ("BTC",), GREED), (x, ("BTC",), GREED)]
    put(store, rows)
    alerts = run(store, PipelineConfig(), start + timedelta(hours=2))
    everyone = [a for a in alerts if a.scope.community == "*" and a.evidence]
    assert everyone
    assert all("on x" in q for a in everyone for q in a.evidence)
    own = [a for a in alerts if a.scope.community == "-1001" and a.evidence]
    assert own and all("private greed" in q for a in own for q in a.evidence)


def test_a_source_the_operator_calls_public_may_be_quoted(store: Store) -> None:
    rows = []
    start = T0 + timedelta(days=3)
    background(store)
    for i in range(40):
        at = start + timedelta(minutes=i)
        tg = Message("telegram", "-1001", "-1001", f"t{i}", f"t{i}", f"listed greed {i}", at)
        rows.append((tg, ("BTC",), GREED))
    put(store, rows)
    config = PipelineConfig(public_sources=("telegram:-1001",))
    alerts = run(store, config, start + timedelta(hours=2))
    quoted = [q for a in alerts if a.scope.community == "*" for q in a.evidence]
    assert any("listed greed" in q for q in quoted)


# ---------------------------------------------------------------------- the allow-list


class Once:
    """A source yielding the given messages once (``ack`` records what intake stored)."""

    name = "chat"

    def __init__(self, messages: Sequence[Message]) -> None:
        self._messages = list(messages)
        self.acked: list[Message] = []

    async def messages(self) -> AsyncIterator[Message]:
        for m in self._messages:
            yield m

    def ack(self, messages: Sequence[Message]) -> None:
        self.acked += messages


class NoScorer:
    def score(self, texts: Sequence[str]) -> list[Score]:
        return [CALM for _ in texts]


def test_intake_reads_only_allow_listed_communities_and_acks_the_rest(store: Store) -> None:
    at = T0
    messages = [
        Message("telegram", "-1001", "-1001", "1", "a", "$BTC ok", at),
        Message("telegram", ATTACK, ATTACK, "2", "b", "$SCAMX moon", at),
        Message("discord", "77", "770", "3", "c", "$ETH ok", at),
        Message("x", "x", "x", "4", "d", "$BTC on x", at),  # a search: not a community
    ]
    source = Once(messages)
    pipeline = make_pipeline(store, NoScorer(), {}, communities=frozenset({"telegram:-1001"}))
    asyncio.run(pipeline.run([source]))
    stored = store.query("SELECT platform, community FROM messages ORDER BY message_id")
    assert stored == [("telegram", "-1001"), ("x", "x")]
    assert len(source.acked) == 4  # the unlisted ones are done with too: never read again


def test_a_group_off_the_list_gets_one_line_naming_the_setting(store: Store) -> None:
    ctx = CommandContext(store=store, now=T0, communities=frozenset({"telegram:-1001"}))
    off = answer(Command("telegram", ATTACK, ATTACK, "u", "mood", ("BTC",)), ctx)
    assert off.problem == "community_not_read" and off.reply.text == NOT_READ
    assert "MOODRING_COMMUNITIES" in NOT_READ and "\n" not in NOT_READ
    listed = answer(Command("telegram", "-1001", "-1001", "u", "mood", ("BTC",)), ctx)
    assert listed.problem != "community_not_read"
    dm = Command("telegram", "55", "55", "55", "mood", ("BTC",), is_private=True)
    assert answer(dm, ctx).problem != "community_not_read"


def test_the_settings_name_communities_and_public_sources_strictly() -> None:
    good = Settings(communities=("telegram:-1001", "discord:77"), public_sources=("telegram",))
    config = pipeline_config(good)
    assert config.communities == frozenset({"telegram:-1001", "discord:77"})
    assert config.need_breadth  # two communities, not both trusted public
    for bad in (("telegram",), ("irc:5",), ("telegram:@group",)):
        with pytest.raises(ValidationError):
            Settings(communities=bad)
    assert pipeline_config(Settings()).communities == frozenset()  # empty: nothing read


def test_one_community_or_only_trusted_public_sources_need_no_breadth() -> None:
    assert not needs_breadth(Settings(communities=("telegram:-1001",)))
    assert not needs_breadth(Settings(communities=()))  # X and replays only
    both_public = Settings(
        communities=("telegram:-1001", "telegram:-1002"), public_sources=("telegram",)
    )
    assert not needs_breadth(both_public)
    assert needs_breadth(Settings(communities=("telegram:-1001", "telegram:-1002")))


def test_run_warns_at_start_when_chats_are_on_and_no_community_is_listed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from bot.app.wiring import warn_unlisted

    with caplog.at_level(logging.WARNING):
        warn_unlisted(Settings(telegram_token="t"))  # type: ignore[arg-type]
    assert "MOODRING_COMMUNITIES is empty" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        warn_unlisted(Settings(telegram_token="t", communities=("telegram:-1",)))  # type: ignore[arg-type]
    assert not caplog.text


def test_the_chat_inbox_passes_the_allow_list_to_every_command(store: Store) -> None:
    from bot.chat.inbox import RateLimiter, answer_command

    cmd = Command("telegram", ATTACK, ATTACK, "u", "help")
    listed = frozenset({"telegram:-1001"})
    reply = asyncio.run(answer_command(cmd, store, RateLimiter(), listed))
    assert reply is not None and reply.text == NOT_READ


def test_status_names_the_communities_read(store: Store) -> None:
    from bot.pipeline.status import save_communities, status_report

    assert "Communities read: not recorded yet" in status_report(store, T0)
    save_communities(store, (), T0)
    assert "none (MOODRING_COMMUNITIES is empty" in status_report(store, T0)
    save_communities(store, ("telegram:-1001", "discord:77"), T0)
    assert "Communities read (2, MOODRING_COMMUNITIES): discord:77, telegram:-1001" in (
        status_report(store, T0)
    )
