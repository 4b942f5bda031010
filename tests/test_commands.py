"""Chat commands over a database filled by the real pipeline (tiny model), and `moodring ask`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from bot.app.cli import main
from bot.chat.charts import png_size
from bot.chat.commands import CommandContext, answer, handle, known_assets, parse_command_text
from bot.render import unknown_asset_text
from bot.store import Store, StoredMessage
from connectors.types import Candle, Command, Message
from nlp.types import Score
from tests.backend_mode import copy_database
from tests.doubles import RecordingSink
from tests.test_pipeline_e2e import START, run_once, write_stream


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    folder = tmp_path_factory.mktemp("commands")
    stream = folder / "posts.jsonl"
    write_stream(stream)
    path = folder / "moodring.db"
    run_once(path, stream, tiny_model_dir, RecordingSink())
    store = Store(path)
    store.add_candles(
        [
            Candle("BTC", "1d", START + timedelta(days=d), c, c * 1.01, c * 0.99, c, 1.0)
            for d, c in enumerate(20000.0 - 500 * d for d in range(4))
        ],
        "test",
    )
    store.close()
    return path


def ask(db: Path, text: str, community: str = "test") -> str:
    store = Store(db)
    try:
        name, args = parse_command_text(text)
        cmd = Command("replay", community, "c", "u", name, args)
        now = store.newest_message_time()
        assert now is not None
        reply = handle(cmd, CommandContext(store=store, now=now))
    finally:
        store.close()
    assert reply.text
    return reply.text


def test_mood_here_and_everywhere(db: Path) -> None:
    text = ask(db, "/mood BTC")
    assert "here — BTC in test:" in text and "all sources — BTC:" in text
    assert "Fear" in text  # the synthetic stream ends in a day of panic
    assert "/100" in text and "msgs" in text


def test_a_new_community_is_collecting(db: Path) -> None:
    assert "collecting" in ask(db, "/mood", community="brand-new-group").splitlines()[1]


def test_why_quotes_the_drivers_without_authors(db: Path) -> None:
    text = ask(db, "/why")
    assert "Moved most by:" in text and "“" in text
    assert "user" not in text  # authors are never shown


def test_fear_trending_price_levels(db: Path) -> None:
    fear = ask(db, "/fear")
    # Four stored BTC days are not a year of history: the composite says what it needs.
    assert "composite unavailable: needs a year of BTC daily candles" in fear
    assert "Social mood (all sources):" in fear and "sentiment" in fear
    assert "BTC" in ask(db, "/trending") or "Nothing is trending" in ask(db, "/trending")
    price = ask(db, "/price BTC")
    # The bar of the day being asked about has not closed yet: the newest closed one answers.
    assert price.startswith("BTC $19,500 (1d close, 2022-06-03 00:00 UTC), -2.5% in 24h")
    assert "\nMood " in price
    assert "No stored prices for ETH" in ask(db, "/price ETH")
    levels = ask(db, "/levels BTC")
    assert levels.startswith("BTC $19,500 — levels as of 2022-06-03")
    assert "Resistance $20,200 (3.6% away" in levels and "30-day high" in levels
    assert "Support $19,000 (2.6% away, strength 0.20): round number" in levels


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/frobnicate", "Unknown command /frobnicate"),
        ("/mood BTC ETH", "one asset at most"),
        ("/mood BTC 2w", "'2w' is not one of"),
        ("/price", "name an asset"),
        ("/mood <script>", "is not an asset symbol"),
        ("/fear BTC ETH", "one asset at most"),
        ("/corr BTC", "name two assets"),
        ("/corr BTC btc", "name two different assets"),
    ],
)
def test_bad_input_gets_a_usage_line(db: Path, text: str, expected: str) -> None:
    assert expected in ask(db, text)


def test_ask_cli_writes_a_chart(db: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "chart.png"
    assert main(["--db", str(db), "ask", "/chart BTC 7d", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "chart written to" in printed
    assert png_size(out.read_bytes()) == (1200, 700)


def test_ask_cli_without_a_database(tmp_path: Path, capsys) -> None:
    assert main(["--db", str(tmp_path / "none.db"), "ask", "/mood"]) == 2
    assert "run `moodring demo` first" in capsys.readouterr().err


def test_ask_at_a_time_in_the_past(db: Path, capsys) -> None:
    at = (START + timedelta(days=1)).isoformat()
    argv = ["--db", str(db), "ask", "/mood", "--at", at, "--community", "test"]
    assert main([*argv, "--platform", "replay"]) == 0
    assert (START + timedelta(days=1)).strftime("%Y-%m-%d %H:%M") in capsys.readouterr().out


def test_ask_cli_names_its_mistakes(db: Path, tmp_path: Path, capsys) -> None:
    """A community without its platform, or a chart to a folder that is not there, is a
    clear one-line error (exit 2), not an answer for another place or a traceback."""
    assert main(["--db", str(db), "ask", "/summary", "--community", "test"]) == 2
    assert "give --community and --platform together" in capsys.readouterr().err
    missing = tmp_path / "no-such-dir" / "x.png"
    assert main(["--db", str(db), "ask", "/chart BTC 7d", "--out", str(missing)]) == 2
    assert "--out: cannot write the chart to" in capsys.readouterr().err
    assert main(["--db", str(db), "ask", "/mood BTC", "--out", str(tmp_path / "m.png")]) == 0
    assert "--out ignored: this reply has no chart" in capsys.readouterr().err
    assert main(["--db", str(db), "eval", "--suite", str(tmp_path / "mine.tsv")]) == 2
    assert "eval --suite runs the bundled behaviour suite" in capsys.readouterr().err


def test_summary_is_for_moderators_only(db: Path) -> None:
    store = Store(db)
    try:
        now = store.newest_message_time()
        assert now is not None
        ctx = CommandContext(store=store, now=now)
        member = Command("replay", "test", "c", "u", "summary", ("24h",))
        assert "moderators only" in handle(member, ctx).text
        admin = Command("replay", "test", "c", "u", "summary", ("24h",), frozenset({"admin"}))
        text = handle(admin, ctx).text
    finally:
        store.close()
    assert text.startswith("Summary of the last 24h")
    assert "most bearish:" in text and "talked about:" in text and "spam" in text


def test_daily_digest_for_moderators(db: Path, tmp_path: Path) -> None:
    import asyncio

    from bot.chat.digest import send_due_digests

    copy = tmp_path / "digest.db"
    copy_database(db, copy)
    store = Store(copy)
    now = store.newest_message_time()
    assert now is not None
    ctx = CommandContext(store=store, now=now)
    member = Command("replay", "test", "c", "7", "digest", ("8",))
    assert "moderators only" in handle(member, ctx).text
    admin = Command(
        "replay", "test", "c", "7", "digest", ("8", "Europe/Berlin"), frozenset({"admin"})
    )
    assert "at 08:00 Europe/Berlin" in handle(admin, ctx).text
    assert (
        "daily digest of test at 08:00"
        in handle(Command("replay", "test", "c", "7", "alerts"), ctx).text
    )

    async def still_a_moderator(cmd: Command) -> frozenset[str]:
        return frozenset({"admin"})

    sink = RecordingSink()
    sinks, roles = {"replay": sink}, {"replay": still_a_moderator}
    day = now.replace(hour=5, minute=0)  # 07:00 in Berlin (summer): not yet
    assert asyncio.run(send_due_digests(store, sinks, day, roles)) == 0
    later = now.replace(hour=7, minute=0)  # 09:00 in Berlin: due
    assert asyncio.run(send_due_digests(store, sinks, later, roles)) == 1
    assert asyncio.run(send_due_digests(store, sinks, later, roles)) == 0  # once a day
    [reply] = sink.sent
    assert reply.target == "7" and reply.text.startswith("Daily digest for test")
    assert "Summary of the last 24h" in reply.text
    off = Command("replay", "test", "c", "7", "digest", ("off",), frozenset({"admin"}))
    assert handle(off, ctx).text == "Daily digest off."
    store.close()


def test_summary_breaks_spam_down_by_reason(db: Path, tmp_path: Path) -> None:

    copy = tmp_path / "spam.db"
    copy_database(db, copy)
    store = Store(copy)
    try:
        now = store.newest_message_time()
        assert now is not None
        with store.transaction() as tx:
            keys = tx.execute(
                "SELECT platform, channel, message_id FROM messages ORDER BY created_at DESC"
                " LIMIT 5"
            ).fetchall()
            for i, key in enumerate(keys):
                reason = "coordinated" if i < 3 else "link_only"
                tx.execute(
                    "UPDATE messages SET spam_reason = ? WHERE platform = ? AND channel = ?"
                    " AND message_id = ?",
                    [reason, *key],
                )
        admin = Command("replay", "test", "c", "u", "summary", ("24h",), frozenset({"admin"}))
        text = handle(admin, CommandContext(store=store, now=now)).text
    finally:
        store.close()
    assert "• spam by reason: 3 coordinated, 2 link only" in text


NOSUCH = (
    "I don't know NOSUCH: no message has mentioned it and there are no prices for it."
    " Known assets: BTC, ETH, GLD, IGV, QQQ, SPY."
)


@pytest.mark.parametrize(
    "text",
    [
        "/mood NOSUCH",
        "/mood nosuch 7d",
        "/why NOSUCH",
        "/fear NOSUCH",
        "/chart NOSUCH 30d",
        "/price $NOSUCH",
        "/levels NOSUCH",
        "/corr BTC NOSUCH",
        "/subscribe NOSUCH swing",
    ],
)
def test_an_asset_nobody_has_seen_is_named_with_the_known_ones(db: Path, text: str) -> None:
    # Messages mention BTC and ETH (BTC more often); GLD, IGV, QQQ and SPY are bundled closes.
    assert ask(db, text) == NOSUCH


def test_unknown_asset_and_bad_input_are_not_ordinary_answers(db: Path) -> None:
    store = Store(db)
    try:
        now = store.newest_message_time()
        assert now is not None
        ctx = CommandContext(store=store, now=now)

        def problem(name: str, *args: str) -> str:
            return answer(Command("replay", "test", "c", "u", name, args), ctx).problem

        assert problem("mood", "NOSUCH") == "unknown_asset"
        assert problem("mood", "BTC", "ETH") == "usage"
        assert problem("frobnicate") == "unknown_command"
        assert problem("summary") == "moderators_only"
        assert problem("mood", "BTC") == ""
        # Nothing was subscribed for the unknown asset.
        assert "No subscriptions" in handle(Command("replay", "test", "c", "u", "alerts"), ctx).text
    finally:
        store.close()


def test_aliases_name_the_same_asset(db: Path) -> None:
    btc = ask(db, "/mood BTC")
    assert ask(db, "/mood bitcoin") == btc and ask(db, "/mood $XBT.X") == btc
    assert ask(db, "/price sats").startswith("BTC $19,500 (1d close")
    assert ask(db, "/mood ether") == ask(db, "/mood eth")


def test_a_known_asset_with_few_messages_is_collecting(db: Path, tmp_path: Path) -> None:

    copy = tmp_path / "few.db"
    copy_database(db, copy)
    store = Store(copy)
    try:
        now = store.newest_message_time()
        assert now is not None
        msgs = [
            Message("replay", "test", "c", f"p{i}", f"a{i}", "$PEPE up", now - timedelta(hours=i))
            for i in range(1, 4)
        ]
        store.add_messages([StoredMessage(m, m.text, ("PEPE",), None, None) for m in msgs], now)
        score = Score(0.1, 0.2, 0.7, "positive", "test")
        store.save_scores([((m.platform, m.channel, m.message_id), score) for m in msgs], now)
        # Candles alone make an asset known, too.
        store.add_candles([Candle("ZZZ", "1d", now - timedelta(days=2), 1, 1, 1, 1, 0)], "t")
        ctx = CommandContext(store=store, now=now)
        mood = handle(Command("replay", "test", "c", "u", "mood", ("PEPE",)), ctx).text
        price = handle(Command("replay", "test", "c", "u", "price", ("zzz",)), ctx).text
        known = known_assets(store)
    finally:
        store.close()
    assert "• all sources — PEPE: collecting (3 msgs in 24h)" in mood
    assert price.startswith("ZZZ $1.00 (1d close")
    assert known[:2] == ["BTC", "ETH"] and known.index("PEPE") < known.index("GLD")
    assert "ZZZ" in known


def test_the_known_list_stays_short() -> None:
    text = unknown_asset_text("X", [f"A{i:02d}" for i in range(13)], 10)
    listed = ", ".join(f"A{i:02d}" for i in range(10))
    assert text.endswith(f"Known assets: {listed} and 3 more.")


def test_chart_prices_are_closes_known_at_the_time(db: Path) -> None:
    """A daily candle is stored under its opening midnight; its close exists only at the
    next one. The chart plots each close at that time and never one from the future."""
    from bot.chat.member import _closes

    store = Store(db)
    try:
        now = START + timedelta(days=2, hours=12)
        closes = _closes(CommandContext(store=store, now=now), "BTC")
    finally:
        store.close()
    # Candles open at START + 0..3 days, closing at 20,000, 19,500, 19,000, 18,500.
    assert closes == [(START + timedelta(days=1), 20000.0), (START + timedelta(days=2), 19500.0)]


@pytest.mark.parametrize("hours", [36, 71])
def test_trending_lists_only_assets_above_their_usual(db: Path, hours: int) -> None:
    """/trending calls an asset trending only when its mentions rose; when none did, it says
    so and lists the most mentioned instead."""
    import re

    from bot.chat.member import trending_lines

    store = Store(db)
    try:
        lines = trending_lines(CommandContext(store=store, now=START + timedelta(hours=hours)))
    finally:
        store.close()
    ratios = [float(r) for r in re.findall(r"mentions, ([0-9.]+)×", "\n".join(lines))]
    assert ratios, lines
    if hours == 71:  # the panic day: 24 posts an hour against 10
        assert lines[0].startswith("Trending") and all(r > 1.0 for r in ratios)
    else:  # the calm days: mentions as usual
        assert lines[0].startswith("Nothing is mentioned more than usual"), lines
        assert all(r <= 1.0 for r in ratios), lines


def test_one_message_is_one_msg() -> None:
    from datetime import UTC, datetime

    from bot.render import reading_text
    from bot.types import MoodReading, Scope

    at = datetime(2022, 7, 1, tzinfo=UTC)
    one = MoodReading(Scope(asset="BTC"), "1h", at, None, "collecting", sample_size=1)
    assert reading_text(one) == "collecting (1 msg in 1h)"
