"""Replay a recorded file of posts (CSV or JSONL) as a stream of Messages."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import logging
import re
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from connectors.bounds import MAX_CLOCK_SKEW_S, MAX_COUNT, count_ok, time_problem
from connectors.errors import MalformedInput, SourceUnavailable
from connectors.types import Message

logger = logging.getLogger(__name__)

Format = Literal["csv", "jsonl"]

#: Accepted column names for each Message field, first match wins. The StockTwits demo file
#: (``id, created_at, author, tag, likes, text``) is a subset of this generic shape.
ALIASES: Mapping[str, tuple[str, ...]] = {
    "message_id": ("id", "message_id"),
    "created_at": ("created_at", "time", "date"),
    "author": ("author", "user"),
    "text": ("text",),
    "likes": ("likes",),
    "replies": ("replies",),
    "reposts": ("reposts",),
    "platform": ("platform",),
    "community": ("community",),
    "channel": ("channel",),
    "language": ("language",),
    "tag": ("tag",),
}

_SUFFIXES: Mapping[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")  # NUL, and lone surrogates from invalid UTF-8
_YIELD_EVERY = 200  # rows between event-loop yields when replaying as fast as possible
#: The longest CSV field read (csv's own default is 128 KiB). Past the limit the reader stops
#: inside the field and resumes mid-record: a quote in the rest of that text can then swallow
#: the good rows after it. No post comes near 16 MiB, and the bound keeps a broken file (an
#: unclosed quote) from growing one field without end.
CSV_FIELD_LIMIT = 16 * 2**20


class MalformedRow(MalformedInput):
    """A row that cannot become a Message; ``reason`` is a short, stable key for counting."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason


@dataclass(slots=True)
class ReplayStats:
    """What one replay pass has done so far (mutable: it is I/O state, updated as rows stream).

    ``read`` counts every data row seen;
    ``read == yielded + skipped + duplicates + before_start``.
    """

    read: int = 0
    yielded: int = 0
    skipped: int = 0  # malformed rows
    #: rows reusing an earlier row's (platform, channel, id) with another author or text
    duplicates: int = 0
    before_start: int = 0  # rows passed over until ``start_after`` was found
    reasons: Counter[str] = field(default_factory=Counter)


#: One record from a file: a row to convert, or the reason it could not even be read as one.
_Row = dict[str, object] | MalformedRow


def _short(value: object) -> str:
    """A log-safe rendering of a bad value: repr, cut to 40 characters."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _pick(row: Mapping[str, object], name: str) -> object:
    """The first present, non-empty value among ``name``'s aliases, else None."""
    for key in ALIASES[name]:
        value = row.get(key)
        if value is not None and value != "":
            return value
    return None


def _as_str(row: Mapping[str, object], name: str) -> str | None:
    """An optional string field, stripped; None when absent or blank."""
    value = _pick(row, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise MalformedRow(f"non-string {name}", _short(value))
    return value.strip() or None


def _as_count(row: Mapping[str, object], name: str) -> int:
    """An integer count (likes, replies, reposts) in 0..``MAX_COUNT``; absent means 0."""
    value = _pick(row, name)
    if value is None:
        return 0
    if isinstance(value, bool):  # bool is an int subclass; True likes is not a count
        raise MalformedRow(f"non-integer {name}", _short(value))
    if isinstance(value, int):
        count = value
    elif isinstance(value, str):
        try:
            count = int(value.strip())
        except ValueError:
            raise MalformedRow(f"non-integer {name}", _short(value)) from None
    else:
        raise MalformedRow(f"non-integer {name}", _short(value))
    if count < 0:
        raise MalformedRow(f"negative {name}", _short(value))
    if not count_ok(count):  # SQLite's integers overflow near 2**63; real counts never do
        raise MalformedRow(f"{name} too large", f"over {MAX_COUNT}")
    return count


def parse_timestamp(value: object) -> datetime:
    """Parse a recorded timestamp into an aware UTC datetime.

    Accepts ISO 8601 with ``Z`` or an offset, naive ISO 8601 (taken as UTC), a date only
    (midnight UTC), or, from JSON, an integer number of Unix seconds.

    Raises:
        MalformedRow: reason ``"unparseable timestamp"`` (or ``"missing timestamp"``).
    """
    if value is None or value == "":
        raise MalformedRow("missing timestamp")
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            return datetime.fromtimestamp(value, tz=UTC)
        if not isinstance(value, str):
            raise TypeError(type(value).__name__)
        parsed = datetime.fromisoformat(value.strip())
        if parsed.tzinfo is None:
            return parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (ValueError, TypeError, OverflowError, OSError):
        raise MalformedRow("unparseable timestamp", _short(value)) from None


def row_to_message(
    row: Mapping[str, object],
    *,
    platform: str = "stocktwits",
    community: str = "replay",
    channel: str | None = None,
    max_clock_skew: float = MAX_CLOCK_SKEW_S,
    now: datetime | None = None,
) -> Message:
    """Turn one recorded row (a CSV record or a JSON object) into a Message.

    Column names are matched through ``ALIASES``; unknown columns are ignored. ``platform``,
    ``community`` and ``channel`` come from the row when it has them, else from these
    defaults; ``channel`` defaults to the row's (or the default) community. Text is kept
    exactly as recorded. Replayed streams are public.

    Args:
        row: column name -> value; values are strings (CSV) or JSON scalars.
        platform: platform when the row names none.
        community: community when the row names none.
        channel: channel when the row names none; None means "the community".
        max_clock_skew: seconds a row's time may lie ahead of ``now``.
        now: the wall clock; default: ``datetime.now(UTC)``.

    Returns:
        The Message, with ``created_at`` in aware UTC.

    Raises:
        MalformedRow: (a MalformedInput) with a short ``reason``: missing id, missing text,
            unparseable timestamp, timestamp before 2009 (Bitcoin's genesis) or in the
            future, non-integer likes, likes too large, NUL byte, invalid UTF-8, ...
    """
    for key, value in row.items():
        if isinstance(value, str) and (bad := _BAD_CHARS.search(value)):
            reason = "NUL byte" if bad.group() == "\x00" else "invalid UTF-8"
            raise MalformedRow(reason, f"in {key}")

    raw_id = _pick(row, "message_id")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        message_id = str(raw_id)
    elif isinstance(raw_id, str) and raw_id.strip():
        message_id = raw_id.strip()
    elif raw_id is None or isinstance(raw_id, str):
        raise MalformedRow("missing id")
    else:
        raise MalformedRow("bad id", _short(raw_id))

    text = _pick(row, "text")
    if text is None or (isinstance(text, str) and not text.strip()):
        raise MalformedRow("missing text")
    if not isinstance(text, str):
        raise MalformedRow("non-string text", type(text).__name__)

    raw_time = _pick(row, "created_at")
    created_at = parse_timestamp(raw_time)
    if problem := time_problem(created_at, max_clock_skew=max_clock_skew, now=now):
        raise MalformedRow(problem, _short(raw_time))
    row_community = _as_str(row, "community") or community
    return Message(
        platform=_as_str(row, "platform") or platform,
        community=row_community,
        channel=_as_str(row, "channel") or channel or row_community,
        message_id=message_id,
        author=_as_str(row, "author") or "",
        text=text,
        created_at=created_at,
        likes=_as_count(row, "likes"),
        replies=_as_count(row, "replies"),
        reposts=_as_count(row, "reposts"),
        language=_as_str(row, "language"),
        public=True,
        tag=_as_str(row, "tag"),
    )


def detect_format(path: Path, fmt: str | None = None) -> Format:
    """The file format: ``fmt`` when given ("csv", "jsonl" or "json"), else from the suffix.

    Raises:
        ValueError: the format is unknown.
    """
    key = f".{fmt.lower().lstrip('.')}" if fmt else path.suffix.lower()
    try:
        return _SUFFIXES[key]
    except KeyError:
        raise ValueError(
            f"cannot tell the format of {path.name!r}: use .csv or .jsonl, or pass fmt"
        ) from None


def count_rows(path: Path, fmt: str | None = None) -> int:
    """Count data rows cheaply (non-blank lines, less the CSV header), for a progress total.

    A CSV text that spans several lines makes this an over-count; it is meant for a progress
    bar, not for bookkeeping.

    Raises:
        SourceUnavailable: the file is missing or unreadable.
        ValueError: the format is unknown.
    """
    kind = detect_format(path, fmt)
    try:
        with path.open("rb") as file:
            lines = sum(1 for line in file if line.strip())
    except OSError as exc:
        raise SourceUnavailable(f"cannot read replay file {path}: {exc.strerror or exc}") from exc
    return max(lines - 1, 0) if kind == "csv" else lines


class ReplaySource:
    """A Source that replays a recorded CSV or JSONL file of posts as Messages.

    Rows stream in file order (the file is never loaded whole). Malformed rows are skipped,
    counted in ``stats`` and logged with their line number and reason (never their text); so
    is a row reusing an earlier row's id with another author or text (``stats.duplicates``:
    the first is kept).
    The file is opened when iteration starts, so a missing or unreadable file raises
    ``SourceUnavailable`` from the first ``anext()`` of ``messages()``, not from the
    constructor. Each call to ``messages()`` is a fresh pass with fresh ``stats``.

    Example::

        source = ReplaySource(Path("stocktwits_btc_eth_2022.csv"), speed=60.0)
        async for message in source.messages():
            ...
    """

    def __init__(
        self,
        path: Path,
        *,
        platform: str = "stocktwits",
        community: str | None = None,
        channel: str | None = None,
        speed: float | None = None,
        start_after: str | None = None,
        fmt: str | None = None,
        max_gap: float = 5.0,
        max_clock_skew: float = MAX_CLOCK_SKEW_S,
    ) -> None:
        """Set up a replay; reads nothing yet.

        Args:
            path: the CSV (header row) or JSONL file.
            platform: platform for rows that name none.
            community: community for rows that name none; default: the file stem.
            channel: channel for rows that name none; default: the community.
            speed: None replays as fast as possible; a float replays at that factor of real
                time (2.0 = twice as fast), sleeping the scaled gap between posts.
            start_after: resume: skip rows up to and including the one with this message_id.
            fmt: "csv", "jsonl" or "json" to override the suffix.
            max_gap: the longest sleep between two posts, in seconds, so a quiet night in
                the recording does not hang the replay.
            max_clock_skew: seconds a row may be dated ahead of the wall clock; later rows,
                and rows before 2009, are malformed.

        Raises:
            ValueError: unknown format, or a non-positive speed or negative max_gap.
        """
        if speed is not None and not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        if not max_gap >= 0:
            raise ValueError(f"max_gap must be >= 0, got {max_gap!r}")
        if not max_clock_skew >= 0:
            raise ValueError(f"max_clock_skew must be >= 0, got {max_clock_skew!r}")
        self.path = Path(path)
        self.format: Format = detect_format(self.path, fmt)
        self.platform = platform
        self.community = community or self.path.stem
        self.channel = channel
        self.speed = speed
        self.start_after = start_after
        self.max_gap = max_gap
        #: The monotonic clock paced replays keep their schedule on (a test may set another).
        self.clock: Callable[[], float] = time.monotonic
        self._due = 0.0  # when the current post is due, on ``clock``
        self.max_clock_skew = max_clock_skew
        self.name = f"replay:{self.path.name}"
        self.stats = ReplayStats()

    async def messages(self) -> AsyncIterator[Message]:
        """Yield the file's valid rows as Messages, paced by ``speed``.

        Raises:
            SourceUnavailable: the file is missing, unreadable, or fails mid-read.
        """
        self.stats = stats = ReplayStats()
        previous: datetime | None = None
        started = self.start_after is None
        # Key -> hash of (author, text) of the first row with that key in this pass: a later
        # row under the same key with other content is a duplicate id, not an edit, and the
        # first is kept. An identical repeat passes (the store ignores it), as does every
        # row of a rerun over an already-stored file.
        seen: dict[tuple[str, str, str], int] = {}
        try:
            # surrogateescape: a bad byte becomes a lone surrogate that row_to_message
            # rejects as one malformed row, instead of a decode error ending the replay.
            file = self.path.open(encoding="utf-8-sig", errors="surrogateescape", newline="")
        except OSError as exc:
            raise SourceUnavailable(
                f"cannot open replay file {self.path}: {exc.strerror or exc}"
            ) from exc
        with file:
            rows = self._csv_rows(file) if self.format == "csv" else self._jsonl_rows(file)
            try:
                for line_no, item in rows:
                    stats.read += 1
                    if not started:
                        stats.before_start += 1
                        started = isinstance(item, dict) and _raw_id(item) == self.start_after
                        if isinstance(item, dict):
                            # Remembered, so a resumed pass still keeps the first of two
                            # rows that share an id across the resume point.
                            with contextlib.suppress(MalformedRow):
                                _first_seen(seen, self._message(item))
                        continue
                    try:
                        if isinstance(item, MalformedRow):
                            raise item
                        message = self._message(item)
                    except MalformedRow as exc:
                        stats.skipped += 1
                        stats.reasons[exc.reason] += 1
                        logger.warning("%s line %d skipped: %s", self.path.name, line_no, exc)
                        continue
                    if not _first_seen(seen, message):
                        stats.duplicates += 1
                        logger.warning(
                            "%s line %d skipped: duplicate id %r (another author or text)",
                            self.path.name,
                            line_no,
                            message.message_id,
                        )
                        continue
                    await self._pace(previous, message.created_at, stats.yielded)
                    previous = message.created_at
                    stats.yielded += 1
                    yield message
            except OSError as exc:
                raise SourceUnavailable(
                    f"reading replay file {self.path} failed: {exc.strerror or exc}"
                ) from exc
        if not started:
            logger.warning(
                "%s: start_after id %r not found; nothing replayed",
                self.path.name,
                self.start_after,
            )
        logger.info(
            "%s replayed: %d read, %d yielded, %d skipped %s, %d duplicate ids",
            self.path.name,
            stats.read,
            stats.yielded,
            stats.skipped,
            dict(stats.reasons),
            stats.duplicates,
        )

    def _message(self, row: Mapping[str, object]) -> Message:
        """``row_to_message`` with this replay's defaults and clock bound."""
        return row_to_message(
            row,
            platform=self.platform,
            community=self.community,
            channel=self.channel,
            max_clock_skew=self.max_clock_skew,
        )

    async def _pace(self, previous: datetime | None, current: datetime, yielded: int) -> None:
        """Wait until the post is due, or just let other tasks run.

        Due times are kept on a schedule from the first post (each one the scaled gap, at
        most ``max_gap``, after the previous one's due time), not slept gap by gap: time the
        consumer spends between posts would otherwise add up, and a replay "at real time"
        would fall further behind the wall clock every minute however fast the bot is (the
        soak's replay lag grew 0.5 s a minute with the CPU 60 % idle). A consumer that falls
        behind gets the posts that are due without waiting, as a live source would send them.
        """
        if self.speed is not None:
            if previous is None:
                self._due = self.clock()
                return
            gap = (current - previous).total_seconds() / self.speed
            self._due += min(max(gap, 0.0), self.max_gap)
            delay = self._due - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
                return
        # A replay that never sleeps awaits nothing else; yield now and then so the loop
        # (alerts, commands) stays responsive.
        if yielded % _YIELD_EVERY == _YIELD_EVERY - 1:
            await asyncio.sleep(0)

    def _csv_rows(self, file: Iterator[str]) -> Iterator[tuple[int, _Row]]:
        """(line number, row or its problem) per CSV record; the header names the columns.

        Raises:
            SourceUnavailable: the header has no id or no text column (not a replay file).
        """
        # The limit is process-wide in the csv module; it is only ever raised here.
        csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
        reader = csv.reader(file)
        header: list[str] | None = None
        while True:
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:  # e.g. a field over CSV_FIELD_LIMIT; reader goes on
                yield reader.line_num, MalformedRow("bad CSV record", str(exc))
                continue
            if not record or (len(record) == 1 and not record[0].strip()):
                continue  # blank line
            if header is None:
                header = [name.strip().lower() for name in record]
                for needed in ("message_id", "text"):
                    if not set(ALIASES[needed]) & set(header):
                        raise SourceUnavailable(
                            f"{self.path.name} is not a replay file: its header has no "
                            f"{' or '.join(ALIASES[needed])} column"
                        )
                continue
            if len(record) != len(header):
                detail = f"{len(record)} fields, header has {len(header)}"
                yield reader.line_num, MalformedRow("wrong field count", detail)
                continue
            row: dict[str, object] = dict(zip(header, record, strict=True))
            yield reader.line_num, row

    def _jsonl_rows(self, file: Iterator[str]) -> Iterator[tuple[int, _Row]]:
        """(line number, row or its problem) per non-blank JSONL line."""
        for line_no, line in enumerate(file, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:  # its message has a position, not the text
                yield line_no, MalformedRow("bad JSON", exc.msg)
                continue
            except ValueError:  # an integer over Python's 4300-digit conversion limit
                yield line_no, MalformedRow("bad JSON", "number too long")
                continue
            except RecursionError:
                yield line_no, MalformedRow("bad JSON", "nested too deep")
                continue
            if not isinstance(value, dict):
                yield line_no, MalformedRow("not a JSON object", type(value).__name__)
                continue
            yield line_no, {str(key).strip().lower(): v for key, v in value.items()}


def _first_seen(seen: dict[tuple[str, str, str], int], message: Message) -> bool:
    """Record ``message`` in ``seen``; False when its key came earlier with other content."""
    key = (message.platform, message.channel, message.message_id)
    content = hash((message.author, message.text))
    return seen.setdefault(key, content) == content


def _raw_id(row: Mapping[str, object]) -> str | None:
    """The row's message id as a string, unvalidated (for finding the resume point)."""
    value = _pick(row, "message_id")
    return None if value is None else str(value).strip()
