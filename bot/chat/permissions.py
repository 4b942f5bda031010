"""Who may run which command, derived from the command registry: the table of docs/SECURITY.md
(``python -m bot.chat.permissions`` prints it, ``--write`` puts it into the file)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from bot.chat.commands import COMMANDS
from bot.chat.registry import CommandSpec, Registry

#: Who asks. "member", "moderator": in a group on the operator's allow-list, without and with
#: the platform's admin role. "operator": a user of the ``operators`` setting, in a direct
#: message (the only place that role is given). "dm": a member in a direct message. "other": a
#: member of a group that is not on the allow-list (its admins fare the same).
Caller = Literal["member", "moderator", "operator", "dm", "other"]
Platform = Literal["telegram", "discord", "console"]
CALLERS: tuple[Caller, ...] = ("member", "moderator", "operator", "dm", "other")
PLATFORMS: tuple[Platform, ...] = ("telegram", "discord", "console")
#: The chat platforms: groups, direct messages and an allow-list. The console has none of
#: them: whoever holds the terminal (or runs ``moodring ask``) is the operator.
CHATS: tuple[Platform, ...] = ("telegram", "discord")

ANSWERED = "answered"
OWN_COMMUNITY = "answered (own community only)"
WHOLE_BOT = "answered (whole bot)"
REFUSED = "refused: moderators only"
NOT_READ = "not read (allow-list)"
NOT_APPLICABLE = "n/a"

#: The roles each caller's command carries when it reaches the dispatcher: "admin" is the
#: platform's own (Telegram getChatAdministrators, Discord Manage Server or a configured role),
#: looked up in a group only; "operator" is given in a direct message only.
CHAT_ROLES: dict[Caller, frozenset[str]] = {
    "member": frozenset(),
    "moderator": frozenset({"admin"}),
    "operator": frozenset({"operator"}),
    "dm": frozenset(),
    "other": frozenset(),
}
#: The console's and ``moodring ask``'s roles: the operator, a moderator of its own "community".
CONSOLE_ROLES = frozenset({"admin", "operator"})

START = "<!-- permissions:start -->"
END = "<!-- permissions:end -->"
DOC = Path(__file__).resolve().parents[2] / "docs" / "SECURITY.md"

Matrix = dict[tuple[str, Caller, Platform], str]

_HEADINGS: dict[Caller, str] = {
    "member": "member",
    "moderator": "moderator",
    "operator": "operator (DM)",
    "dm": "member in a DM",
    "other": "other community",
}


def expected(spec: CommandSpec, caller: Caller, platform: Platform) -> str:
    """What ``caller`` gets from ``spec`` on ``platform``: one of the outcomes above."""
    if platform not in CHATS:
        if caller != "operator":
            return NOT_APPLICABLE  # no groups, no DMs, no other callers than the operator
        roles = CONSOLE_ROLES
    elif caller == "other":
        return NOT_READ  # whatever is asked, and whoever asks: one line naming the setting
    else:
        roles = CHAT_ROLES[caller]
    if spec.moderators_only and not roles & spec.allowed_roles:
        return REFUSED
    if spec.audience == "operator":
        # The operator sees the bot; anyone can make a group and be its admin.
        return WHOLE_BOT if "operator" in roles else OWN_COMMUNITY
    return ANSWERED


def matrix(registry: Registry = COMMANDS) -> Matrix:
    """Every command × caller × platform and what it gets, in /help order."""
    return {
        (spec.name, caller, platform): expected(spec, caller, platform)
        for spec in registry
        for caller in CALLERS
        for platform in PLATFORMS
    }


def _audience(spec: CommandSpec) -> str:
    if spec.audience == "member" and spec.uses_roles:
        return "member (moderators may do more)"
    return spec.audience


def _cell(cells: Matrix, name: str, caller: Caller) -> str:
    """Telegram's and Discord's outcome, written once when they agree."""
    outcomes = {platform: cells[name, caller, platform] for platform in CHATS}
    if len(set(outcomes.values())) == 1:
        return outcomes[CHATS[0]]
    return "; ".join(f"{platform}: {outcome}" for platform, outcome in outcomes.items())


def render(registry: Registry = COMMANDS) -> str:
    """The markdown table (with its legend) that goes between the markers."""
    cells = matrix(registry)
    header = ["command", "audience", *(_HEADINGS[c] for c in CALLERS), "console"]
    lines = [
        "On Telegram and Discord alike (a cell names the platform where they differ). The",
        "console column is the terminal and `moodring ask`: its caller is always the operator",
        "(member, moderator, DM and other community are n/a there).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for spec in registry:
        name = " ".join(f"/{word}" for word in (spec.name, *spec.aliases))
        row = [name, _audience(spec), *(_cell(cells, spec.name, c) for c in CALLERS)]
        row.append(cells[spec.name, "operator", "console"])
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def splice(doc: str, table: str) -> str:
    """``doc`` with ``table`` between its markers (what was there before is replaced).

    Raises:
        ValueError: the markers are missing, or out of order.
    """
    start, end = doc.find(START), doc.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document needs {START} and then {END}")
    return doc[: start + len(START)] + "\n" + table + "\n" + doc[end:]


def between_markers(doc: str) -> str:
    """What ``doc`` holds between its markers, without the newlines around it."""
    start, end = doc.find(START), doc.find(END)
    if start < 0 or end < start:
        raise ValueError(f"the document needs {START} and then {END}")
    return doc[start + len(START) : end].strip("\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot.chat.permissions", description=__doc__)
    parser.add_argument("--write", action="store_true", help="put the table into the document")
    parser.add_argument("--doc", type=Path, default=DOC, help=f"the document (default {DOC})")
    args = parser.parse_args(argv)
    table = render()
    if not args.write:
        sys.stdout.write(table + "\n")
        return 0
    doc: Path = args.doc
    doc.write_text(splice(doc.read_text(encoding="utf-8"), table), encoding="utf-8")
    sys.stdout.write(f"wrote the permission table into {doc}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
