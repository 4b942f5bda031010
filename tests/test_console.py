"""Tests for the console sink: text, images, and broken streams."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

from connectors.base import Sink
from connectors.console import ConsoleSink
from connectors.errors import DeliveryError
from connectors.types import Reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 56  # 64 bytes; the sink never decodes it


def send(sink: ConsoleSink, reply: Reply) -> None:
    asyncio.run(sink.send(reply))


def test_writes_the_text_and_satisfies_the_protocol() -> None:
    stream = io.StringIO()
    sink = ConsoleSink(stream)
    assert isinstance(sink, Sink)

    send(sink, Reply("BTC mood: 62 🙂"))
    send(sink, Reply("second\n", target="chan-7"))
    assert stream.getvalue() == "BTC mood: 62 🙂\n[to chan-7]\nsecond\n"


def test_an_image_is_described() -> None:
    stream = io.StringIO()
    send(ConsoleSink(stream), Reply("chart", image=PNG, image_name="btc.png"))
    assert stream.getvalue() == "chart\n[image 'btc.png', 64 bytes]\n"


def test_an_image_is_saved_when_asked_and_never_overwritten(tmp_path: Path) -> None:
    stream = io.StringIO()
    sink = ConsoleSink(stream, image_dir=tmp_path / "charts")
    send(sink, Reply("one", image=PNG, image_name="btc.png"))
    send(sink, Reply("two", image=PNG[:10], image_name="btc.png"))

    first, second = tmp_path / "charts" / "btc.png", tmp_path / "charts" / "btc-1.png"
    assert first.read_bytes() == PNG
    assert second.read_bytes() == PNG[:10]
    assert f"[image saved to {first}]" in stream.getvalue()
    assert f"[image saved to {second}]" in stream.getvalue()


def test_an_image_name_cannot_escape_the_image_dir(tmp_path: Path) -> None:
    images = tmp_path / "images"
    sink = ConsoleSink(io.StringIO(), image_dir=images)
    send(sink, Reply("x", image=PNG, image_name="../../evil.png"))
    send(sink, Reply("y", image=PNG, image_name=".."))
    assert sorted(p.name for p in images.iterdir()) == ["chart.png", "evil.png"]
    assert not (tmp_path / "evil.png").exists()


def test_a_closed_stream_raises_delivery_error() -> None:
    stream = io.StringIO()
    stream.close()
    with pytest.raises(DeliveryError, match="console write failed"):
        send(ConsoleSink(stream), Reply("hello"))


class BrokenPipe(io.StringIO):
    def flush(self) -> None:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_stream_raises_delivery_error() -> None:
    with pytest.raises(DeliveryError) as info:
        send(ConsoleSink(BrokenPipe()), Reply("hello"))
    assert isinstance(info.value.__cause__, BrokenPipeError)
    assert info.value.retry_after is None


def test_an_unwritable_image_dir_raises_delivery_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    stream = io.StringIO()
    with pytest.raises(DeliveryError, match="saving image"):
        send(ConsoleSink(stream, image_dir=blocker), Reply("x", image=PNG))
    assert stream.getvalue() == ""  # nothing half-printed


# ---------------------------------------------------------------------- commands on stdin


def test_console_commands_are_parsed_as_the_operator() -> None:
    from connectors.console import parse_console_command
    from connectors.errors import MalformedInput

    cmd = parse_console_command("  /Mood@moodring_bot BTC 24h ")
    assert cmd is not None
    assert (cmd.name, cmd.args, cmd.platform) == ("mood", ("BTC", "24h"), "console")
    assert "admin" in cmd.roles and cmd.is_private
    assert parse_console_command("   ") is None
    with pytest.raises(MalformedInput, match="start with /"):
        parse_console_command("mood BTC")
    with pytest.raises(MalformedInput):
        parse_console_command("/")


def _answers(tmp_path: Path, data: bytes, as_pipe: bool) -> str:
    import os

    from bot.chat.inbox import ConsoleSource
    from bot.store import Store

    store = Store(tmp_path / "c.db")
    out = io.StringIO()

    async def run() -> list:
        stopping = asyncio.Event()
        if as_pipe:
            r, w = os.pipe()
            os.write(w, data)
            os.close(w)
            stream = os.fdopen(r, "rb")
        else:
            path = tmp_path / "commands.txt"
            path.write_bytes(data)
            stream = path.open("rb")
        with stream:
            source = ConsoleSource(stream, ConsoleSink(out), store, stopping)
            return [m async for m in source.messages()]

    try:
        assert asyncio.run(run()) == []  # it answers commands; it yields no messages
    finally:
        store.close()
    return out.getvalue()


@pytest.mark.parametrize("as_pipe", [True, False])
def test_console_source_answers_each_line_until_end_of_input(tmp_path: Path, as_pipe: bool) -> None:
    text = _answers(tmp_path, b"/help\nhello\n\n/nosuch\n/status\n\xff\xfe/mood\n", as_pipe)
    assert "moodring reads this community" in text  # /help
    assert "commands start with /" in text  # "hello"
    assert "Unknown command /nosuch" in text
    assert "Connectors:" in text  # /status: the console operator is a moderator
    # Undecodable bytes do not stop the reader; the line is answered as best it can be.
    assert text.count("\n") > 10


def test_an_unreadable_stdin_turns_the_console_off_quietly(tmp_path: Path) -> None:
    """nohup gives the process a /dev/null opened for writing only: reading it fails, and
    the console just stops instead of being restarted forever."""
    from bot.chat.inbox import ConsoleSource
    from bot.store import Store

    store = Store(tmp_path / "c.db")

    async def run() -> list:
        with open("/dev/null", "wb") as unreadable:
            source = ConsoleSource(unreadable, ConsoleSink(io.StringIO()), store, asyncio.Event())
            return [m async for m in source.messages()]

    try:
        assert asyncio.run(run()) == []
    finally:
        store.close()
