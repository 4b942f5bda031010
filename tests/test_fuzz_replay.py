"""Fuzzing the replay connector: CSV and JSONL files mixing good rows with hostile ones."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from connectors.errors import MalformedInput, SourceUnavailable
from connectors.replay import (
    ReplaySource,
    _as_count,
    detect_format,
    parse_timestamp,
    row_to_message,
)
from connectors.types import Message
from tests.fuzz_checks import check_message, fresh_key, fuzz, store_messages
from tests.fuzz_checks import shared_store as store

# ---------------------------------------------------------------------- good rows

#: Text a real post could hold: any Unicode but NUL and surrogates, with RTL marks,
#: zero-width characters, emoji, quotes, commas and line breaks well represented.
ODD = "\u202e\u200b\u200d\ufeff\u2028\r\n\t,\"'🚀$é"
post_chars = st.one_of(
    st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"),
    st.sampled_from(ODD),
)
post_text = st.text(post_chars, min_size=1, max_size=40).filter(str.strip)
word = st.text(st.characters(blacklist_categories=["Cs", "Z", "Cc"]), max_size=12)
post_time = st.datetimes(min_value=datetime(2009, 1, 4), max_value=datetime(2025, 1, 1)).map(
    lambda d: d.replace(microsecond=0, tzinfo=UTC)
)
TIME_FORMATS = ("z", "offset", "naive", "space", "date", "epoch")
#: Now and then a huge post: 100,000 characters, or over csv's default field limit with a
#: line that opens a quote after it.
huge_text = st.builds(
    lambda c, n, tail: c * n + tail,
    st.sampled_from("aé🚀"),
    st.sampled_from([100_000, 140_000]),
    st.sampled_from(["", '\n","', '\n"x']),
)


@dataclass(frozen=True)
class Good:
    """A good row: what is written, and the Message it must become."""

    row: dict[str, Any]
    expected: Message


def timestamp(at: datetime, fmt: str, jsonl: bool) -> tuple[object, datetime]:
    """``at`` written in format ``fmt``, and the time a reader must get back from it."""
    if fmt == "epoch" and jsonl:
        return int(at.timestamp()), at
    if fmt == "offset":
        return at.astimezone(timezone(timedelta(hours=5, minutes=30))).isoformat(), at
    if fmt == "naive":
        return at.replace(tzinfo=None).isoformat(), at
    if fmt == "space":
        return at.strftime("%Y-%m-%d %H:%M:%S"), at
    if fmt == "date":
        day = at.replace(hour=0, minute=0, second=0)
        return day.date().isoformat(), day
    return at.strftime("%Y-%m-%dT%H:%M:%SZ"), at


@st.composite
def good_row(draw: st.DrawFn, jsonl: bool) -> Callable[[str, str], Good]:
    """A good row, made once its id and the file's community are known."""
    text = draw(st.one_of(post_text, huge_text) if draw(st.integers(0, 30)) == 0 else post_text)
    at = draw(post_time)
    written_at, expected_at = timestamp(at, draw(st.sampled_from(TIME_FORMATS)), jsonl)
    author = draw(word)
    tag = draw(st.sampled_from(["", "Bullish", "Bearish", " Bullish "]))
    likes = draw(st.integers(0, 10**9))
    written_likes: object = likes if jsonl and draw(st.booleans()) else f" {likes} "
    id_key = draw(st.sampled_from(["id", "message_id"])) if jsonl else "id"
    time_key = draw(st.sampled_from(["created_at", "time", "date"])) if jsonl else "created_at"
    author_key = draw(st.sampled_from(["author", "user"])) if jsonl else "author"

    def make(message_id: str, community: str) -> Good:
        row = {
            id_key: message_id,
            time_key: written_at,
            author_key: author,
            "tag": tag,
            "likes": written_likes,
            "text": text,
        }
        expected = Message(
            platform="stocktwits",
            community=community,
            channel=community,
            message_id=message_id,
            author=author.strip(),
            text=text,
            created_at=expected_at,
            likes=likes,
            tag=tag.strip() or None,
        )
        return Good(row, expected)

    return make


# ---------------------------------------------------------------------- hostile rows

HUGE = 10**30
hostile_time = st.one_of(
    st.sampled_from(
        [
            "0",
            "1970-01-01T00:00:00Z",
            "2008-12-31",
            "9999-01-01",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00+01:00",
            "3024-05-01T00:00:00Z",
            "01/02/2024",
            "2024-13-45",
            "2024-05-01T25:00:00",
            "yesterday",
            " ",
            "",
        ]
    ),
    st.text(max_size=30),
)
hostile_count = st.sampled_from(
    ["-1", "1e3", "3.5", "nan", "inf", str(HUGE), "9" * 5000, "0x10", "", "many", " 7 "]
)
#: Strings no good row holds: NUL, lone surrogates (as invalid UTF-8 bytes once written),
#: RTL overrides, zero-width joiners, a BOM, blanks and huge blank text.
hostile_text = st.one_of(
    st.sampled_from(["", " ", "\t\n", "\x00", "a\x00b", "\udcff", "ok\udcc3", "\u202e\u200b"]),
    st.text(max_size=30),
    st.builds(lambda c, n: c * n, st.sampled_from(" \u200b"), st.just(100_000)),
)
FIELDS = (
    "id",
    "message_id",
    "created_at",
    "time",
    "date",
    "author",
    "user",
    "text",
    "likes",
    "replies",
    "reposts",
    "platform",
    "community",
    "channel",
    "language",
    "tag",
    "extra",
)


def csv_value() -> st.SearchStrategy[str]:
    return st.one_of(hostile_text, hostile_time, hostile_count, post_text)


json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.sampled_from([HUGE, -HUGE, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
    hostile_time,
    hostile_count,
    post_text,
)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def hostile_json_row(draw: st.DrawFn) -> dict[str, Any]:
    """A JSON object whose keys are mostly the real columns and whose values are anything."""
    keys = draw(st.lists(st.one_of(st.sampled_from(FIELDS), st.text(max_size=6)), max_size=8))
    return {key: draw(json_value) for key in keys}


RAW_JSONL = [
    b"not json",
    b"[1, 2, 3]",
    b"42",
    b'"a string"',
    b"{",
    b'{"id": 1, "text": "x", "created_at": "2024-01-01"',  # cut short
    b'{"id": "r1", "text": "caf\xc3", "created_at": "2024-01-01"}',  # invalid UTF-8
    b'{"id": "r2", "text": "\xff\xfe", "created_at": "2024-01-01"}',
    b'{"id": "r3", "text": "nul \\u0000", "created_at": "2024-01-01"}',
    b'{"id": "r4", "text": "lone \\udc00", "created_at": "2024-01-01"}',
    b'{"id": "r5", "text": "x", "likes": ' + b"9" * 5000 + b', "created_at": "2024-01-01"}',
    b'{"id": "r6", "text": "x", "likes": NaN, "created_at": "2024-01-01"}',
    b'{"id": "r7", "text": "x", "likes": 1e400, "created_at": "2024-01-01"}',
    b'{"id": "r8", "text": "x", "created_at": 99999999999999999999}',
    b'{"id": "r9", "text": "x", "created_at": -1}',
    b"[" * 100_000,  # nested too deep
    b"\xef\xbb\xbf{}",  # a BOM in the middle of the file
]
RAW_CSV = ["just one field", "a,b", "x,y,z,w,v,u,t,s,r,q,p,o,n,m,l,k,j,i,h", "caf\udcc3,\udcff"]


@dataclass(frozen=True)
class Hostile:
    """A hostile row: a row dict, a raw line (bytes for JSONL, text for CSV), or a duplicate
    of the latest good row's id with other text."""

    row: dict[str, Any] | None = None
    raw: bytes | str | None = None
    duplicate_text: str | None = None


def hostile(jsonl: bool) -> st.SearchStrategy[Hostile]:
    if jsonl:
        row = hostile_json_row()
        raw = st.sampled_from(RAW_JSONL)
    else:
        row = st.dictionaries(st.sampled_from(FIELDS), csv_value(), max_size=len(FIELDS))
        raw = st.sampled_from(RAW_CSV)
    return st.one_of(
        row.map(lambda r: Hostile(row=r)),
        raw.map(lambda r: Hostile(raw=r)),
        post_text.map(lambda t: Hostile(duplicate_text=t)),
    )


# ---------------------------------------------------------------------- files


@dataclass(frozen=True)
class ReplayFile:
    path: Path
    goods: list[Good]
    records: int  # data records written (rows the source must read and account for)


CSV_COLUMNS = ["id", "created_at", "author", "tag", "likes", "text", "extra"]


@st.composite
def replay_file(draw: st.DrawFn, jsonl: bool) -> Callable[[Path], ReplayFile]:
    """A file of good and hostile rows in any order, written under a fresh name."""
    items = draw(st.lists(st.one_of(good_row(jsonl), hostile(jsonl)), min_size=1, max_size=12))
    bom, crlf = draw(st.booleans()), draw(st.booleans())
    columns = draw(st.permutations(CSV_COLUMNS))
    header_case = draw(st.sampled_from([str, str.upper, lambda s: f" {s.title()} "]))

    def write(folder: Path) -> ReplayFile:
        community = fresh_key()
        path = folder / f"{community}.{'jsonl' if jsonl else 'csv'}"
        goods: list[Good] = []
        lines: list[bytes] = []
        for n, item in enumerate(items):
            if isinstance(item, Hostile) and item.duplicate_text is not None:
                if not goods or goods[-1].expected.text == item.duplicate_text:
                    item = Hostile(row={"id": f"d{n}", "text": item.duplicate_text})
                else:  # another text under the id of the last good row: a duplicate id
                    row = dict(goods[-1].row, text=item.duplicate_text)
                    item = Hostile(row=row)
            if isinstance(item, Hostile):
                row, raw = item.row, item.raw
            else:
                good = item(f"good~{n}~{community}", community)
                goods.append(good)
                row, raw = good.row, None
            lines.append(encode(row, raw, columns, jsonl, crlf))
        if not jsonl:
            header = encode(None, ",".join(header_case(c) for c in columns), columns, False, crlf)
            lines.insert(0, header)
        body = b"".join(lines)
        path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body)
        return ReplayFile(path, goods, len(items))

    return write


def encode(
    row: dict[str, Any] | None, raw: bytes | str | None, columns: list[str], jsonl: bool, crlf: bool
) -> bytes:
    """One record as bytes; lone surrogates \\udc80-\\udcff become the invalid bytes they stand
    for (as the reader's surrogateescape sees them)."""
    end = "\r\n" if crlf else "\n"
    if isinstance(raw, bytes):
        return raw + end.encode()
    if raw is not None:
        return (raw + end).encode("utf-8", "surrogateescape")
    assert row is not None
    if jsonl:
        return (json.dumps(row) + end).encode()
    buffer = io.StringIO()
    # Under a "\n" line end the writer leaves a bare "\r" unquoted, which every reader takes
    # for a line end: that file would be broken, not hostile. Quote every field there.
    quoting = csv.QUOTE_MINIMAL if crlf else csv.QUOTE_ALL
    writer = csv.writer(buffer, lineterminator=end, quoting=quoting)
    writer.writerow([_cell(row.get(c, "")) for c in columns])
    return buffer.getvalue().encode("utf-8", "surrogateescape")


def _cell(value: object) -> str:
    return value if isinstance(value, str) else str(value)


def replay(path: Path) -> tuple[list[Message], ReplaySource]:
    source = ReplaySource(path)

    async def run() -> list[Message]:
        return [m async for m in source.messages()]

    return asyncio.run(run()), source


# ---------------------------------------------------------------------- properties


def check_replay(spec: ReplayFile) -> None:
    messages, source = replay(spec.path)
    for m in messages:
        check_message(m)
    # Every good row comes through unchanged, in file order, whatever its neighbours are.
    yielded = {m.message_id: m for m in messages}
    assert [yielded.get(g.expected.message_id) for g in spec.goods] == [
        g.expected for g in spec.goods
    ]
    good_ids = [g.expected.message_id for g in spec.goods]
    assert [m.message_id for m in messages if m.message_id in good_ids] == good_ids
    # Every record is accounted for.
    stats = source.stats
    assert stats.read == spec.records
    assert stats.read == stats.yielded + stats.skipped + stats.duplicates
    assert stats.yielded == len(messages)
    assert sum(stats.reasons.values()) == stats.skipped
    store_messages(store(), messages)


@fuzz(300)
@given(st.data())
def test_csv_files_never_break_the_replay(tmp_path: Path, data: st.DataObject) -> None:
    check_replay(data.draw(replay_file(jsonl=False))(tmp_path))


@fuzz(300)
@given(st.data())
def test_jsonl_files_never_break_the_replay(tmp_path: Path, data: st.DataObject) -> None:
    check_replay(data.draw(replay_file(jsonl=True))(tmp_path))


# ---------------------------------------------------------------------- the parts, alone

NOW = datetime(2025, 6, 1, tzinfo=UTC)


@fuzz(300)
@given(st.one_of(json_value, hostile_time, post_time.map(datetime.isoformat)))
def test_parse_timestamp_gives_aware_utc_or_malformed_row(value: object) -> None:
    try:
        at = parse_timestamp(value)
    except MalformedInput as exc:
        assert exc.reason in ("missing timestamp", "unparseable timestamp")  # type: ignore[attr-defined]
        return
    assert at.utcoffset() == timedelta(0)


@fuzz(300)
@given(st.one_of(json_value, hostile_count))
def test_counts_are_in_bounds_or_malformed_row(value: object) -> None:
    try:
        count = _as_count({"likes": value}, "likes")
    except MalformedInput:
        return
    assert type(count) is int and 0 <= count <= 2**53


@fuzz(300)
@given(hostile_json_row())
def test_any_row_is_a_valid_message_or_malformed_row(row: dict[str, Any]) -> None:
    try:
        message = row_to_message(row, now=NOW)
    except MalformedInput:
        return
    check_message(message, now=NOW)


@fuzz(300)
@given(st.text(max_size=8), st.one_of(st.none(), st.text(max_size=8)))
def test_format_is_csv_or_jsonl_or_a_value_error(suffix: str, fmt: str | None) -> None:
    try:
        kind = detect_format(Path(f"posts{suffix}"), fmt)
    except ValueError:
        return
    assert kind in ("csv", "jsonl")


@fuzz(300)
@given(st.binary(max_size=300), st.sampled_from(["csv", "jsonl"]))
def test_a_file_that_is_no_replay_file_fails_clearly_or_yields_nothing_bad(
    tmp_path: Path, body: bytes, suffix: str
) -> None:
    path = tmp_path / f"{fresh_key()}.{suffix}"
    path.write_bytes(body)
    try:
        messages, source = replay(path)
    except SourceUnavailable as exc:
        assert suffix == "csv" and "not a replay file" in str(exc)  # the documented error
        return
    for m in messages:
        check_message(m)
    assert source.stats.read == source.stats.yielded + source.stats.skipped + (
        source.stats.duplicates
    )


def test_a_jsonl_number_over_pythons_digit_limit_is_one_bad_row(tmp_path: Path) -> None:
    # json.loads raised a plain ValueError (not JSONDecodeError) for an integer of over 4300
    # digits, and it ended the whole replay (found by the fuzz test above).
    path = tmp_path / "big.jsonl"
    good = '{"id": "2", "text": "after", "created_at": "2024-01-01"}'
    path.write_text('{"id": "1", "text": "x", "likes": ' + "9" * 5000 + "}\n" + good + "\n")
    messages, source = replay(path)
    assert [m.message_id for m in messages] == ["2"]
    assert source.stats.reasons == {"bad JSON": 1}
