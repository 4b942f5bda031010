"""The command registry: each chat command declared once, with the decorator
:meth:`Registry.command`; /help, usage lines, role checks and the Discord slash tree read it."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.chat.context import CommandContext
from connectors.types import Command, Reply, SlashParam, SlashSpec

#: Who a command is for. "member": anyone. "moderator": a chat's moderators, about their
#: community. "operator": about the bot itself, in full only for the operator (the console,
#: ``moodring ask``, and the ``operators`` setting's users in a direct message: the "operator"
#: role); a chat's moderators may run it too, and see only their community's part.
Audience = Literal["member", "moderator", "operator"]
Handler = Callable[[Command, CommandContext], Reply]

_RANK: dict[Audience, int] = {"member": 0, "moderator": 1, "operator": 2}
_NAME_RE = re.compile(r"[a-z]{1,32}")
#: Discord's limit for a command's description, which is the help line's description.
DESCRIPTION_LIMIT = 100


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """One chat command and everything the platforms need to know about it.

    ``usage`` is what a user who got the arguments wrong reads: the call, then (after three
    spaces) an example or a note, e.g. ``"/mood [ASSET] [1h|24h|7d]   e.g. /mood BTC 24h"``.
    /help shows ``"<call> — <help>"``, the call being ``syntax`` when given (a friendlier
    example than the usage's placeholders), else the usage line up to its three spaces.
    """

    name: str
    handler: Handler
    usage: str
    help: str  # what it does, one line; also the Discord slash command's description
    audience: Audience = "member"
    #: A member command whose answer depends on the asker's roles (moderators may do more,
    #: or the reply goes elsewhere): in a group the platform must look them up first.
    uses_roles: bool = False
    params: tuple[SlashParam, ...] = ()  # the options of its slash command, in argument order
    aliases: tuple[str, ...] = ()  # answered too, but not listed (Telegram's /start)
    syntax: str = ""
    note: str = ""  # a further /help line, under this one

    def __post_init__(self) -> None:
        for word in (self.name, *self.aliases):
            if not _NAME_RE.fullmatch(word):
                raise ValueError(f"{word!r}: a command name is 1-32 lower-case letters")
        if not self.usage.startswith(f"/{self.name}"):
            raise ValueError(f"/{self.name}: the usage line must start with /{self.name}")
        if not self.help or "\n" in self.help or len(self.help) > DESCRIPTION_LIMIT:
            raise ValueError(f"/{self.name}: help is one line of 1-{DESCRIPTION_LIMIT} characters")

    @property
    def moderators_only(self) -> bool:
        """Whether only a chat's moderators (and the operator) may run it."""
        return self.audience != "member"

    @property
    def allowed_roles(self) -> frozenset[str]:
        """The roles, any one of which lets a user run it (empty: anyone may)."""
        if self.audience == "operator":
            return frozenset({"admin", "operator"})
        return frozenset({"admin"}) if self.moderators_only else frozenset()

    @property
    def needs_roles(self) -> bool:
        """Whether, in a group, the platform must look up the asker's real roles first."""
        return self.moderators_only or self.uses_roles

    def help_line(self) -> str:
        """The command's entry in /help (one line, or two with a note)."""
        call = self.syntax or self.usage.split("   ", 1)[0]
        line = f"{call} — {self.help}"
        return f"{line}\n  {self.note}" if self.note else line

    def slash(self) -> SlashSpec:
        """The command as a slash command (its description is the help, capitalised)."""
        return SlashSpec(self.name, self.help[:1].upper() + self.help[1:], self.params)


class Registry:
    """The chat commands, and the /help that lists them.

    Like discord.py's ``Bot``: the command modules register their handlers with
    :meth:`command`, the registry brings its own help command, and everything that lists,
    explains or checks a command asks here. /help lists members' commands, then moderators',
    then the operator's (each in the order they were declared), then itself; so the order
    never depends on which module happened to be imported first.

    Example::

        @COMMANDS.command("trending", usage="/trending", help="assets whose mentions rose most")
        def cmd_trending(cmd: Command, ctx: CommandContext) -> Reply: ...
    """

    def __init__(self, intro: str) -> None:
        """Create a registry holding only its own /help.

        Args:
            intro: the paragraph /help opens with.
        """
        self.intro = intro
        self._specs: dict[str, CommandSpec] = {}
        self._names: dict[str, str] = {}  # a name or an alias → the command's name
        self.add(
            CommandSpec(
                name="help",
                handler=self._help,
                usage="/help",
                help="what moodring can do (this message)",
                aliases=("start",),  # Telegram sends /start when a user opens the chat
            )
        )

    def command(
        self,
        name: str,
        *,
        usage: str,
        help: str,
        audience: Audience = "member",
        uses_roles: bool = False,
        params: Sequence[SlashParam] = (),
        aliases: Sequence[str] = (),
        syntax: str = "",
        note: str = "",
    ) -> Callable[[Handler], Handler]:
        """Declare a command; the decorated function is its handler (returned unchanged).

        Arguments are :class:`CommandSpec`'s fields.

        Raises:
            ValueError: the name is taken, or the declaration is malformed.
        """

        def register(handler: Handler) -> Handler:
            self.add(
                CommandSpec(
                    name=name,
                    handler=handler,
                    usage=usage,
                    help=help,
                    audience=audience,
                    uses_roles=uses_roles,
                    params=tuple(params),
                    aliases=tuple(aliases),
                    syntax=syntax,
                    note=note,
                )
            )
            return handler

        return register

    def add(self, spec: CommandSpec) -> None:
        """Register ``spec`` after those already there.

        Raises:
            ValueError: its name or an alias is taken, or its options are out of order.
        """
        for word in (spec.name, *spec.aliases):
            if word in self._names:
                raise ValueError(f"/{word} is declared twice")
        spec.slash()  # SlashSpec checks that required options come first
        self._specs[spec.name] = spec
        for word in (spec.name, *spec.aliases):
            self._names[word] = spec.name

    def get(self, name: str) -> CommandSpec | None:
        """The command called ``name`` (or having it as an alias), or None."""
        found = self._names.get(name)
        return None if found is None else self._specs[found]

    def __iter__(self) -> Iterator[CommandSpec]:
        """Every command, /help included, in /help order."""
        # sorted() is stable: within an audience, the order of declaration.
        return iter(sorted(self._specs.values(), key=_position))

    def __len__(self) -> int:
        return len(self._specs)

    def names(self) -> tuple[str, ...]:
        """The commands' names in /help order, without aliases."""
        return tuple(spec.name for spec in self)

    def usage(self, name: str) -> str:
        """The usage line of ``name``; ``"/help"`` for a command we do not have."""
        spec = self.get(name)
        return spec.usage if spec is not None else "/help"

    def help_text(self) -> str:
        """The intro, a blank line, and one entry per command."""
        return self.intro + "\n\n" + "\n".join(spec.help_line() for spec in self)

    def slash_specs(self) -> tuple[SlashSpec, ...]:
        """Every command as a slash command, for a platform's command tree."""
        return tuple(spec.slash() for spec in self)

    def _help(self, cmd: Command, ctx: CommandContext) -> Reply:
        return Reply(text=self.help_text())


def _position(spec: CommandSpec) -> tuple[bool, int]:
    return spec.name == "help", _RANK[spec.audience]


#: The one registry. The command modules register into it as they are imported; use it
#: through ``bot.chat.commands``, which imports them all.
COMMANDS = Registry(
    intro="moodring reads this community's messages and gives a 0–100 mood index\n"
    "(0–25 Extreme Fear · 26–46 Fear · 47–54 Neutral · 55–75 Greed · 76–100 Extreme Greed)."
)
