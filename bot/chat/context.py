"""What every command handler shares: its context, the user-input errors, argument parsing, the
assets moodring knows and readings computed on demand."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from bot.chat.links import DashboardLinks
from bot.market.candles import BUNDLED
from bot.mood.index import NORM_SPAN, IndexParams, Point, compute_reading, with_norm
from bot.render import reading_text, scope_label
from bot.store import Store
from bot.types import MoodReading, Scope
from connectors.types import Command
from nlp.assets import AssetTable

T = TypeVar("T")

_ASSET_RE = re.compile(r"^\$?[A-Za-z][A-Za-z0-9]{1,9}(?:\.X)?$")


class UsageError(ValueError):
    """Bad arguments: the reply is the command's usage line."""


class UnknownAssetError(LookupError):
    """An asset the store has never seen: no message mentioned it and it has no prices."""

    def __init__(self, asset: str) -> None:
        super().__init__(asset)
        self.asset = asset


class HeldPoints(Protocol):
    """The recent scored messages a live bot holds in memory (its index engine): commands
    read their readings from them rather than load days of rows from the store each time."""

    def held(
        self, since: datetime, until: datetime
    ) -> tuple[list[Point], list[tuple[str, ...]]] | None:
        """The messages in ``[since, until]`` and the assets each names; None when they
        cannot be vouched for (the store is read instead)."""
        ...

    def covered(self) -> datetime | None:
        """Since when the held messages are complete (the volume baselines start there)."""
        ...

    def memo(self, key: Hashable, at: datetime, compute: Callable[[], T]) -> T:
        """``compute()``, or the value it gave for ``key`` a moment before ``at`` (the live
        bot's short memo of command readings)."""
        ...


@dataclass(frozen=True, slots=True)
class CommandContext:
    """What a command needs: the store, "now", the index parameters and the coin table
    (which turns aliases such as "bitcoin" into symbols)."""

    store: Store
    now: datetime
    params: IndexParams = field(default_factory=IndexParams)
    assets: AssetTable = field(default_factory=AssetTable.load)
    #: The operator's allow-list of chat communities ("telegram:-100123"); a command from a
    #: group not on it gets one line naming the setting. None: not checked (the console).
    communities: frozenset[str] | None = None
    #: The live bot's held messages; None (the console's one-shot commands, digests, tests):
    #: readings read the store.
    held: HeldPoints | None = None
    #: Signs ``/dashboard``'s links; None where the dashboard is not set up (digests, tests).
    links: DashboardLinks | None = None


# ---------------------------------------------------------------------- arguments


def asset_arg(arg: str, table: AssetTable) -> str:
    """A symbol from a user's word: ``$BTC.X``, ``btc``, ``bitcoin`` and ``xbt`` are all BTC."""
    if not _ASSET_RE.match(arg):
        raise UsageError(f"{arg[:20]!r} is not an asset symbol")
    word = arg.lstrip("$").removesuffix(".X")
    return alias(word, table)


def alias(word: str, table: AssetTable) -> str:
    """The symbol a ticker or one-word coin name stands for (unknown words: upper-cased)."""
    return table.cashtags.get(word.lower(), word.upper())


def split_args(
    args: tuple[str, ...], options: tuple[str, ...], table: AssetTable
) -> tuple[str | None, str | None]:
    """One optional asset and one optional option (window/span), in any order."""
    asset = option = None
    for arg in args:
        if arg.lower() in options:
            if option is not None:
                raise UsageError("one window at most")
            option = arg.lower()
        elif re.fullmatch(r"\d+[a-z]+", arg.lower()):
            raise UsageError(f"{arg[:10]!r} is not one of {', '.join(options) or 'the options'}")
        elif asset is None:
            asset = asset_arg(arg, table)
        else:
            raise UsageError("one asset at most")
    return asset, option


def dm_target(cmd: Command) -> str:
    """The target of a direct message to the user who sent ``cmd``."""
    # A Discord DM goes to the user, not to a channel id; Telegram's user id is their DM chat.
    return f"user:{cmd.user}" if cmd.platform == "discord" else cmd.user


# ---------------------------------------------------------------------- known assets


def is_known_asset(store: Store, table: AssetTable, asset: str) -> bool:
    """Whether moodring knows ``asset``: a coin of its table, a bundled reference asset, or one
    the store has seen (mentioned in a message, or with candles or a ticker).

    Args:
        store: The database, read only.
        table: The coin table messages are read with.
        asset: An upper-case symbol, e.g. ``"BTC"``.
    """
    if table.known(asset) or asset in BUNDLED:
        return True
    return store.asset_known(asset)


def known_assets(store: Store) -> list[str]:
    """The assets the store knows, most mentioned first: those messages mentioned, then those
    with only candles, a ticker or bundled reference closes, alphabetically.

    Args:
        store: The database, read only.
    """
    mentions, priced = store.known_assets()
    for asset in sorted(priced) + list(BUNDLED):
        mentions.setdefault(asset, 0)
    return sorted(mentions, key=lambda a: (-mentions[a], a))


def known(ctx: CommandContext, asset: str) -> str:
    """``asset`` itself, if moodring knows it.

    Raises:
        UnknownAssetError: it does not (the reply then lists the ones it does).
    """
    if not is_known_asset(ctx.store, ctx.assets, asset):
        raise UnknownAssetError(asset)
    return asset


# ---------------------------------------------------------------------- readings on demand


def span_of(ctx: CommandContext, window: str) -> timedelta:
    """How far back a reading of ``window`` reads: the window and its baseline windows."""
    spec = ctx.params.spec(window)
    return timedelta(seconds=spec.seconds * (spec.baseline_windows + 1))


class StoreHeld:
    """``HeldPoints`` read from the store: where no index engine runs (`moodring ask`, the
    digests) or where the live one cannot vouch for its copy."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def held(self, since: datetime, until: datetime) -> tuple[list[Point], list[tuple[str, ...]]]:
        rows = self.store.scored_since(since, until)
        return [r.to_point() for r in rows], [r.assets for r in rows]

    def covered(self) -> datetime | None:
        return self.store.oldest_message_time()


def recent(
    ctx: CommandContext, since: datetime, until: datetime
) -> tuple[list[Point], list[tuple[str, ...]], datetime | None]:
    """The scored messages in ``[since, until]``, the assets each names, and since when they
    are complete: from the live bot's held messages when it has them, else the store."""
    if ctx.held is not None and (got := ctx.held.held(since, until)) is not None:
        return got[0], got[1], ctx.held.covered()
    stored = StoreHeld(ctx.store)  # no engine, or it stepped aside
    points, assets = stored.held(since, until)
    return points, assets, stored.covered()


def by_asset(
    ctx: CommandContext, since: datetime
) -> tuple[dict[str, list[Point]], datetime | None]:
    """Each asset's scored messages from ``since`` to ``ctx.now``, read in one pass, and since
    when they are complete."""
    points, assets, covered = recent(ctx, since, ctx.now)
    out: dict[str, list[Point]] = {}
    for point, named in zip(points, assets, strict=True):
        for asset in named:
            out.setdefault(asset, []).append(point)
    return out, covered


def scope_points(
    ctx: CommandContext, scope: Scope, since: datetime, at: datetime
) -> tuple[list[Point], datetime | None]:
    """``scope``'s scored messages from ``since`` to ``at``, and since when they are
    complete."""
    points, assets, covered = recent(ctx, since, at)
    inside = [
        p
        for p, named in zip(points, assets, strict=True)
        if scope.covers(p.community, p.platform, named)
    ]
    return inside, covered


def reading_at(
    ctx: CommandContext, scope: Scope, window: str, at: datetime | None = None
) -> tuple[MoodReading, list[Point]]:
    """The reading of ``scope`` over ``window`` as of ``at`` (default ``ctx.now``); in a live
    bot, the same question's answer from a moment ago (``HeldPoints.memo``)."""
    when = at or ctx.now

    def compute() -> tuple[MoodReading, list[Point]]:
        points, tracked = scope_points(ctx, scope, when - span_of(ctx, window), when)
        return reading_of(ctx, points, scope, window, when, tracked), points

    if ctx.held is None:
        return compute()
    return ctx.held.memo(("reading", scope, window), when, compute)


def reading_of(
    ctx: CommandContext,
    points: list[Point],
    scope: Scope,
    window: str,
    at: datetime,
    tracked: datetime | None,
) -> MoodReading:
    """The reading of ``scope`` over ``window`` as of ``at`` from its ``points`` (the span
    ``span_of`` gives, complete since ``tracked``), with its norm."""
    reading = compute_reading(points, scope, window, at, ctx.params, tracked_since=tracked)
    # The norm comes from the stored readings before ``at`` (the index ticks them hourly).
    norm = ctx.store.reading_norm(scope, window, at - NORM_SPAN, at)
    return with_norm(reading, *norm)


def change_since(ctx: CommandContext, scope: Scope, window: str, now_value: float | None) -> str:
    """``", +3 vs 24h ago"``: how far the reading moved (1h back for 1h, else a day); "" if
    either end has no value."""
    if now_value is None:
        return ""
    back = timedelta(hours=1) if window == "1h" else timedelta(days=1)
    before, _ = reading_at(ctx, scope, window, ctx.now - back)
    if before.value is None:
        return ""
    delta = round(now_value) - round(before.value)
    return f", {delta:+d} vs {'1h' if window == '1h' else '24h'} ago"


def mood_line(ctx: CommandContext, scope: Scope, window: str) -> tuple[str, MoodReading]:
    """One line of /mood for ``scope`` (reading, change, what was set aside) and its reading."""
    reading, _ = reading_at(ctx, scope, window)
    extra = ""
    if reading.spam_count or reading.set_aside:
        extra = f"; set aside: {reading.spam_count} spam, {reading.set_aside} not English"
    title = ""
    if scope.community != "*":  # named by its title: "-1001234567890" means nothing to members
        title = ctx.store.community_title(scope.platform, scope.community)
    line = (
        f"{scope_label(scope, title)}: {reading_text(reading)}"
        f"{change_since(ctx, scope, window, reading.value)}{extra}"
    )
    return line, reading
