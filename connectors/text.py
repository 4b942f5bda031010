"""Splitting long replies into the chunks a chat platform accepts, at line ends where possible."""

from __future__ import annotations

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
