"""The console as a platform: replies written to a text stream, commands read from stdin."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import BinaryIO, Protocol

from connectors.errors import DeliveryError, MalformedInput, SourceUnavailable
from connectors.types import Command, Reply


class TextOut(Protocol):
    """A text stream ConsoleSink writes to: ``sys.stdout``, a ``StringIO``, or a wrapper that
    prints above a progress bar."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class ConsoleSink:
    """Write each Reply's text to ``stream``; images are described, and saved if asked.

    Example::

        sink = ConsoleSink(sys.stdout, image_dir=Path("charts"))
        await sink.send(Reply("BTC mood: 62 (greedy)", image=png_bytes))
    """

    def __init__(self, stream: TextOut, *, image_dir: Path | None = None) -> None:
        """Create the sink.

        Args:
            stream: where the text goes; it is flushed after every reply.
            image_dir: when set, each reply's PNG is written there (created if needed) and
                its path printed; existing files are never overwritten.
        """
        self.stream = stream
        self.image_dir = image_dir

    async def send(self, reply: Reply) -> None:
        """Write one reply to the stream and flush it.

        Raises:
            DeliveryError: the stream is closed or broken, or the image could not be saved.
        """
        lines = [f"[to {reply.target}]"] if reply.target else []
        lines.append(reply.text.rstrip("\n"))
        if reply.image is not None:
            lines.append(f"[image {reply.image_name!r}, {len(reply.image)} bytes]")
            if self.image_dir is not None:
                saved = _save_image(self.image_dir, reply.image, reply.image_name)
                lines.append(f"[image saved to {saved}]")
        try:
            # One write, so a reply is never left half-printed between two others.
            self.stream.write("\n".join(lines) + "\n")
            self.stream.flush()
        except (OSError, ValueError) as exc:  # ValueError: I/O operation on closed file
            raise DeliveryError(f"console write failed: {exc}") from exc


def _save_image(directory: Path, image: bytes, image_name: str) -> Path:
    """Write the image under ``directory`` with a fresh name; return its path."""
    # Only the final component of the name: a reply must not write outside image_dir.
    name = Path(image_name).name
    if name in ("", ".", ".."):
        name = "chart.png"
    stem, suffix = Path(name).stem, Path(name).suffix
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for n in range(10_000):
            path = directory / (name if n == 0 else f"{stem}-{n}{suffix}")
            try:
                # "xb": fail if it exists, so two replies never clobber each other.
                with path.open("xb") as file:
                    file.write(image)
            except FileExistsError:
                continue
            return path
    except OSError as exc:
        raise DeliveryError(f"saving image {name!r} failed: {exc}") from exc
    raise DeliveryError(f"saving image {name!r} failed: too many files named like it")


async def read_lines(stream: BinaryIO) -> AsyncGenerator[str, None]:
    """Lines typed on a terminal or piped in, read without blocking the event loop.

    A pipe or a terminal is read through the loop's pipe transport; a regular file
    (``< commands.txt``) or ``/dev/null`` cannot be, and is read whole. Ends at end of input.

    Raises:
        SourceUnavailable: stdin is something the event loop cannot watch.
    """
    loop = asyncio.get_running_loop()
    mode = os.fstat(stream.fileno()).st_mode
    if stat.S_ISREG(mode) or (stat.S_ISCHR(mode) and not os.isatty(stream.fileno())):
        # A regular file, or /dev/null (under systemd, nohup or Docker): the event loop
        # cannot watch these, and reading them never blocks for long.
        try:
            data = stream.read()
        except OSError as exc:  # nohup's /dev/null is opened unreadable
            raise SourceUnavailable(f"cannot read commands from stdin: {exc}") from exc
        for raw in data.splitlines():
            yield raw.decode("utf-8", "replace")
        return
    reader = asyncio.StreamReader(limit=64 * 1024)
    try:
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), stream
        )
    except (OSError, ValueError) as exc:  # something else the loop cannot watch
        raise SourceUnavailable(f"cannot read commands from stdin: {exc}") from exc
    try:
        while True:
            try:
                raw = await reader.readline()
            except ValueError:  # a line over the limit: drop it, keep reading
                continue
            if not raw:
                return
            yield raw.decode("utf-8", "replace").rstrip("\r\n")
    finally:
        transport.close()


def parse_console_command(line: str, user: str = "console") -> Command | None:
    """``"/mood BTC 24h"`` typed at the console as a Command from the operator (a moderator
    of the console "community"); None for a blank line.

    Raises:
        MalformedInput: the line is not a command (it does not start with ``/``).
    """
    parts = line.strip().split()
    if not parts:
        return None
    if not parts[0].startswith("/") or len(parts[0]) < 2:
        raise MalformedInput("commands start with /, e.g. /mood BTC (try /help)")
    return Command(
        platform="console",
        community="console",
        channel="console",
        user=user,
        name=parts[0][1:].split("@", 1)[0].lower(),
        args=tuple(parts[1:]),
        roles=frozenset({"admin"}),  # whoever holds the terminal runs the bot
        is_private=True,
    )
