"""Coverage-guided fuzzing of moodring's input parsers with atheris (not part of ``make test``).

The hypothesis tests (tests/test_fuzz_*.py) run in CI; this explores further, for as long as
you let it. Each target feeds raw bytes to one parser and fails on any exception but the
parser's documented one, or on a result that breaks our types' invariants.

    .venv/bin/pip install atheris
    mkdir -p corpus/telegram
    .venv/bin/python scripts/fuzz_parsers.py telegram -max_total_time=300 corpus/telegram

Targets: replay-row, replay-file, telegram, stooq, candle-file. An empty corpus folder is
seeded with a few good inputs first. A crash leaves its input in ``crash-*`` (replay it by
passing the file instead of a corpus folder).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from bot.errors import ConfigError
    from bot.market.candles import read_candles_csv
    from connectors.bounds import EARLIEST_POST, MAX_CLOCK_SKEW_S, MAX_COUNT
    from connectors.errors import MalformedInput, SourceUnavailable
    from connectors.quotes import parse_csv
    from connectors.replay import ReplaySource, row_to_message
    from connectors.telegram import update_to_event
    from connectors.types import Candle, Command, Message

_DIR = Path(tempfile.mkdtemp(prefix="moodring-fuzz-"))


def check_message(m: Message) -> None:
    latest = datetime.now(UTC) + timedelta(seconds=MAX_CLOCK_SKEW_S)
    assert EARLIEST_POST <= m.created_at <= latest, m.created_at
    assert m.created_at.utcoffset() == timedelta(0)
    assert m.text.strip() and m.message_id.strip()
    for text in (m.platform, m.community, m.channel, m.message_id, m.author, m.text):
        text.encode("utf-8")  # storable: no lone surrogates
    m.community_title.encode("utf-8")
    assert all(0 <= n <= MAX_COUNT for n in (m.likes, m.replies, m.reposts))


def check_candle(c: Candle) -> None:
    prices = (c.open, c.high, c.low, c.close)
    assert all(math.isfinite(p) and p > 0 for p in prices), prices
    assert c.low <= min(c.open, c.close) and max(c.open, c.close) <= c.high, prices
    assert math.isfinite(c.volume) and c.volume >= 0
    assert c.ts <= datetime.now(UTC) + timedelta(days=1)


def replay_row(data: bytes) -> None:
    try:
        row = json.loads(data)
    except (ValueError, RecursionError):
        return
    if not isinstance(row, dict):
        return
    with contextlib.suppress(MalformedInput):
        check_message(row_to_message(row))


def replay_file(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    suffix = "csv" if fdp.ConsumeBool() else "jsonl"
    path = _DIR / f"posts.{suffix}"
    path.write_bytes(fdp.ConsumeBytes(fdp.remaining_bytes()))
    source = ReplaySource(path)

    async def run() -> list[Message]:
        return [m async for m in source.messages()]

    try:
        messages = asyncio.run(run())
    except SourceUnavailable:
        assert suffix == "csv"  # a CSV whose header is no replay file's: documented
        return
    for m in messages:
        check_message(m)
    stats = source.stats
    assert stats.read == stats.yielded + stats.skipped + stats.duplicates


def telegram(data: bytes) -> None:
    try:
        update = json.loads(data)
    except (ValueError, RecursionError):
        return
    event = update_to_event(update, "moodring_bot")
    if isinstance(event, Message):
        check_message(event)
    else:
        assert event is None or isinstance(event, Command)


def stooq(data: bytes) -> None:
    text = data.decode("utf-8", "replace")
    try:
        candles = parse_csv(text, "SPY")
    except MalformedInput:
        return
    for c in candles or []:
        check_candle(c)


def candle_file(data: bytes) -> None:
    path = _DIR / "candles.csv"
    path.write_bytes(data)
    try:
        got = read_candles_csv(path, "BTC")
    except ConfigError:
        return
    for c in got.candles:
        check_candle(c)


TARGETS: dict[str, Callable[[bytes], None]] = {
    "replay-row": replay_row,
    "replay-file": replay_file,
    "telegram": telegram,
    "stooq": stooq,
    "candle-file": candle_file,
}


_POST = {
    "message_id": 7,
    "date": 1714564800,
    "chat": {"id": -100123, "type": "supergroup", "title": "BTC club", "username": "btc"},
    "from": {"id": 42, "is_bot": False, "first_name": "a"},
    "text": "BTC to the moon",
}
#: Starting inputs, written to an empty corpus folder: random bytes seldom make JSON or CSV.
SEEDS: dict[str, list[str]] = {
    "replay-row": [
        '{"id": "1", "created_at": "2024-05-01T12:00:00Z", "likes": 3, "text": "gm"}',
        '{"message_id": 2, "time": 1714564800, "user": "b", "text": "$ETH", "replies": "1"}',
    ],
    "replay-file": [
        "\x00id,created_at,author,tag,likes,text\n1,2024-05-01,a,,0,gm\n2,2024-05-02,b,Bullish,3,ok\n",
        '\x01{"id": "1", "created_at": "2024-05-01", "text": "gm"}\n{"id": 2, "text": "x"}\n',
    ],
    "telegram": [
        json.dumps({"update_id": 1, "message": _POST}),
        json.dumps({"update_id": 2, "message": {**_POST, "text": "/mood@moodring_bot btc"}}),
        json.dumps({"update_id": 3, "channel_post": {**_POST, "sender_chat": {"id": -1}}}),
    ],
    "stooq": ["Date,Open,High,Low,Close,Volume\r\n2024-01-05,98.1,99.4,97.6,99.02,4120345\r\n"],
    "candle-file": ["date,open,high,low,close,volume\n2024-01-04,1,2,0.5,1.5,3\n"],
}


def seed(target: str, args: list[str]) -> None:
    """Write the target's seeds into the corpus folder named in ``args`` if it is empty."""
    folders = [Path(a) for a in args if not a.startswith("-") and Path(a).is_dir()]
    if folders and not any(folders[0].iterdir()):
        for n, text in enumerate(SEEDS[target]):
            (folders[0] / f"seed-{n}").write_bytes(text.encode())


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        print(f"usage: {sys.argv[0]} {{{','.join(TARGETS)}}} [libFuzzer options]")
        raise SystemExit(2)
    name = sys.argv.pop(1)
    target = TARGETS[name]
    seed(name, sys.argv[1:])
    logging.disable(logging.WARNING)  # every skipped row logs one; the fuzzer wants speed
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
