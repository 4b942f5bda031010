"""Fuzzing every chat command in the registry with generated arguments and contexts (#14).

Each command of ``COMMANDS`` (a new one is covered as soon as it is registered) is answered by
the real dispatcher over a real store seeded with scored messages, hourly readings, the bundled
BTC candles, and what a long-running bot gathers (hundreds of cashtags, a member subscribed to
each, hundreds of manual levels). Askers are members, moderators and the operator, in read
groups, other groups and DMs, on Telegram, Discord, the console and the CLI. Properties, for
any arguments and any asker:

1. no exception escapes ``answer``;
2. the reply is a str with something to send (a platform drops a blank message) and is UTF-8
   text (no half of a UTF-16 pair, which the platforms' JSON can carry in);
3. it fits the platform: at most ``REPLY_LIMIT`` characters, without the dispatcher having to
   cut it; split as its sink splits it, every part is within the platform's limit (Telegram
   4,096 UTF-16 units, a photo caption 1,024; Discord 2,000 characters), at most
   ``MAX_PARTS`` messages (one command, no flood);
4. an image is PNG bytes;
5. no more than ``ECHO_LIMIT`` characters of any argument come back verbatim (a 5,000-character
   argument is not reflected into the chat).

Also for any sequence of commands on one store, and for unknown commands. And ``moodring ask``
with any command text exits 0 or 2, never with a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import random
import re
import string
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from bot.app.cli import main
from bot.chat.charts import PNG_SIGNATURE, png_size
from bot.chat.commands import COMMANDS, Answer, CommandContext, answer
from bot.chat.inbox import OPERATOR, with_operator
from bot.market.candles import load_bundled
from bot.pipeline.config import PipelineConfig
from bot.pipeline.ticks import IndexEngine
from bot.prefs.subscriptions import Subscription
from bot.render import CUT_NOTE, REPLY_LIMIT, fit_reply
from bot.store import Store, StoredMessage
from connectors import discord, telegram
from connectors.text import split_once, utf16_units
from connectors.types import Command, Message, Reply
from nlp.types import Score
from tests.backend_mode import copy_database
from tests.fuzz_checks import fuzz

#: "Now" for every command: the bundled BTC closes reach 2026-07-22.
NOW = datetime(2026, 7, 20, 12, tzinfo=UTC)
TG_GROUP = "-100111"
DC_SERVER = "4567"
OTHER_GROUP = "-100999"
#: The allow-list of the contexts that have one.
READ = frozenset({f"telegram:{TG_GROUP}", f"discord:{DC_SERVER}"})
OPERATORS = frozenset({"telegram:42", "discord:42"})
#: How much of one argument a reply may repeat verbatim.
ECHO_LIMIT = 100
#: One command answers with at most this many messages once its sink has split the text.
MAX_PARTS = 3
#: Cashtags, subscriptions and manual levels a long-running bot has gathered.
BUSY = 300
#: Enough examples per command to find the shallow bugs in well under a minute in all.
EXAMPLES = 50

FUZZ = fuzz(EXAMPLES)


# ---------------------------------------------------------------------- the seeded store


def _seed(store: Store) -> None:
    """Three days of scored posts in two read groups and a replayed public feed, the readings
    the index ticks from them, BTC's bundled daily closes, a subscription and a level."""
    rng = random.Random(14)
    places = [
        ("telegram", TG_GROUP, "tg-chat"),
        ("discord", DC_SERVER, "dc-chan"),
        ("replay", "feed", "feed"),
    ]
    texts = [
        "$BTC to the moon, bullish breakout",
        "ETH dump incoming, bearish and scared",
        "bitcoin chart looks flat today",
        "\u202eevil rtl\u202c $BTC " + "long post " * 60,  # long and bidi: quoted, cut
        "$ETH gains gains gains 🚀🚀",
    ]
    items = []
    scores = []
    t = NOW - timedelta(days=3)
    n = 0
    while t < NOW:
        for platform, community, channel in places:
            for _ in range(3):
                n += 1
                text = rng.choice(texts)
                msg = Message(
                    platform,
                    community,
                    channel,
                    str(n),
                    f"{rng.randrange(1, 30)}",
                    text,
                    t + timedelta(minutes=rng.randrange(60)),
                    public=platform == "replay",
                    community_title="Moon \u202eboys\u202c\n/fake line",
                )
                assets = tuple(a for a in ("BTC", "ETH") if a.lower() in text.lower())
                items.append(StoredMessage(msg, text.lower(), assets or ("BTC",), None, None))
                neg = rng.random()
                pos = rng.random() * (1 - neg)
                scores.append(
                    ((platform, channel, str(n)), Score(neg, 1 - neg - pos, pos, "neutral", "t"))
                )
        t += timedelta(hours=1)
    store.add_messages(items, NOW)
    store.save_scores(scores, NOW)
    engine = IndexEngine(store, PipelineConfig())
    engine.load(NOW)
    engine.advance(NOW, outbox=False)
    load_bundled(store, ["BTC"])
    store.set_community_title("telegram", TG_GROUP, "Moon boys", NOW)
    store.subscribe(
        Subscription(
            platform="telegram",
            community=TG_GROUP,
            target="7",
            user="7",
            asset="BTC",
            kinds=("extreme",),
        ),
        NOW,
    )
    store.add_manual_level("telegram", TG_GROUP, "BTC", 60_000.0, "7", NOW)
    _seed_a_busy_year(store)


def _seed_a_busy_year(store: Store) -> None:
    """What a bot that has run for a while holds: hundreds of cashtags mentioned once in the
    public feed, a member ("1001") who subscribed to each, and a Discord server whose
    moderators added hundreds of BTC levels. Replies listing these must still fit."""
    symbols = [f"Q{i:03d}" for i in range(BUSY)]
    at = NOW - timedelta(days=20)
    items = [
        StoredMessage(
            Message("replay", "feed", "feed", f"busy-{s}", "99", f"${s} listed", at),
            f"${s.lower()} listed",
            (s,),
            None,
            None,
        )
        for s in symbols
    ]
    store.add_messages(items, at)
    for i, symbol in enumerate(symbols):
        sub = Subscription("discord", DC_SERVER, "user:1001", "1001", symbol, ("extreme",))
        store.subscribe(sub, at)
        store.add_manual_level("discord", DC_SERVER, "BTC", 40_000.0 + 100 * i, "1001", at)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fuzz-commands") / "seeded.db"
    store = Store(path)
    try:
        _seed(store)
    finally:
        store.close()
    return path


@contextlib.contextmanager
def fresh(seeded: Path) -> Iterator[Store]:
    """A copy of the seeded store for one example (a few milliseconds), so every example
    meets the same state and a failure shrinks and replays."""
    copy = seeded.with_name("example.db")
    copy_database(seeded, copy)
    store = Store(copy)
    try:
        yield store
    finally:
        store.close()


# ---------------------------------------------------------------------- what users type


def _usage_words() -> list[str]:
    """Every word the commands' usage lines, notes and slash choices mention."""
    words: set[str] = set()
    for spec in COMMANDS:
        for line in (spec.usage, spec.syntax, spec.note, *(p.description for p in spec.params)):
            words.update(w.strip("[]()|,.'") for w in line.replace("|", " ").split())
        for param in spec.params:
            words.update(param.choices)
    return sorted(w for w in words if w and not w.startswith("/"))


ASSETS = [
    "BTC", "btc", "$BTC", "$BTC.X", "bitcoin", "xbt", "ETH", "eth", "$eth", "IGV", "QQQ",
    "SPY", "GLD", "DOGE", "NOSUCH", "$", "$$BTC", "BTC.X.X", "Ⅻ", "ＢＴＣ",
]  # fmt: skip
NUMBERS = [
    "0", "-1", "23", "24", "6", "60k", "$60,000", "0.52", "1e9", "nan", "inf", "-0", "²", "٣",
    "１２", "1_000", "99999999999999999999999999", "0x10", "١٢:٣٠", "60K", "k", ".5",
]  # fmt: skip
SPANS = ["1h", "24h", "7d", "30d", "90d", "2w", "0h", "999999999999d", "24H", "7 d"]
ZONES = [
    "UTC", "Europe/Berlin", "europe/berlin", "Europe", "../../etc/passwd", "Etc/GMT+5",
    "America/Argentina/Buenos_Aires", "A" * 300, "Europe/Berlin/", "/etc/localtime", "\x00",
]  # fmt: skip
QUIET = ["22-7", "0-0", "23-23", "7-22", "25-3", "-1-5", "22–7", "22-", "-7", "22-7-1"]
MENTIONS = ["<@123>", "<@!123>", "<@" + "9" * 30 + ">", "<@&123>", "<#123>", "@everyone",
            "@here", "@somebody", "me", "ME", "42"]  # fmt: skip
ODD_CHARS = (
    "\x00\x01\x07\x1b\x7f\u200b\u200e\u200f\u202a\u202e\u2066\u2069\ufeff\ufffd"
    "🚀💀👍🏽🇩🇪\U0010ffff\n\r\t "
    "\ud800\udfff"  # half a UTF-16 pair: JSON can carry one ("\\ud800"), UTF-8 cannot
)

odd_text = st.text(alphabet=st.sampled_from(ODD_CHARS + string.printable), max_size=30)
long_text = st.builds(
    lambda unit, n: (unit * n)[:5000],
    st.text(min_size=1, max_size=12),
    st.integers(101, 5000),
)
numbers = st.one_of(
    st.sampled_from(NUMBERS),
    st.integers(-(10**30), 10**30).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.builds("{}-{}".format, st.integers(-30, 30), st.integers(-30, 30)),
)
argument = st.one_of(
    st.sampled_from(_usage_words()),
    st.sampled_from(ASSETS),
    numbers,
    st.sampled_from(SPANS + ZONES + QUIET + MENTIONS + [""]),
    odd_text,
    long_text,
)
arguments = st.lists(argument, min_size=1, max_size=4).map(tuple)


def _examples(name: str) -> list[tuple[str, ...]]:
    """Well-formed argument tuples of ``/name``, read off its declaration: the calls its usage,
    syntax and note show, the changes its options quote, and one word per option in order."""
    spec = COMMANDS.get(name)
    assert spec is not None
    found: set[tuple[str, ...]] = {()}
    call = re.compile(rf"/{name}((?: [A-Za-z0-9$:<@!>._+/-]+)*)")
    for line in (spec.usage, spec.syntax, spec.note):
        found.update(tuple(m.split()) for m in call.findall(line))
    words: list[str] = []
    for param in spec.params:
        found.update(tuple(q.split()) for q in re.findall(r"'([^']+)'", param.description))
        # "e.g. BTC", else the first of a list such as "extreme, swing, hype".
        word = re.findall(r"(?:e\.g\. |^)([^\s,;()']+)", param.description)
        words.append(param.choices[0] if param.choices else word[-1] if word else "BTC")
        found.add(tuple(words))
    return sorted(found, key=lambda args: (-len(args), args))  # the fullest call first


@st.composite
def command_args(draw: st.DrawFn, name: str) -> tuple[str, ...]:
    """Arguments of ``/name``: a well-formed call with up to two arguments replaced, added or
    dropped, or any arguments at all."""
    # (Hypothesis starts from the first choice of each draw: make it the well-formed call.)
    if draw(st.integers(0, 3)) == 3:
        return draw(arguments)
    args = list(draw(st.sampled_from(_examples(name))))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(args)))
        edit = draw(st.sampled_from(["replace", "insert", "drop"]))
        if edit == "insert" or at == len(args):
            args.insert(at, draw(argument))
        elif edit == "replace":
            args[at] = draw(argument)
        else:
            del args[at]
    return tuple(args)


@st.composite
def commands(draw: st.DrawFn, name: str) -> tuple[Command, frozenset[str] | None]:
    """``/name`` with generated arguments, from a generated asker and place, and the
    allow-list of communities that applies (None: the console and ``moodring ask``)."""
    platform = draw(st.sampled_from(["telegram", "discord", "console", "cli"]))
    private = draw(st.integers(0, 3)) == 3
    # Mostly a group that is read: one that is not only ever gets one line.
    outside = draw(st.integers(0, 4)) == 4
    groups = {"telegram": (TG_GROUP, OTHER_GROUP), "discord": (DC_SERVER, "999")}
    community = groups.get(platform, ("console", "console"))[outside]
    user = draw(st.sampled_from(["7", "42", "1001"]))
    channel = user if private else f"{community}-chan"
    roles = draw(st.sampled_from([frozenset({"admin"}), frozenset(), frozenset({OPERATOR})]))
    cmd = Command(
        platform=platform,
        community=community,
        channel=channel,
        user=user,
        name=name,
        args=draw(command_args(name)),
        roles=roles,
        is_private=private,
        reply_to_author=draw(st.sampled_from([None, "7", "1001", ""])),
    )
    if platform in ("telegram", "discord"):
        # The chat front ends decide the operator role themselves, whatever came in.
        return with_operator(cmd, OPERATORS), READ
    return cmd, draw(st.sampled_from([None, READ]))


# ---------------------------------------------------------------------- the properties


def parts(text: str, platform: str, image: bool) -> list[str]:
    """The messages the platform's sink sends for ``text`` (as ``TelegramSink`` and the
    Discord connector split it)."""
    if platform == "discord":
        return discord.split_text(text)
    if image:
        caption, rest = split_once(text, telegram.CAPTION_LIMIT, utf16_units)
        assert sum(map(utf16_units, caption)) <= telegram.CAPTION_LIMIT
        return [caption, *telegram.split_text(rest)]
    return telegram.split_text(text)


def check_reply(cmd: Command, result: Answer) -> None:
    """Properties 2–5 of the module docstring."""
    reply = result.reply
    assert isinstance(reply.text, str)
    assert reply.text.strip(), f"/{cmd.name} {cmd.args!r}: a blank reply"
    reply.text.encode()  # the platforms take UTF-8 JSON: no lone surrogate in a reply
    assert len(reply.text) <= REPLY_LIMIT
    # Handlers list less themselves: the dispatcher's backstop is for what nobody foresaw.
    assert not reply.text.endswith(CUT_NOTE), f"/{cmd.name} needed cutting"
    for platform, limit, units in (
        ("telegram", telegram.TEXT_LIMIT, utf16_units),
        ("discord", discord.TEXT_LIMIT, lambda c: 1),
    ):
        sent = parts(reply.text, platform, reply.image is not None)
        assert 1 <= len(sent) <= MAX_PARTS, f"/{cmd.name}: {len(sent)} {platform} messages"
        for part in sent:
            assert sum(map(units, part)) <= limit
    if reply.image is not None:
        assert reply.image.startswith(PNG_SIGNATURE)
        assert png_size(reply.image)[0] > 0
    for arg in cmd.args:
        for i in range(len(arg) - ECHO_LIMIT):
            window = arg[i : i + ECHO_LIMIT + 1]
            assert window not in reply.text, f"/{cmd.name} echoes {len(arg)} chars of input"


def ask(store: Store, cmd: Command, communities: frozenset[str] | None) -> Answer:
    ctx = CommandContext(store=store, now=NOW, communities=communities)
    return answer(cmd, ctx)  # property 1: nothing escapes


# One test per command, so each gets its own examples (and a failure names the command).
@pytest.mark.parametrize("name", COMMANDS.names())
@FUZZ
@given(data=st.data())
def test_every_command_answers_any_arguments_within_the_platform_limits(
    seeded: Path, name: str, data: st.DataObject
) -> None:
    cmd, communities = data.draw(commands(name))
    with fresh(seeded) as store:
        check_reply(cmd, ask(store, cmd, communities))


@settings(FUZZ, max_examples=EXAMPLES)
@given(data=st.data(), names=st.lists(st.sampled_from(COMMANDS.names()), min_size=2, max_size=6))
def test_any_sequence_of_commands_answers_within_the_limits(
    seeded: Path, data: st.DataObject, names: list[str]
) -> None:
    """What one command leaves (subscriptions, levels, settings, erasures) is met by the
    next: each still answers within the limits."""
    with fresh(seeded) as store:
        for name in names:
            cmd, communities = data.draw(commands(name))
            check_reply(cmd, ask(store, cmd, communities))


@FUZZ
@given(
    name=st.one_of(
        st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=40),
        odd_text,
        long_text,
    ),
    args=arguments,
)
@example(name="\ud800", args=("1h",))  # found: echoed into a reply no platform can send
def test_an_unknown_command_gets_the_list_not_an_echo(
    seeded: Path, name: str, args: tuple[str, ...]
) -> None:
    cmd = Command("telegram", TG_GROUP, "c", "7", name, args)
    with fresh(seeded) as store:
        result = ask(store, cmd, READ)
    check_reply(cmd, result)
    if COMMANDS.get(name) is None:
        assert result.problem == "unknown_command"


# ---------------------------------------------------------------------- regressions


def test_alerts_lists_twenty_subscriptions_and_counts_the_rest(seeded: Path) -> None:
    """Found by the fuzzer: a member subscribed to each of 300 cashtags got a 9,900-character
    /alerts, five Discord messages into the group."""
    cmd = Command("discord", DC_SERVER, "chan", "1001", "alerts")
    with fresh(seeded) as store:
        text = ask(store, cmd, READ).reply.text
    assert text.splitlines()[1:3] == [
        "• Q000: extreme (up to 10 a day)",
        "• Q001: extreme (up to 10 a day)",
    ]
    assert text.endswith(f"• Q019: extreme (up to 10 a day)\n… and {BUSY - 20} more")
    assert len(discord.split_text(text)) == 1


def test_levels_names_the_manual_levels_nearest_the_price(seeded: Path) -> None:
    """Found by the fuzzer: /levels listed every manual level of the community (hundreds)."""
    cmd = Command("discord", DC_SERVER, "chan", "7", "levels", ("BTC",))
    with fresh(seeded) as store:
        text = ask(store, cmd, READ).reply.text
    manual = text.splitlines()[-1]
    # BTC closed at $64,691: the twelve levels around it, of 300 from $40,000 to $69,900.
    assert manual == (
        "Manual levels here: $64,100, $64,200, $64,300, $64,400, $64,500, $64,600, $64,700,"
        f" $64,800, $64,900, $65,000, $65,100, $65,200 and {BUSY - 12} more"
    )


def test_a_reply_too_long_for_a_chat_is_cut_by_the_dispatcher(
    seeded: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The backstop behind the handlers' own listing limits: a reply of 10,000 characters
    (a listing nobody foresaw) goes out cut to ``REPLY_LIMIT``, and the operator is told."""
    spec = COMMANDS.get("help")
    assert spec is not None
    flood = dataclasses.replace(spec, handler=lambda cmd, ctx: Reply("• a line\n" * 1000))
    monkeypatch.setitem(COMMANDS._specs, "help", flood)
    cmd = Command("discord", DC_SERVER, "chan", "7", "help")
    with fresh(seeded) as store:
        text = ask(store, cmd, READ).reply.text
    assert len(text) <= REPLY_LIMIT and text.endswith("• a line" + CUT_NOTE)
    assert len(discord.split_text(text)) == 2
    assert "/help replied with 9000 characters: cut" in caplog.text


@fuzz(200)
@given(
    text=st.text(alphabet=st.sampled_from(ODD_CHARS + "ab"), max_size=6000),
    limit=st.integers(60, 5000),
)
def test_fit_reply_keeps_short_text_and_cuts_long_text_with_a_note(text: str, limit: int) -> None:
    fitted = fit_reply(text, limit)
    assert len(fitted) <= limit
    if len(text) <= limit:
        assert fitted == text
    else:
        assert fitted.endswith(CUT_NOTE)
        assert text.startswith(fitted.removesuffix(CUT_NOTE))


# ---------------------------------------------------------------------- moodring ask


@fuzz(25)
@given(
    text=st.one_of(
        st.builds(
            lambda name, args: " ".join((f"/{name}", *args)),
            st.sampled_from(COMMANDS.names()),
            arguments,
        ),
        odd_text,
        long_text,
    ),
    where=st.sampled_from([("cli", "cli"), ("telegram", TG_GROUP), ("discord", "x")]),
)
@example(text="", where=("cli", "cli"))
@example(text="/", where=("cli", "cli"))
def test_moodring_ask_exits_0_or_2_without_a_traceback(
    seeded: Path, tmp_path_factory: pytest.TempPathFactory, text: str, where: tuple[str, str]
) -> None:
    db = tmp_path_factory.getbasetemp() / "fuzz-ask.db"
    if not db.exists():
        copy_database(seeded, db)
    out, err = io.StringIO(), io.StringIO()
    platform, community = where
    argv = ["--db", str(db), "ask", "--platform", platform, "--community", community]
    argv += ["--out", str(db.with_name("fuzz-chart.png")), "--at", NOW.isoformat(), "--", text]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert code in (0, 2)
    assert "Traceback" not in err.getvalue()
    assert (out if code == 0 else err).getvalue().strip()
