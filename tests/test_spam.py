"""Tests for bot.mood.spam: spam marking over a realistic stream, and author weights."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from bot.mood.spam import SpamConfig, SpamMarker, author_weight
from connectors.types import Message
from nlp.normalize import normalize

T0 = datetime(2022, 6, 25, 12, 0, tzinfo=UTC)


def msg(
    n: int, author: str, text: str, at: datetime, platform: str = "telegram", **extra: object
) -> Message:
    return Message(
        platform=platform,
        community="cryptochat",
        channel="general",
        message_id=str(n),
        author=author,
        text=text,
        created_at=at,
        **extra,  # type: ignore[arg-type]
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


def test_shill_pasted_by_three_accounts_is_coordinated() -> None:
    # v1: two accounts pasting the same shill is not yet a campaign (each keeps its shill
    # reason); the third account within the window completes one.
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
    assert marks == ["referral", "referral", "coordinated"]


CAMPAIGN = "This project has a very bright future, too perfect to be true, great team behind it"


def test_coordinated_campaign_by_three_accounts_marks_the_later_ones() -> None:
    marker = SpamMarker(SpamConfig())
    stream = [
        msg(1, "acc1", CAMPAIGN, T0),
        msg(2, "acc2", CAMPAIGN.replace("great team", "Great TEAM!!"), T0 + timedelta(minutes=4)),
        msg(3, "acc3", CAMPAIGN + " 🚀", T0 + timedelta(minutes=9)),
        # A near-same wording (the last word changed) still belongs to the campaign.
        msg(4, "acc4", CAMPAIGN.replace("behind it", "behind us"), T0 + timedelta(minutes=12)),
    ]
    assert run(marker, stream) == [None, None, "coordinated", "coordinated"]


def test_two_accounts_saying_the_same_thing_is_not_a_campaign() -> None:
    marker = SpamMarker(SpamConfig())
    stream = [
        msg(1, "anna", CAMPAIGN, T0),
        msg(2, "ben", CAMPAIGN, T0 + timedelta(minutes=5)),
        msg(3, "carl", "longs got rekt again last night, funding was way too high", T0),
    ]
    assert run(marker, stream) == [None, None, None]


def test_coordinated_window_expires() -> None:
    marker = SpamMarker(SpamConfig(coordinated_window_s=1800))
    marks = run(
        marker,
        [
            msg(1, "a", CAMPAIGN, T0),
            msg(2, "b", CAMPAIGN, T0 + timedelta(minutes=20)),
            msg(3, "c", CAMPAIGN, T0 + timedelta(minutes=55)),  # only b within 30 minutes
            msg(4, "d", CAMPAIGN, T0 + timedelta(minutes=60)),  # b (40 min ago) is out; c is in
            msg(5, "e", CAMPAIGN, T0 + timedelta(minutes=70)),  # c and d within 30 minutes
        ],
    )
    assert marks == [None, None, None, None, "coordinated"]


def test_short_lines_are_never_a_campaign() -> None:
    marker = SpamMarker(SpamConfig())
    stream = [msg(i, f"user{i}", "buy the dip!", T0 + timedelta(minutes=i)) for i in range(6)]
    assert run(marker, stream) == [None] * 6


def test_author_repeating_themselves_and_expiry() -> None:
    marker = SpamMarker(SpamConfig(dup_window_s=3600))
    marks = run(
        marker,
        [
            msg(1, "a", CAMPAIGN, T0),
            msg(2, "a", CAMPAIGN.upper(), T0 + timedelta(minutes=30)),
            msg(
                3, "a", CAMPAIGN.replace("This project", "The project"), T0 + timedelta(minutes=40)
            ),
            msg(4, "b", CAMPAIGN, T0 + timedelta(minutes=45)),  # another author: talk
            msg(5, "a", CAMPAIGN, T0 + timedelta(minutes=150)),  # a's last post 110 min ago
        ],
    )
    assert marks == [None, "duplicate", "near_duplicate", None, None]


def test_unknown_authors_count_apart_and_are_not_capped() -> None:
    # Scraped tweets carry no author: each is its own account, so a repeat is not "its own
    # repeat" and twenty of them are not a flood; three copies are still a campaign.
    marker = SpamMarker(SpamConfig(author_cap=3))
    talk = [
        msg(i, "", f"take number {i}: {w} looks strong here", T0 + timedelta(minutes=i))
        for i, w in enumerate(["alpha", "beta", "gamma", "delta", "epsilon", "zeta"])
    ]
    assert run(marker, talk) == [None] * 6
    copies = [msg(10 + i, "", CAMPAIGN, T0 + timedelta(minutes=10 + i)) for i in range(3)]
    assert run(marker, copies) == [None, None, "coordinated"]


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
    repeat = msg(99, "bot1", SHILL, T0 + timedelta(minutes=30))
    a, b = SpamMarker(SpamConfig()), SpamMarker(SpamConfig())
    assert run(a, stream) == run(b, stream)

    restarted = SpamMarker(SpamConfig())
    restarted.warm((m, normalize(m.text)) for m in stream)
    assert restarted.check(repeat, normalize(repeat.text)) == "duplicate"
    assert SpamMarker(SpamConfig()).check(repeat, normalize(repeat.text)) == "referral"


def test_replaying_a_stream_with_campaigns_gives_the_same_marks() -> None:
    stream = []
    for i in range(300):
        at = T0 + timedelta(minutes=i)
        if i % 10 == 0:  # a campaign text, reworded a little per account
            text = CAMPAIGN.replace("great", ["great", "GREAT", "strong"][i % 3])
        else:
            text = f"{CLEAN[i % len(CLEAN)]} (take {i % 7})"
        stream.append(msg(i, f"user{i % 37}", text, at))
    first = run(SpamMarker(SpamConfig()), stream)
    assert first == run(SpamMarker(SpamConfig()), stream)
    assert first.count("coordinated") >= 20


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
    assert len(marker._texts) <= 500
    assert len(marker._lsh.keys) <= 500
    assert sum(len(t.authors) for t in marker._texts.values()) <= 500
    # Authors idle for longer than the window are forgotten.
    assert len(marker._authors) <= 400
    late = msg(10_000, "late", "a fresh voice", T0 + timedelta(days=2))
    marker.check(late, late.text)
    assert len(marker._authors) == 1
    assert len(marker._seen) <= 1
    assert len(marker._texts) <= 1 and len(marker._lsh.keys) == 0


def test_authors_for_the_cap_are_bounded_by_max_kept() -> None:
    marker = SpamMarker(SpamConfig(max_kept=50))
    for i in range(400):
        m = msg(i, f"drive-by{i}", f"hello number {i}", T0 + timedelta(seconds=i))
        marker.check(m, m.text)
    assert len(marker._authors) <= 50
    assert len(marker._seen) <= 50


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        SpamConfig(coordinated_authors=1)
    with pytest.raises(ValueError):
        SpamConfig(num_perm=8, lsh_bands=16)


def weighted(**extra: object) -> float:
    return author_weight(msg(1, "a", "gm", T0, platform="x", **extra))


def test_author_weight_table() -> None:
    assert weighted() == 1.0  # the platform tells us nothing
    assert weighted(author_created_at=T0 - timedelta(days=2)) == 0.25
    assert weighted(author_created_at=T0 - timedelta(days=6, hours=23)) == 0.25
    assert weighted(author_created_at=T0 - timedelta(days=7)) == 0.5
    assert weighted(author_created_at=T0 - timedelta(days=29)) == 0.5
    assert weighted(author_created_at=T0 - timedelta(days=30)) == 1.0
    assert weighted(author_created_at=T0 + timedelta(hours=1)) == 0.25  # clock skew: brand new
    # A naive creation time is read as UTC.
    assert weighted(author_created_at=datetime(2022, 6, 24, 12, 0)) == 0.25
    assert weighted(author_followers=3) == 0.5
    assert weighted(author_followers=0) == 0.5
    assert weighted(author_followers=10) == 1.0
    assert weighted(author_created_at=T0 - timedelta(days=1), author_followers=2) == 0.125
    # Neither a badge nor a huge following lifts anyone above 1.0.
    assert weighted(author_verified=True, author_followers=5_000_000) == 1.0
    assert weighted(author_verified=True, author_followers=4) == 0.5
    assert (
        weighted(
            author_verified=True,
            author_followers=2_000_000,
            author_created_at=T0 - timedelta(days=3),
        )
        == 0.25
    )
