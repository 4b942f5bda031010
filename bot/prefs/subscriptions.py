"""Alert subscriptions: who gets which alerts, how many a day, and when to stay quiet."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from bot.types import Alert
from bot.userinput import timezone_name, whole_number

KINDS = ("extreme", "swing", "hype", "levels", "divergence")
DEFAULT_DAILY_CAP = 10


class SubscriptionError(ValueError):
    """Bad /subscribe arguments; the message is shown to the user."""


@dataclass(frozen=True, slots=True)
class Subscription:
    """One subscriber's wish: alerts of ``kinds`` about ``asset`` ("*" = any) to ``target``."""

    platform: str
    community: str
    target: str  # where alerts go: a chat id (a DM is the user's own chat)
    user: str
    asset: str = "*"
    kinds: tuple[str, ...] = KINDS
    daily_cap: int = DEFAULT_DAILY_CAP
    quiet_start: int | None = None  # hour of day in ``tz``; None = never quiet
    quiet_end: int | None = None
    tz: str = "UTC"

    def matches(self, alert: Alert) -> bool:
        """Whether ``alert`` is one this subscriber asked for (a digest subscription takes
        no alerts).

        An alert about one community goes only to subscriptions made in that community on
        that platform: its own chat, or a member's DM asked for from there. A private group's
        mood is its own business, so another group, or a DM subscription made elsewhere,
        gets only alerts about all sources (community ``"*"``).
        """
        scope = alert.scope
        # The platform counts too: a Telegram chat and a Discord server can share an id.
        if scope.community != "*" and (
            self.community != scope.community or self.platform != scope.platform
        ):
            return False
        kind = alert.kind.split("-", 1)[0]
        asset_ok = self.asset == "*" or alert.scope.asset == self.asset
        return asset_ok and kind in self.kinds

    def quiet_at(self, now: datetime) -> bool:
        """Whether ``now`` falls in the subscriber's quiet hours (their own time zone)."""
        return in_quiet_hours(now, self.quiet_start, self.quiet_end, self.tz)

    def quiet_ended(self, now: datetime) -> datetime | None:
        """When the subscriber's quiet hours last ended, at or before ``now``."""
        return last_quiet_end(now, self.quiet_start, self.quiet_end, self.tz)

    @property
    def is_digest(self) -> bool:
        """A daily-digest subscription (``/digest``): it takes no alerts, and its
        ``quiet_start`` is the hour the digest goes out."""
        return "digest" in self.kinds

    @property
    def is_group(self) -> bool:
        """Delivered into a group or channel, not to one person's DM (see ``/subscribe``)."""
        return self.target != self.user and not self.target.startswith("user:")


def in_quiet_hours(now: datetime, start_h: int | None, end_h: int | None, tz: str) -> bool:
    """Whether ``now`` falls between the hours ``start_h`` and ``end_h`` in zone ``tz``."""
    if start_h is None or end_h is None:
        return False
    local = now.astimezone(ZoneInfo(tz)).time()
    start, end = time(start_h), time(end_h)
    if start <= end:
        return start <= local < end
    return local >= start or local < end  # quiet hours across midnight, e.g. 22–7


def last_quiet_end(
    now: datetime, start_h: int | None, end_h: int | None, tz: str
) -> datetime | None:
    """The latest end of the quiet hours ``start_h``–``end_h`` (zone ``tz``) at or before
    ``now``, in UTC; ``None`` without quiet hours.

    Delivery counts an alert held through quiet hours as due from then, so the wait it was
    made to do on purpose does not count against its maximum age.
    """
    if start_h is None or end_h is None:
        return None
    local = now.astimezone(ZoneInfo(tz))
    end = local.replace(hour=end_h, minute=0, second=0, microsecond=0)
    if end > local:
        end -= timedelta(days=1)
    return end.astimezone(UTC)


def parse_subscribe(args: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """``("BTC", "extreme")`` → ``("BTC", ("extreme",))``; no asset = any; no kind = all."""
    asset = "*"
    kinds: list[str] = []
    for arg in args:
        word = arg.lower()
        if word == "all":
            kinds = list(KINDS)
        elif word in KINDS:
            kinds.append(word)
        elif asset == "*" and arg.lstrip("$").replace(".X", "").isalnum() and len(arg) <= 12:
            asset = arg.lstrip("$").upper().removesuffix(".X")
        else:
            raise SubscriptionError(
                f"{arg[:20]!r} is neither an asset nor one of {', '.join(KINDS)}"
            )
    return asset, tuple(dict.fromkeys(kinds)) or KINDS


def parse_quiet(text: str, tz: str) -> tuple[int, int, str]:
    """``"22-7"`` and ``"Europe/Berlin"`` → ``(22, 7, "Europe/Berlin")``.

    Raises:
        SubscriptionError: the hours are not two different whole hours 0-23, or ``tz`` names
            no time zone; the message is for the user.
    """
    start_s, sep, end_s = text.partition("-")
    if not sep:
        raise SubscriptionError("quiet hours look like 22-7 (from 22:00 to 07:00)")
    start, end = whole_number(start_s, 0, 23), whole_number(end_s, 0, 23)
    if start is None or end is None or start == end:
        raise SubscriptionError("quiet hours are two different hours between 0 and 23")
    return start, end, parse_timezone(tz)


def parse_timezone(tz: str) -> str:
    """The canonical name of the time zone ``tz`` (``"europe/berlin"`` → ``"Europe/Berlin"``).

    Raises:
        SubscriptionError: no such zone; the message is for the user.
    """
    name = timezone_name(tz)
    if name is None:
        raise SubscriptionError(f"unknown time zone {tz[:40]!r} (e.g. Europe/Berlin)")
    return name


def describe(sub: Subscription, community_title: str = "") -> str:
    """One line for /alerts (a digest names its community by ``community_title`` if known)."""
    if sub.is_digest:
        where = community_title or sub.community
        return f"daily digest of {where} at {sub.quiet_start or 0:02d}:00 {sub.tz}"
    what = "any asset" if sub.asset == "*" else sub.asset
    kinds = "all alerts" if set(sub.kinds) == set(KINDS) else ", ".join(sub.kinds)
    quiet = (
        f", quiet {sub.quiet_start:02d}:00–{sub.quiet_end:02d}:00 {sub.tz}"
        if sub.quiet_start is not None
        else ""
    )
    return f"{what}: {kinds} (up to {sub.daily_cap} a day{quiet})"
