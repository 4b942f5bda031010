"""Per-community settings that moderators change with /settings (isolated per community)."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime

from bot.prefs.subscriptions import (
    SubscriptionError,
    in_quiet_hours,
    last_quiet_end,
    parse_quiet,
)
from bot.types import Alert
from bot.userinput import decimal_number, whole_number

_CHANNEL = re.compile(r"<?#?[\w:-]{1,40}>?")
USAGE = (
    "/settings · /settings alerts on|off · /settings quiet 22-7 [TZ] | off · "
    "/settings extreme FEAR GREED (e.g. 20 80) · /settings cooldown HOURS · "
    "/settings listen on|off · /settings channels all|ID…"
)


@dataclass(frozen=True, slots=True)
class CommunitySettings:
    """What a community's moderators chose for the alerts delivered into their group."""

    alerts: bool = True
    quiet_start: int | None = None
    quiet_end: int | None = None
    tz: str = "UTC"
    fear_at: int = 25  # extreme alerts reach the group only at or beyond these values
    greed_at: int = 76
    cooldown_h: float = 0.0  # at least this long between two alerts in the group
    listen: bool = True  # read (and score) this community's messages at all
    channels: tuple[str, ...] = ()  # only these channels (empty: all the bot can see)

    def listens_to(self, channel: str) -> bool:
        """Whether messages posted in ``channel`` of this community are read."""
        return self.listen and (not self.channels or channel in self.channels)

    def quiet_at(self, now: datetime) -> bool:
        return in_quiet_hours(now, self.quiet_start, self.quiet_end, self.tz)

    def quiet_ended(self, now: datetime) -> datetime | None:
        """When the group's quiet hours last ended, at or before ``now``."""
        return last_quiet_end(now, self.quiet_start, self.quiet_end, self.tz)

    def wants(self, alert: Alert) -> bool:
        """Whether an alert clears this community's own extreme thresholds."""
        if not alert.kind.startswith("extreme") or alert.value is None:
            return True
        v = round(alert.value)
        return v <= self.fear_at or v >= self.greed_at

    def describe(self) -> str:
        quiet = (
            f"{self.quiet_start:02d}:00–{self.quiet_end:02d}:00 {self.tz}"
            if self.quiet_start is not None
            else "none"
        )
        return (
            f"alerts in this chat: {'on' if self.alerts else 'off'}\n"
            f"quiet hours: {quiet}\n"
            f"extreme alerts at: ≤ {self.fear_at} (fear) or ≥ {self.greed_at} (greed)\n"
            f"cooldown between alerts: {self.cooldown_h:g} h\n"
            f"listening: {'off' if not self.listen else ', '.join(self.channels) or 'all channels'}"
        )


def apply_setting(current: CommunitySettings, args: tuple[str, ...]) -> CommunitySettings:
    """``("quiet", "22-7", "Europe/Berlin")`` → the settings with that change.

    Raises:
        SubscriptionError: with a message for the moderator.
    """
    key, *rest = args
    key = key.lower()
    if key == "alerts" and rest in (["on"], ["off"]):
        return replace(current, alerts=rest[0] == "on")
    if key == "quiet" and rest == ["off"]:
        return replace(current, quiet_start=None, quiet_end=None)
    if key == "quiet" and 1 <= len(rest) <= 2:
        start, end, tz = parse_quiet(rest[0], rest[1] if len(rest) > 1 else "UTC")
        return replace(current, quiet_start=start, quiet_end=end, tz=tz)
    if key == "extreme" and len(rest) == 2:
        fear, greed = whole_number(rest[0], 0, 25), whole_number(rest[1], 76, 100)
        if fear is None or greed is None:
            raise SubscriptionError("extreme thresholds: fear 0–25, greed 76–100")
        return replace(current, fear_at=fear, greed_at=greed)
    if key == "cooldown" and len(rest) == 1:
        hours = decimal_number(rest[0].lower().removesuffix("h"), 0, 168)
        if hours is None:
            raise SubscriptionError("cooldown is a number of hours from 0 to 168, e.g. 6")
        return replace(current, cooldown_h=hours)
    if key == "listen" and rest in (["on"], ["off"]):
        return replace(current, listen=rest[0] == "on")
    if key == "channels" and rest == ["all"]:
        return replace(current, channels=())
    if key == "channels" and rest and all(_CHANNEL.fullmatch(r) for r in rest):
        # "<#123>" is how Discord writes a channel mention; keep the id.
        return replace(current, channels=tuple(r.strip("<#>") for r in rest))
    raise SubscriptionError(USAGE)
