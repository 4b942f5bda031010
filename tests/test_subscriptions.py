"""Subscriptions: matching, quiet hours, the daily cap, digests and blocked recipients."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.chat.commands import CommandContext, handle
from bot.pipeline.config import PipelineConfig
from bot.pipeline.ticks import IndexEngine
from bot.prefs.subscriptions import (
    KINDS,
    Subscription,
    SubscriptionError,
    parse_quiet,
    parse_subscribe,
)
from bot.store import Store, iso
from bot.types import Alert, Scope
from connectors.errors import DeliveryError, RecipientGone
from connectors.types import Command
from nlp.scorer import Scorer
from tests.doubles import FlakySink
from tests.test_pipeline_e2e import make_pipeline

NOW = datetime(2022, 7, 1, 12, tzinfo=UTC)


def alert(n: int, kind: str = "extreme-fear", asset: str = "BTC") -> Alert:
    return Alert(f"{kind}:{asset}|*|*:24h:{n}", kind, Scope(asset=asset), NOW, f"alert {n}")


def test_matching_by_asset_and_kind() -> None:
    sub = Subscription("telegram", "g", "42", "u", asset="BTC", kinds=("extreme",))
    assert sub.matches(alert(1, "extreme-fear"))
    assert not sub.matches(alert(1, "hype"))
    assert not sub.matches(alert(1, "extreme-greed", asset="ETH"))
    anything = Subscription("telegram", "g", "42", "u")
    assert anything.matches(alert(1, "swing-down", asset="SOL"))


def test_quiet_hours_across_midnight_in_the_subscribers_zone() -> None:
    sub = Subscription("t", "g", "1", "u", quiet_start=22, quiet_end=7, tz="Europe/Berlin")
    # 12:00 UTC is 14:00 in Berlin (summer): awake. 21:30 UTC is 23:30 there: quiet.
    assert not sub.quiet_at(NOW)
    assert sub.quiet_at(NOW.replace(hour=21, minute=30))
    assert sub.quiet_at(NOW.replace(hour=4))  # 06:00 in Berlin
    assert not sub.quiet_at(NOW.replace(hour=5))  # 07:00 in Berlin


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((), ("*", KINDS)),
        (("BTC",), ("BTC", KINDS)),
        (("$eth.X", "hype", "swing"), ("ETH", ("hype", "swing"))),
        (("all",), ("*", KINDS)),
    ],
)
def test_parse_subscribe(args, expected) -> None:
    assert parse_subscribe(args) == expected


def test_bad_subscribe_and_quiet_arguments() -> None:
    with pytest.raises(SubscriptionError):
        parse_subscribe(("BTC", "ETH"))
    with pytest.raises(SubscriptionError):
        parse_quiet("25-7", "UTC")
    with pytest.raises(SubscriptionError, match="time zone"):
        parse_quiet("22-7", "Mars/Olympus")


def command(name: str, *args: str, private: bool = True, roles=frozenset()) -> Command:
    return Command("telegram", "g1", "dm-7" if private else "g1", "7", name, args, roles, private)


def test_subscribe_commands_round_trip() -> None:
    store = Store(":memory:", memory=True)
    ctx = CommandContext(store=store, now=NOW)
    assert "Subscribed here" in handle(command("subscribe", "BTC", "extreme"), ctx).text
    in_group = handle(command("subscribe", "ETH", private=False), ctx).text
    assert "by direct message" in in_group  # a member in a group gets DMs, not the group
    admin = handle(command("subscribe", private=False, roles=frozenset({"admin"})), ctx).text
    assert "Subscribed here" in admin
    listing = handle(command("alerts"), ctx).text
    assert "BTC: extreme" in listing and "ETH: all alerts" in listing
    assert "Quiet from 22:00" in handle(command("quiet", "22-7", "Europe/Berlin"), ctx).text
    assert "quiet 22:00–07:00 Europe/Berlin" in handle(command("alerts"), ctx).text
    assert "Unsubscribed (1 removed)" in handle(command("unsubscribe", "BTC"), ctx).text
    assert "no such subscription" in handle(command("unsubscribe", "BTC"), ctx).text
    assert "Usage: /subscribe" in handle(command("subscribe", "BTC", "ETH"), ctx).text


@pytest.mark.sqlite_only
def test_aliases_subscribe_the_symbol_and_old_alias_rows_move_to_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "subs.db")
    ctx = CommandContext(store=store, now=NOW)
    handle(command("subscribe", "bitcoin", "extreme"), ctx)
    assert "BTC: extreme" in handle(command("alerts"), ctx).text
    assert "Unsubscribed (1 removed)" in handle(command("unsubscribe", "xbt"), ctx).text

    # Rows saved under the alias itself, as before aliases resolved: user 7's "BITCOIN" and
    # "XBT" (one BTC subscription after the move), user 8's "XBT" beside a BTC one it has.
    def legacy(user: str, target: str, asset: str) -> Subscription:
        return Subscription("telegram", "g1", target, user, asset, ("extreme",))

    for sub in (legacy("7", "dm-7", "BITCOIN"), legacy("7", "dm-7", "XBT")):
        store.subscribe(sub, NOW)
    store.subscribe(legacy("8", "dm-8", "XBT"), NOW)
    store.subscribe(legacy("8", "dm-8", "BTC"), NOW)
    store.add_manual_level("telegram", "g1", "BITCOIN", 30_000.0, "7", NOW)
    store.db.execute("DELETE FROM _sqlite_migrations WHERE name = 'm006_asset_aliases'")
    store.close()

    store = Store(tmp_path / "subs.db")  # the migration runs
    rows = store.query("SELECT user, asset FROM subscriptions ORDER BY user")
    assert rows == [("7", "BTC"), ("8", "BTC")]
    assert store.manual_levels("telegram", "g1", "BTC") == [30_000.0]
    ctx = CommandContext(store=store, now=NOW)
    assert "BTC: extreme" in handle(command("alerts"), ctx).text
    assert "Unsubscribed (1 removed)" in handle(command("unsubscribe", "bitcoin"), ctx).text
    store.close()


def queue_alerts(store: Store, alerts: list[Alert]) -> None:
    subs = store.subscriptions()
    store.save_tick(
        [],
        alerts,
        {},
        lambda a: [(s.platform, s.target) for s in subs if s.matches(a)],
        ("index_tick", NOW.isoformat()),
        NOW,
    )


@pytest.fixture
def setup(tmp_path: Path, tiny_model_dir: Path):
    store = Store(tmp_path / "s.db")
    sink = FlakySink()
    pipeline = make_pipeline(store, Scorer(tiny_model_dir, cache_size=0), {"telegram": sink})
    yield store, sink, pipeline
    store.close()


def test_daily_cap_gives_up_the_rest(setup) -> None:
    store, sink, pipeline = setup
    store.subscribe(Subscription("telegram", "g", "42", "u", daily_cap=2), NOW)
    queue_alerts(store, [alert(i) for i in range(5)])
    assert asyncio.run(pipeline.deliver(NOW)) == 2
    assert len(sink.sent) == 2
    assert asyncio.run(pipeline.deliver(NOW)) == 0  # capped ones are not retried
    assert store.query("SELECT COUNT(*) FROM outbox WHERE last_error = 'daily cap'") == [(3,)]


def test_quiet_hours_hold_alerts_then_send_one_digest(setup) -> None:
    store, sink, pipeline = setup
    store.subscribe(Subscription("telegram", "g", "42", "u", quiet_start=22, quiet_end=7), NOW)
    queue_alerts(store, [alert(1), alert(2, "hype")])
    night = NOW.replace(hour=23)
    assert asyncio.run(pipeline.deliver(night)) == 0 and sink.sent == []
    morning = (NOW + timedelta(days=1)).replace(hour=8)
    assert asyncio.run(pipeline.deliver(morning)) == 2
    [digest] = sink.sent
    assert digest.text.startswith("🔔 2 alerts while you were away") and digest.target == "42"
    assert asyncio.run(pipeline.deliver(morning)) == 0


def test_platform_errors_are_retried_and_blocked_users_unsubscribed(setup) -> None:
    store, sink, pipeline = setup
    store.subscribe(Subscription("telegram", "g", "42", "u"), NOW)
    store.subscribe(Subscription("telegram", "g", "43", "v"), NOW)
    queue_alerts(store, [alert(1)])
    sink.failures = [DeliveryError("429", retry_after=30.0), RecipientGone("blocked")]
    assert asyncio.run(pipeline.deliver(NOW)) == 0
    assert [s.target for s in store.subscriptions()] == ["42"]  # 43 blocked the bot
    # 42 asked us to wait 30 s: not before, then the send lands once.
    assert asyncio.run(pipeline.deliver(NOW + timedelta(seconds=20))) == 0
    assert asyncio.run(pipeline.deliver(NOW + timedelta(seconds=31))) == 1
    assert asyncio.run(pipeline.deliver(NOW + timedelta(seconds=60))) == 0
    assert [r.target for r in sink.sent] == ["42"]


def test_repeated_platform_errors_back_off_exponentially(setup) -> None:
    store, sink, pipeline = setup
    store.subscribe(Subscription("telegram", "g", "42", "u"), NOW)
    queue_alerts(store, [alert(1)])
    sink.failures = [DeliveryError("500"), DeliveryError("500"), DeliveryError("500")]
    t = NOW
    tries = []
    for step in range(40):  # one call a second for 40 s
        t = NOW + timedelta(seconds=step)
        before = len(sink.failures)
        sent = asyncio.run(pipeline.deliver(t))
        if sent or len(sink.failures) < before:
            tries.append(step)
    assert tries == [0, 5, 15, 35]  # waits of 5, 10 and 20 s, then it lands
    assert len(sink.sent) == 1


def test_community_settings_govern_what_reaches_the_group(setup) -> None:
    store, sink, pipeline = setup
    # A moderator subscribed the group (target = the group chat); a member gets DMs.
    store.subscribe(Subscription("telegram", "g1", "g1", "mod"), NOW)
    store.subscribe(Subscription("telegram", "g1", "7", "7"), NOW)
    ctx = CommandContext(store=store, now=NOW)
    mod = frozenset({"admin"})
    member = Command("telegram", "g1", "g1", "7", "settings", ("alerts", "off"))
    assert "moderators only" in handle(member, ctx).text
    say = lambda *args: handle(Command("telegram", "g1", "g1", "mod", "settings", args, mod), ctx)  # noqa: E731
    assert "extreme alerts at: ≤ 25" in say().text
    assert "≤ 20 (fear)" in say("extreme", "20", "80").text
    assert "Usage" in say("extreme", "30", "80").text
    mild = Alert("extreme-fear:*|*|*:24h:1", "extreme-fear", Scope(), NOW, "mild", value=24.0)
    deep = Alert("extreme-fear:*|*|*:24h:2", "extreme-fear", Scope(), NOW, "deep", value=12.0)
    queue_alerts(store, [mild, deep])
    assert asyncio.run(pipeline.deliver(NOW)) == 3  # the group gets only "deep"; the DM both
    assert sorted((r.target, r.text.splitlines()[0][2:]) for r in sink.sent) == [
        ("7", "deep"),
        ("7", "mild"),
        ("g1", "deep"),
    ]
    assert "alerts in this chat: off" in say("alerts", "off").text
    queue_alerts(store, [Alert("hype:BTC|*|*:24h:3", "hype", Scope("BTC"), NOW, "hype")])
    assert asyncio.run(pipeline.deliver(NOW)) == 1 and sink.sent[-1].target == "7"
    # Settings are per community: another group's are untouched.
    assert (
        "alerts in this chat: on"
        in handle(Command("telegram", "g2", "g2", "mod", "settings", (), mod), ctx).text
    )


# Telegram group A and B, a person's own DM chat (Telegram's private chat id is the user id),
# and a Discord server whose id string happens to equal group A's.
GROUP_A, GROUP_B, DM_USER = "-100111", "-100222", "555"
MOD = frozenset({"admin"})
SUBSCRIBE_AS = {
    "group A telegram": Command("telegram", GROUP_A, GROUP_A, "mod-a", "subscribe", (), MOD),
    "group B telegram": Command("telegram", GROUP_B, GROUP_B, "mod-b", "subscribe", (), MOD),
    "DM user telegram": Command(
        "telegram", DM_USER, DM_USER, DM_USER, "subscribe", is_private=True
    ),
    "group discord": Command("discord", GROUP_A, GROUP_A, "mod-d", "subscribe", (), MOD),
    # A member's /subscribe in group A is delivered by DM but made in group A.
    "member of A by DM": Command("telegram", GROUP_A, GROUP_A, "777", "subscribe"),
}
TARGET_OF = {
    "group A telegram": ("telegram", GROUP_A),
    "group B telegram": ("telegram", GROUP_B),
    "DM user telegram": ("telegram", DM_USER),
    "group discord": ("discord", GROUP_A),
    "member of A by DM": ("telegram", "777"),
}
EVERYONE = set(SUBSCRIBE_AS)


@pytest.mark.parametrize(
    ("scope", "receivers"),
    [
        (Scope(), EVERYONE),
        (Scope(community=GROUP_A, platform="telegram"), {"group A telegram", "member of A by DM"}),
        (Scope(community=GROUP_B, platform="telegram"), {"group B telegram"}),
        (Scope(community=GROUP_A, platform="discord"), {"group discord"}),
    ],
    ids=["all sources", "A telegram", "B telegram", "A-id discord"],
)
def test_a_communitys_alerts_reach_only_its_own_subscribers(
    tmp_path: Path, scope: Scope, receivers: set[str]
) -> None:
    store = Store(tmp_path / "s.db")
    try:
        ctx = CommandContext(store=store, now=NOW)
        for cmd in SUBSCRIBE_AS.values():  # the real /subscribe records who and where
            assert "Subscribed" in handle(cmd, ctx).text
        # The pipeline's own choice of targets, with no configured sinks beside subscribers.
        engine = IndexEngine(store, PipelineConfig(sinks_targets=()))
        extreme = Alert(f"extreme-fear:{scope.key()}:24h:1", "extreme-fear", scope, NOW, "fear")
        store.save_tick(
            [], [extreme], {}, engine._targets([extreme], True), ("index_tick", iso(NOW)), NOW
        )
        queued = set(store.query("SELECT sink, target FROM outbox"))
        assert queued == {TARGET_OF[name] for name in receivers}
    finally:
        store.close()
