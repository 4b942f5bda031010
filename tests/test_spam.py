"""Tests for bot.spam: spam marking over a realistic, time-ordered stream."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from bot.spam import SpamConfig, SpamMarker
from connectors.types import Message
from nlp.normalize import normalize

T0 = datetime(2022, 6, 25, 12, 0, tzinfo=UTC)


def msg(n: int, author: str, text: str, at: datetime, platform: str = "telegram") -> Message:
    return Message(
        platform=platform,
        community="cryptochat",
        channel="general",
        message_id=str(n),
        author=author,
        text=text,
        created_at=at,
    )


def run(marker: SpamMarker, stream: list[Message]) -> list[str | None]:
    return [marker.check(m, normalize(m.text)) for m in stream]


CLEAN = [
    "gm everyone, how are we feeling about $BTC today?",
    "honestly a bit nervous, funding is way too high on the perps",
    "longs got rekt last night lol",
    "I'm giving up on ETH for now, the merge delay killed my thesis",
    "buy the dip",
    "buy the dip",  # a second person saying it is talk, not spam
    "free fall on $SOL, but I'm still holding my bags",
    "anyone watching the CPI print tomorrow?",
    "yeah, expecting volatility around 8:30 ET",
    "@anna agreed, I'll wait for the close before adding",
]

SHILL = (
    "Hey I joined a network called SurveyJ and earned $1,850 today! You get paid for testing "
    "out new free apps. Sign up with my link https://t.co/abc"
)


def test_clean_conversation_has_no_marks() -> None:
    marker = SpamMarker(SpamConfig())
    authors = ["alice", "bob", "carol", "dave", "erin", "frank", "alice", "bob", "carol", "dave"]
    stream = [
        msg(i, authors[i], text, T0 + timedelta(minutes=3 * i)) for i, text in enumerate(CLEAN)
    ]
    assert run(marker, stream) == [None] * len(CLEAN)


def test_repeated_shill_from_different_authors() -> None:
    marker = SpamMarker(SpamConfig())
    first = msg(1, "bot1", SHILL, T0)
    # Same shill with another amount and link: the same canonical text.
    again = msg(
        2, "bot2", SHILL.replace("1,850", "2,384").replace("abc", "xyz"), T0 + timedelta(minutes=5)
    )
    tweaked = msg(
        3,
        "bot3",
        SHILL.replace("Hey I joined", "Hi guys I joined"),
        T0 + timedelta(minutes=9),
    )
    marks = run(marker, [first, again, tweaked])
    assert marks == ["referral", "duplicate", "near_duplicate"]


def test_first_occurrence_is_clean_and_duplicates_expire() -> None:
    marker = SpamMarker(SpamConfig(dup_window_s=3600))
    text = "This project has a very bright future, too perfect to be true, great team"
    marks = run(
        marker,
        [
            msg(1, "a", text, T0),
            msg(2, "b", text, T0 + timedelta(minutes=30)),
            msg(3, "c", text, T0 + timedelta(minutes=95)),  # last seen 65 minutes ago
            msg(4, "d", text, T0 + timedelta(minutes=100)),
        ],
    )
    assert marks == [None, "duplicate", None, "duplicate"]


def test_short_lines_are_duplicates_only_for_their_own_author() -> None:
    marker = SpamMarker(SpamConfig())
    marks = run(
        marker,
        [
            msg(1, "a", "to the moon", T0),
            msg(2, "b", "To the moon!!", T0 + timedelta(minutes=1)),
            msg(3, "a", "to the moon 🚀", T0 + timedelta(minutes=2)),
        ],
    )
    assert marks == [None, None, "duplicate"]


def test_author_posting_twenty_times_in_an_hour() -> None:
    config = SpamConfig(author_cap=8)
    marker = SpamMarker(config)
    stream = [
        msg(
            i,
            "flooder",
            f"take number {i}: {word} looks strong here",
            T0 + timedelta(minutes=3 * i),
        )
        for i, word in enumerate(
            [
                "alpha",
                "beta",
                "gamma",
                "delta",
                "epsilon",
                "zeta",
                "eta",
                "theta",
                "iota",
                "kappa",
                "lambda",
                "mu",
                "nu",
                "xi",
                "omicron",
                "pi",
                "rho",
                "sigma",
                "tau",
                "upsilon",
            ]
        )
    ]
    marks = run(marker, stream)
    assert marks[:8] == [None] * 8
    assert set(marks[8:]) <= {"author_cap", "near_duplicate"}
    assert marks.count("author_cap") >= 10
    # Another author in the same hour is untouched, and the flooder is clean a while later.
    assert (
        marker.check(
            msg(100, "calm", "fine day for a walk", T0 + timedelta(minutes=60)),
            "fine day for a walk",
        )
        is None
    )
    later = msg(101, "flooder", "back after a long break, what did I miss", T0 + timedelta(hours=3))
    assert marker.check(later, later.text) is None


def test_authors_are_counted_per_platform() -> None:
    marker = SpamMarker(SpamConfig(author_cap=2))
    stream = [
        msg(i, "sam", f"message {w} for you", T0 + timedelta(minutes=i), platform=p)
        for i, (w, p) in enumerate(
            [("one", "telegram"), ("two", "discord"), ("three", "telegram"), ("four", "discord")]
        )
    ]
    assert run(marker, stream) == [None, None, None, None]


def test_link_only_and_shill_posts() -> None:
    marker = SpamMarker(SpamConfig())
    stream = [
        msg(1, "a", "https://t.co/abcdef", T0),
        msg(2, "b", "$ETH.X 🚀🚀", T0 + timedelta(seconds=10)),
        msg(3, "c", "@whale @shark https://bit.ly/x", T0 + timedelta(seconds=20)),
        msg(
            4,
            "d",
            "#SPOT #BTC Join Our VIP SIGNALS channel NOW, PM ME!",
            T0 + timedelta(seconds=30),
        ),
        msg(5, "e", "$ETH.X https://t.me/shibshiberc 💎💎", T0 + timedelta(seconds=40)),
    ]
    assert run(marker, stream) == [
        "link_only",
        "link_only",
        "link_only",
        "pump_group",
        "invite_link",
    ]


def test_same_stream_same_marks_and_warm_restores_state() -> None:
    stream = [msg(1, "bot1", SHILL, T0)] + [
        msg(10 + i, f"user{i}", text, T0 + timedelta(minutes=i + 1)) for i, text in enumerate(CLEAN)
    ]
    repeat = msg(99, "bot9", SHILL, T0 + timedelta(minutes=30))
    a, b = SpamMarker(SpamConfig()), SpamMarker(SpamConfig())
    assert run(a, stream) == run(b, stream)

    restarted = SpamMarker(SpamConfig())
    restarted.warm((m, normalize(m.text)) for m in stream)
    assert restarted.check(repeat, normalize(repeat.text)) == "duplicate"
    assert SpamMarker(SpamConfig()).check(repeat, normalize(repeat.text)) == "referral"


def test_state_stays_bounded_and_fast() -> None:
    config = SpamConfig(max_kept=500)
    marker = SpamMarker(config)
    words = [
        "moon",
        "dip",
        "pump",
        "dump",
        "hodl",
        "rekt",
        "wagmi",
        "bags",
        "chart",
        "whale",
        "long",
        "short",
    ]
    start = time.perf_counter()
    marks = []
    for i in range(6000):
        # Distinct texts built from shared vocabulary: many shingles collide, few pairs match.
        text = " ".join(words[(i * k + i // 7) % len(words)] for k in range(1, 9)) + f" n{i:x}"
        m = msg(i, f"user{i % 400}", text, T0 + timedelta(seconds=2 * i))
        marks.append(marker.check(m, text))
    elapsed = time.perf_counter() - start
    assert elapsed < 5.0
    assert len(marker._seen) <= 500
    assert len(marker._entries) <= 500
    assert all(len(bucket) <= config.bucket_cap for bucket in marker._buckets.values())
    # Authors idle for longer than the window are forgotten.
    assert len(marker._authors) <= 400
    late = msg(10_000, "late", "a fresh voice", T0 + timedelta(days=2))
    marker.check(late, late.text)
    assert len(marker._authors) == 1
    assert len(marker._seen) <= 1
