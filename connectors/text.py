"""Text to and from platforms: replies split into the chunks each accepts, and storable text."""

from __future__ import annotations

import re
from collections.abc import Callable


def one_unit(char: str) -> int:
    """Each character counts once (Discord's limits)."""
    return 1


def utf16_units(char: str) -> int:
    """UTF-16 code units of a character, as Telegram counts lengths (emoji count twice)."""
    return 2 if ord(char) > 0xFFFF else 1


def split_text(text: str, limit: int, units: Callable[[str], int] = one_unit) -> list[str]:
    """Split text into chunks of at most ``limit`` units, at line ends where possible.

    A single line longer than ``limit`` is cut inside. Blank-only chunks are dropped (the
    platforms reject them), so blank-only text gives ``[]``.
    """
    chunks: list[str] = []
    while text.strip():
        head, text = split_once(text, limit, units)
        if head.strip():
            chunks.append(head)
    return chunks


def split_once(text: str, limit: int, units: Callable[[str], int] = one_unit) -> tuple[str, str]:
    """The longest head of ``text`` that fits in ``limit``, ending at a line end if one
    fits, and the rest."""
    used = 0
    cut = len(text)
    for i, char in enumerate(text):
        used += units(char)
        if used > limit:
            cut = max(i, 1)
            break
    else:
        return text.rstrip("\n"), ""
    newline = text.rfind("\n", 0, cut)
    if newline > 0:
        cut = newline + 1
    return text[:cut].rstrip("\n"), text[cut:].lstrip("\n")


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def storable(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD.

    JSON may escape half a UTF-16 pair (``"\\ud800"``); decoded, it is a string that UTF-8,
    and so SQLite, refuses, and one such post would fail every retry of the batch holding it.
    """
    return _LONE_SURROGATE.sub("\ufffd", text)
