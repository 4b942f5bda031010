"""Strict parsers for what users type into commands: whole numbers, decimals and time-zone names.

Python's own parsing is too lenient for text from a chat: ``str.isdigit`` and ``int()`` accept
``'²'``, Arabic-Indic digits, ``'_'`` and surrounding spaces, ``int()`` of a very long digit
string raises past the interpreter's digit limit, and ``ZoneInfo`` treats its key as a path
(``"Europe"`` is a directory, a 300-character name too long a file name). Each parser here
accepts a fixed ASCII pattern of bounded length and a bounded value, and answers None for
anything else, so a command can reply with its usage line instead of raising.
"""

from __future__ import annotations

import re
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

# [0-9], not \d: \d matches every Unicode digit. Nine digits stay far below any digit limit.
_WHOLE_RE = re.compile(r"[0-9]{1,9}")
_DECIMAL_RE = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,8})?")
#: An IANA name: "UTC", "Europe/Berlin", "America/Argentina/Buenos_Aires", "Etc/GMT+5". No
#: dots, so never "..": the name cannot climb out of the zone directory.
_TZ_RE = re.compile(r"[A-Za-z][A-Za-z0-9_+-]{0,29}(?:/[A-Za-z0-9_+-]{1,30}){0,2}")


def whole_number(text: str, low: int, high: int) -> int | None:
    """``text`` as an int if it is 1–9 ASCII digits with a value from ``low`` to ``high``.

    Args:
        text: What the user typed, e.g. ``"22"``.
        low: The smallest value accepted.
        high: The largest value accepted.

    Returns:
        The value, or None when ``text`` is not such a number.
    """
    if not _WHOLE_RE.fullmatch(text):
        return None
    value = int(text)
    return value if low <= value <= high else None


def decimal_number(text: str, low: float, high: float) -> float | None:
    """``text`` as a float if it is ASCII digits with an optional fraction (``"6"``, ``"0.5"``)
    and a value from ``low`` to ``high``; no sign, exponent, ``nan`` or ``inf``.

    Returns:
        The value, or None when ``text`` is not such a number.
    """
    if not _DECIMAL_RE.fullmatch(text):
        return None
    value = float(text)
    return value if low <= value <= high else None


def timezone_name(text: str) -> str | None:
    """The IANA time-zone name ``text`` stands for, in its canonical case
    (``"europe/berlin"`` → ``"Europe/Berlin"``), or None if there is no such zone.

    Only names matching a strict pattern are looked up, and only among the zones this machine
    has; where it lists none (no tzdata), loading the zone decides, its errors caught.
    """
    if not _TZ_RE.fullmatch(text):
        return None
    zones = _zones()
    if zones:
        return zones.get(text.lower())
    try:
        ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None
    return text


@lru_cache(maxsize=1)
def _zones() -> dict[str, str]:
    """Every available zone, by its lower-cased name (listing them reads the disk: once)."""
    return {name.lower(): name for name in available_timezones()}
