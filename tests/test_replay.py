"""Tests for the replay source: formats, malformed rows, timestamps, pacing, resume, demo file."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.base import Source
from connectors.errors import MalformedInput, SourceUnavailable
from connectors.replay import (
    CSV_FIELD_LIMIT,
    ReplaySource,
    ReplayStats,
    count_rows,
    detect_format,
    parse_timestamp,
    row_to_message,
)
from connectors.types import Message

DEMO = Path(__file__).parents[1] / "bot" / "demo_data" / "stocktwits_btc_eth_2022.csv"

#: The first rows of the real demo file, verbatim.
DEMO_HEAD = """\
id,created_at,author,tag,likes,text
468303772,2022-06-25T13:39:06Z,c9407c346c5c,,0,$ETH.X $BTC.X   They are refusing to make it go above a certain price.  You know they want to accumulate more at a cheap price.
468304108,2022-06-25T13:44:04Z,c9407c346c5c,,4,$BTC.X $ETH.X $SHIB.X   White castle giving me gas problems.
473512697,2022-07-24T10:30:28Z,fb735624927b,Bearish,0,$ETH.X time too short 🥳 back to 1400's next week
"""  # noqa: E501

HEADER = "id,created_at,author,tag,likes,text\n"


def collect(source: ReplaySource) -> list[Message]:
    """Run a replay to the end and return what it yielded."""

    async def run() -> list[Message]:
        return [message async for message in source.messages()]

    return asyncio.run(run())


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8", newline="")
    return path


# --- good input -----------------------------------------------------------------------------


def test_csv_demo_rows_become_messages(tmp_path: Path) -> None:
    source = ReplaySource(write(tmp_path, "btc.csv", DEMO_HEAD))
    messages = collect(source)

    assert [m.message_id for m in messages] == ["468303772", "468304108", "473512697"]
    first = messages[0]
    assert first.platform == "stocktwits"
    assert first.community == "btc"  # the file stem
    assert first.channel == "btc"  # the community
    assert first.author == "c9407c346c5c"
    assert first.created_at == datetime(2022, 6, 25, 13, 39, 6, tzinfo=UTC)
    assert first.text.startswith("$ETH.X $BTC.X   They are refusing")
    assert first.public is True
    assert first.tag is None
    assert messages[1].likes == 4
    assert messages[2].tag == "Bearish"
    assert "🥳" in messages[2].text
    assert source.stats == ReplayStats(read=3, yielded=3)


def test_source_satisfies_the_protocol(tmp_path: Path) -> None:
    source = ReplaySource(write(tmp_path, "a.csv", DEMO_HEAD))
    assert isinstance(source, Source)
    assert source.name == "replay:a.csv"


def test_constructor_defaults_are_overridable(tmp_path: Path) -> None:
    path = write(tmp_path, "a.csv", DEMO_HEAD)
    messages = collect(ReplaySource(path, platform="replay", community="c", channel="ch"))
    assert {(m.platform, m.community, m.channel) for m in messages} == {("replay", "c", "ch")}


def test_jsonl_generic_shape_and_row_values_win(tmp_path: Path) -> None:
    rows = [
        {
            "message_id": 17,
            "time": "2024-05-01T12:00:00+02:00",
            "user": "alice",
            "text": "gm, $SOL pumping",
            "likes": 3,
            "replies": "2",
            "reposts": 1,
            "platform": "telegram",
            "community": "solana-chat",
            "channel": "general",
            "language": "en",
            "extra": {"ignored": True},
        },
        {"id": "18", "date": "2024-05-02", "author": "bob", "text": "ngmi"},
    ]
    body = "\n".join(json.dumps(row) for row in rows) + "\n\n"  # a trailing blank line is fine
    messages = collect(ReplaySource(write(tmp_path, "dump.jsonl", body), community="dflt"))

    first, second = messages
    assert first == Message(
        platform="telegram",
        community="solana-chat",
        channel="general",
        message_id="17",
        author="alice",
        text="gm, $SOL pumping",
        created_at=datetime(2024, 5, 1, 10, 0, tzinfo=UTC),
        likes=3,
        replies=2,
        reposts=1,
        language="en",
    )
    assert (second.platform, second.community, second.channel) == ("stocktwits", "dflt", "dflt")
    assert second.created_at == datetime(2024, 5, 2, tzinfo=UTC)
    assert (second.likes, second.replies, second.reposts) == (0, 0, 0)


def test_row_community_becomes_the_default_channel() -> None:
    row = {"id": "1", "created_at": "2024-01-01", "text": "hi", "community": "x"}
    assert row_to_message(row).channel == "x"


def test_format_from_suffix_or_argument(tmp_path: Path) -> None:
    assert detect_format(Path("a.CSV")) == "csv"
    assert detect_format(Path("a.json")) == "jsonl"
    assert detect_format(Path("a.txt"), "jsonl") == "jsonl"
    path = write(tmp_path, "posts.txt", DEMO_HEAD)
    assert len(collect(ReplaySource(path, fmt="csv"))) == 3
    with pytest.raises(ValueError, match="format"):
        ReplaySource(path)


def test_bom_and_crlf_are_tolerated(tmp_path: Path) -> None:
    path = tmp_path / "bom.csv"
    path.write_bytes(b"\xef\xbb\xbf" + DEMO_HEAD.replace("\n", "\r\n").encode())
    source = ReplaySource(path)
    assert len(collect(source)) == 3
    assert source.stats.skipped == 0


# --- malformed input ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (",2022-06-25T13:39:06Z,a,,0,hello\n", "missing id"),
        ("1,2022-06-25T13:39:06Z,a,,0,\n", "missing text"),
        ("1,2022-06-25T13:39:06Z,a,,0,   \n", "missing text"),
        ("1,yesterday,a,,0,hello\n", "unparseable timestamp"),
        ("1,2022-13-45T00:00:00Z,a,,0,hello\n", "unparseable timestamp"),
        ("1,,a,,0,hello\n", "missing timestamp"),
        ("1,2022-06-25T13:39:06Z,a,,lots,hello\n", "non-integer likes"),
        ("1,2022-06-25T13:39:06Z,a,,2.5,hello\n", "non-integer likes"),
        ("1,2022-06-25T13:39:06Z,a,,-1,hello\n", "negative likes"),
        ("1,2022-06-25T13:39:06Z,a,,0,hello,extra\n", "wrong field count"),
        ("1,2022-06-25T13:39:06Z,a,0,hello\n", "wrong field count"),
        ("1,2022-06-25T13:39:06Z,a,,0,he\x00llo\n", "NUL byte"),
    ],
)
def test_malformed_csv_row_is_skipped_with_its_reason(
    tmp_path: Path, row: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    good = "2,2022-06-25T13:40:00Z,b,,0,still here\n"
    path = write(tmp_path, "bad.csv", HEADER + row + good)
    source = ReplaySource(path)
    with caplog.at_level(logging.WARNING, logger="connectors.replay"):
        messages = collect(source)

    assert [m.message_id for m in messages] == ["2"]
    assert source.stats.read == 2
    assert source.stats.skipped == 1
    assert source.stats.reasons == {reason: 1}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "line 2" in warnings[0]
    assert reason in warnings[0]


def test_invalid_utf8_is_one_skipped_row(tmp_path: Path) -> None:
    path = tmp_path / "bytes.csv"
    path.write_bytes(
        HEADER.encode() + b"1,2022-06-25T13:39:06Z,a,,0,caf\xe9\n2,2022-06-25T13:40:00Z,b,,0,ok\n"
    )
    source = ReplaySource(path)
    assert [m.message_id for m in collect(source)] == ["2"]
    assert source.stats.reasons == {"invalid UTF-8": 1}


def test_malformed_jsonl_lines_are_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "a private sentence that must never reach the log"
    lines = [
        '{"id": "1", "created_at": "2024-01-01T00:00:00Z", "text": "ok"}',
        '{"id": "2", "created_at": "2024-01-01T00:00:00Z", "text": "unterminated',
        '["a", "list"]',
        '{"id": "3", "created_at": "2024-01-01T00:00:00Z"}',
        '{"id": "4", "created_at": "2024-01-01T00:00:00Z", "text": {"nested": 1}}',
        '{"id": "5", "created_at": "2024-01-01T00:00:00Z", "text": "x", "likes": true}',
        '{"id": "6", "created_at": "2024-01-01T00:00:00Z", "text": "x", "likes": 1.5}',
        '{"id": null, "created_at": "2024-01-01T00:00:00Z", "text": "x"}',
        f'{{"id": "7", "created_at": "not a date", "text": "{secret}"}}',
        '{"id": "8", "created_at": "2024-01-01T00:00:00Z", "text": "nul \\u0000 escaped"}',
        '{"id": 9, "created_at": 1704067200, "text": "epoch seconds", "likes": 2}',
    ]
    source = ReplaySource(write(tmp_path, "mixed.jsonl", "\n".join(lines) + "\n"))
    with caplog.at_level(logging.WARNING, logger="connectors.replay"):
        messages = collect(source)

    assert [m.message_id for m in messages] == ["1", "9"]
    assert messages[1].created_at == datetime(2024, 1, 1, tzinfo=UTC)
    assert messages[1].likes == 2
    assert source.stats.read == 11
    assert source.stats.skipped == 9
    assert source.stats.reasons == {
        "bad JSON": 1,
        "not a JSON object": 1,
        "missing text": 1,
        "non-string text": 1,
        "non-integer likes": 2,
        "missing id": 1,
        "unparseable timestamp": 1,
        "NUL byte": 1,
    }
    log = caplog.text
    assert "line 2 skipped: bad JSON" in log
    assert "line 9 skipped: unparseable timestamp" in log
    assert secret not in log


def test_csv_field_over_the_csv_limit_is_skipped_and_replay_goes_on(tmp_path: Path) -> None:
    huge = "x" * (CSV_FIELD_LIMIT + 1)
    body = HEADER + f"1,2024-01-01,a,,0,{huge}\n2,2024-01-01,b,,0,after\n"
    source = ReplaySource(write(tmp_path, "huge.csv", body))
    assert [m.message_id for m in collect(source)] == ["2"]
    assert source.stats.reasons == {"bad CSV record": 1}


def test_a_post_over_csvs_default_limit_is_read_and_keeps_its_neighbours(tmp_path: Path) -> None:
    # 200,000 characters is over csv's default 131,072-character field limit; stopped there,
    # the reader resumed inside the quoted text, and its '","' line swallowed the good rows
    # after it (found by tests/test_fuzz_replay.py).
    huge = "x" * 200_000 + '\n","'
    body = HEADER + f'1,2024-01-01,a,,0,"{huge.replace(chr(34), 2 * chr(34))}"\n'
    body += "2,2024-01-01,b,,0,after\n3,2024-01-02,c,,0,later\n"
    source = ReplaySource(write(tmp_path, "huge.csv", body))
    messages = collect(source)
    assert [m.message_id for m in messages] == ["1", "2", "3"]
    assert messages[0].text == huge
    assert source.stats == ReplayStats(read=3, yielded=3)


def test_row_to_message_raises_malformed_input_with_a_clear_reason() -> None:
    with pytest.raises(MalformedInput, match="missing id"):
        row_to_message({"text": "hi", "created_at": "2024-01-01"})
    with pytest.raises(MalformedInput, match=r"non-integer likes \('many'\)"):
        row_to_message({"id": "1", "text": "hi", "created_at": "2024-01-01", "likes": "many"})
    with pytest.raises(MalformedInput, match="unparseable timestamp"):
        row_to_message({"id": "1", "text": "hi", "created_at": "2024-02-30"})


def test_a_100_kb_text_is_not_malformed(tmp_path: Path) -> None:
    text = ("$BTC to the moon 🚀 " * 6000)[:100_000]
    path = write(tmp_path, "long.csv", HEADER + f'1,2024-01-01T00:00:00Z,a,,0,"{text}"\n')
    source = ReplaySource(path)
    (message,) = collect(source)
    assert message.text == text
    assert len(message.text) == 100_000
    assert source.stats.skipped == 0


def test_odd_unicode_passes_through_unchanged(tmp_path: Path) -> None:
    texts = [
        "🚀🌕 $ETH 👨‍👩‍👧 family emoji",
        "שלום $BTC עולה",  # right-to-left
        "zero\u200bwidth\u200djoiner\ufeff and \u202eRTL override",
        'quoted "comma, inside" and\nnewline',
        "  leading and trailing spaces  ",
    ]
    csv_body = HEADER + "".join(
        f'{i},2024-01-01T00:00:00Z,a,,0,"{t.replace(chr(34), chr(34) * 2)}"\n'
        for i, t in enumerate(texts)
    )
    jsonl_body = "".join(
        json.dumps({"id": i, "created_at": "2024-01-01", "text": t}, ensure_ascii=i % 2 == 0) + "\n"
        for i, t in enumerate(texts)
    )
    from_csv = collect(ReplaySource(write(tmp_path, "u.csv", csv_body)))
    from_jsonl = collect(ReplaySource(write(tmp_path, "u.jsonl", jsonl_body)))
    assert [m.text for m in from_csv] == texts
    assert [m.text for m in from_jsonl] == texts


# --- timestamps -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2022-06-25T13:39:06Z", datetime(2022, 6, 25, 13, 39, 6, tzinfo=UTC)),
        ("2022-06-25T15:39:06+02:00", datetime(2022, 6, 25, 13, 39, 6, tzinfo=UTC)),
        ("2022-06-25T08:39:06.250-05:00", datetime(2022, 6, 25, 13, 39, 6, 250000, tzinfo=UTC)),
        ("2022-06-25T13:39:06", datetime(2022, 6, 25, 13, 39, 6, tzinfo=UTC)),  # naive = UTC
        ("2022-06-25 13:39:06", datetime(2022, 6, 25, 13, 39, 6, tzinfo=UTC)),
        ("2022-06-25", datetime(2022, 6, 25, tzinfo=UTC)),
        (" 2022-06-25 ", datetime(2022, 6, 25, tzinfo=UTC)),
        (1656164346, datetime(2022, 6, 25, 13, 39, 6, tzinfo=UTC)),
    ],
)
def test_timestamps_become_aware_utc(raw: str | int, expected: datetime) -> None:
    parsed = parse_timestamp(raw)
    assert parsed == expected
    assert parsed.utcoffset() is not None
    assert parsed.utcoffset().total_seconds() == 0


@pytest.mark.parametrize("raw", ["", None, "soon", "2022-06-25T25:00:00", 1.5, True, [2022]])
def test_bad_timestamps_are_malformed(raw: object) -> None:
    with pytest.raises(MalformedInput):
        parse_timestamp(raw)


# --- pacing and resume ----------------------------------------------------------------------


def test_speed_sleeps_the_scaled_gap(tmp_path: Path) -> None:
    body = HEADER + (
        "1,2024-01-01T00:00:00Z,a,,0,one\n"
        "2,2024-01-01T00:00:10Z,a,,0,two\n"  # 10 s later
        "3,2024-01-01T00:00:20Z,a,,0,three\n"  # 10 s later
    )
    path = write(tmp_path, "paced.csv", body)

    start = time.monotonic()
    assert len(collect(ReplaySource(path, speed=100.0))) == 3  # 2 gaps of 0.1 s
    assert time.monotonic() - start >= 0.18

    start = time.monotonic()
    assert len(collect(ReplaySource(path, speed=1.0, max_gap=0.05))) == 3  # capped
    elapsed = time.monotonic() - start
    assert 0.09 <= elapsed < 5.0


def test_a_paced_replay_keeps_its_schedule_however_long_the_consumer_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Posts 10 s apart at real time, a consumer that spends 3 s on each: the replay waits 7 s
    (the post is due 10 s after the previous one was), not 10, so the wall clock and the
    posts' times never drift apart. A consumer slower than the posts gets them without a wait.
    On a fake clock, so nothing is timed."""
    body = "id,created_at,author,community,likes,text\n" + "".join(
        f"{i},2024-01-01T00:00:{10 * i:02d}Z,a,,0,post {i}\n" for i in range(5)
    )
    path = write(tmp_path, "paced.csv", body)
    clock = [1000.0]
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)
        clock[0] += delay

    monkeypatch.setattr("connectors.replay.asyncio.sleep", fake_sleep)

    async def consume(spend: float) -> list[float]:
        source = ReplaySource(path, speed=1.0, max_gap=60.0)
        source.clock = lambda: clock[0]
        arrived = []
        async for _ in source.messages():
            arrived.append(clock[0])
            clock[0] += spend  # the consumer's work on the post
        return arrived

    arrived = asyncio.run(consume(3.0))
    assert slept == [7.0, 7.0, 7.0, 7.0]
    assert [t - arrived[0] for t in arrived] == [0.0, 10.0, 20.0, 30.0, 40.0]  # no drift

    slept.clear()
    clock[0] = 2000.0
    arrived = asyncio.run(consume(15.0))  # slower than the posts come: no waiting at all
    assert slept == []
    assert [t - arrived[0] for t in arrived] == [0.0, 15.0, 30.0, 45.0, 60.0]


def test_speed_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="speed"):
        ReplaySource(tmp_path / "a.csv", speed=0)


def test_start_after_resumes_after_that_id(tmp_path: Path) -> None:
    source = ReplaySource(write(tmp_path, "a.csv", DEMO_HEAD), start_after="468303772")
    assert [m.message_id for m in collect(source)] == ["468304108", "473512697"]
    assert source.stats == ReplayStats(read=3, yielded=2, before_start=1)


def test_start_after_an_unknown_id_yields_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = ReplaySource(write(tmp_path, "a.csv", DEMO_HEAD), start_after="nope")
    with caplog.at_level(logging.WARNING, logger="connectors.replay"):
        assert collect(source) == []
    assert "not found" in caplog.text


# --- unavailable files ----------------------------------------------------------------------


def test_missing_file_raises_source_unavailable_when_iteration_starts(tmp_path: Path) -> None:
    source = ReplaySource(tmp_path / "gone.csv")  # construction reads nothing
    with pytest.raises(SourceUnavailable, match=r"cannot open replay file .*gone\.csv"):
        collect(source)
    with pytest.raises(SourceUnavailable):
        count_rows(tmp_path / "gone.csv")


def test_a_directory_is_unavailable(tmp_path: Path) -> None:
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(SourceUnavailable):
        collect(ReplaySource(tmp_path / "dir.csv"))


def test_a_csv_without_id_or_text_column_is_not_a_replay_file(tmp_path: Path) -> None:
    path = write(tmp_path, "prices.csv", "date,open,close\n2024-01-01,1,2\n")
    with pytest.raises(SourceUnavailable, match="no id or message_id column"):
        collect(ReplaySource(path))


# --- row counting and the real demo file ----------------------------------------------------


def test_count_rows(tmp_path: Path) -> None:
    assert count_rows(write(tmp_path, "a.csv", DEMO_HEAD + "\n")) == 3
    assert count_rows(write(tmp_path, "a.jsonl", '{"a": 1}\n\n{"b": 2}\n')) == 2
    assert count_rows(write(tmp_path, "empty.csv", "")) == 0


def test_the_full_demo_file_replays_cleanly() -> None:
    source = ReplaySource(DEMO)
    messages = collect(source)

    assert source.stats.skipped == 0
    assert source.stats.yielded == len(messages) == 14_423
    assert count_rows(DEMO) == 14_423
    assert all(m.created_at.tzinfo is UTC for m in messages)
    assert messages[0].created_at <= messages[-1].created_at
    assert {m.tag for m in messages} == {None, "Bullish", "Bearish"}
    assert len({m.message_id for m in messages}) == 14_423


# --- implausible rows: out-of-range dates and counts, duplicate ids -------------------------


def jsonl(tmp_path: Path, rows: list[dict[str, object]]) -> Path:
    return write(tmp_path, "rows.jsonl", "".join(json.dumps(r) + "\n" for r in rows))


def test_dates_before_bitcoin_or_beyond_the_clock_skew_are_malformed_rows(
    tmp_path: Path,
) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=2)  # inside the default 10-minute skew
    late = datetime.now(UTC) + timedelta(hours=1)
    rows: list[dict[str, object]] = [
        {"id": 1, "created_at": 0, "text": "epoch zero"},
        {"id": 2, "created_at": "9999-01-01", "text": "far future"},
        {"id": 3, "created_at": "2009-01-02T23:59:59Z", "text": "before genesis"},
        {"id": 4, "created_at": late.isoformat(), "text": "an hour ahead"},
        {"id": 5, "created_at": "2009-01-03", "text": "genesis day"},
        {"id": 6, "created_at": soon.isoformat(), "text": "a little ahead"},
    ]
    source = ReplaySource(jsonl(tmp_path, rows))
    messages = collect(source)

    assert [m.message_id for m in messages] == ["5", "6"]
    assert source.stats.skipped == 4
    assert source.stats.reasons == {"timestamp before 2009": 2, "timestamp in the future": 2}


def test_max_clock_skew_widens_or_narrows_the_future_bound(tmp_path: Path) -> None:
    ahead = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    path = jsonl(tmp_path, [{"id": 1, "created_at": ahead, "text": "an hour ahead"}])
    assert len(collect(ReplaySource(path, max_clock_skew=2 * 3600))) == 1
    assert collect(ReplaySource(path, max_clock_skew=0)) == []
    with pytest.raises(ValueError, match="max_clock_skew"):
        ReplaySource(path, max_clock_skew=-1)


@pytest.mark.parametrize(
    ("counts", "reason"),
    [
        ({"likes": 10**30}, "likes too large"),
        ({"replies": 2**53 + 1}, "replies too large"),
        ({"reposts": str(2**63)}, "reposts too large"),
        ({"likes": -1}, "negative likes"),
        ({"likes": 1.5}, "non-integer likes"),
    ],
)
def test_out_of_range_counts_are_malformed_rows(
    tmp_path: Path, counts: dict[str, object], reason: str
) -> None:
    good = {"id": 1, "created_at": "2022-06-25", "text": "fine", "likes": 2**53}
    bad = {"id": 2, "created_at": "2022-06-25", "text": "huge", **counts}
    source = ReplaySource(jsonl(tmp_path, [good, bad]))
    messages = collect(source)

    assert [(m.message_id, m.likes) for m in messages] == [("1", 2**53)]
    assert source.stats.reasons == {reason: 1}


def test_a_repeated_id_with_other_content_is_a_duplicate_and_the_first_is_kept(
    tmp_path: Path,
) -> None:
    rows: list[dict[str, object]] = [
        {"id": 7, "created_at": "2022-06-25", "author": "alice", "text": "original"},
        {"id": 7, "created_at": "2022-06-25", "author": "mallory", "text": "original"},
        {"id": 7, "created_at": "2022-06-26", "author": "alice", "text": "rewritten"},
        {"id": 7, "created_at": "2022-06-25", "text": "other channel", "channel": "b"},
    ]
    source = ReplaySource(jsonl(tmp_path, rows))
    messages = collect(source)

    assert [(m.channel, m.author, m.text) for m in messages] == [
        ("rows", "alice", "original"),
        ("b", "", "other channel"),
    ]
    assert source.stats.duplicates == 2
    assert source.stats.skipped == 0  # not malformed: counted apart
    assert source.stats.read == source.stats.yielded + source.stats.duplicates


def test_an_identical_repeated_row_is_not_a_duplicate(tmp_path: Path) -> None:
    row = {"id": 7, "created_at": "2022-06-25", "author": "alice", "text": "same"}
    source = ReplaySource(jsonl(tmp_path, [row, row]))
    assert len(collect(source)) == 2  # harmless: the store keeps one
    assert source.stats.duplicates == 0
    # A second pass (a rerun, or a restart) starts afresh: nothing is a duplicate.
    collect(source)
    assert source.stats.duplicates == 0


def test_a_duplicate_across_the_resume_point_is_still_caught(tmp_path: Path) -> None:
    rows: list[dict[str, object]] = [
        {"id": 1, "created_at": "2022-06-25", "author": "alice", "text": "original"},
        {"id": 2, "created_at": "2022-06-25", "text": "resume here"},
        {"id": 1, "created_at": "2022-06-25", "author": "mallory", "text": "replaced"},
    ]
    source = ReplaySource(jsonl(tmp_path, rows), start_after="2")
    assert collect(source) == []
    assert source.stats.duplicates == 1
