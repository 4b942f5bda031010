"""Sampled liquidations: a window's totals by side against moodring's own baseline from the same
streams, the cascade alert, and the text both show."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.mood.alerts import AlertState
from bot.store import LiquidationHour
from bot.types import Alert, Scope

#: What the totals are: Binance pushes at most one liquidation per symbol per second, so they
#: are a sample, comparable only with a baseline from the same streams.
SAMPLED = "sampled from Binance and Bybit public streams"
#: Until this much has been collected there is no baseline, alert or composite component.
COLLECTING = timedelta(days=30)
#: The alert's kind and the rule's name in the asset's alert state.
CASCADE = "liquidation"
LIQUIDATION_STATE = "liquidations"
WINDOWS = {"1h": timedelta(hours=1), "24h": timedelta(days=1)}


@dataclass(frozen=True, slots=True)
class CascadeParams:
    """When sampled liquidations are a cascade: this many times their baseline median, and at
    least ``min_usd`` (a multiple of almost nothing is not news); then quiet for ``cooldown``,
    a day: as long as the cascade stays inside the 24h window, so it is announced once."""

    hour_multiple: float = 10.0
    day_multiple: float = 5.0
    min_usd_hour: float = 5e6
    min_usd_day: float = 20e6
    cooldown: timedelta = timedelta(hours=24)


@dataclass(frozen=True, slots=True)
class LiquidationWindow:
    """One window's sampled liquidations of an asset, against the same windows before it.

    ``baseline`` is the median total of the ``COLLECTING`` span's earlier windows of the same
    length (hours with nothing liquidated count as 0); ``None`` while collecting.
    """

    asset: str
    window: str  # "1h" | "24h"
    until: datetime
    longs: float
    shorts: float
    events: int
    baseline: float | None
    collected: timedelta  # how long the streams have been sampled

    @property
    def total(self) -> float:
        return self.longs + self.shorts

    @property
    def collecting(self) -> bool:
        return self.baseline is None

    @property
    def multiple(self) -> float | None:
        """The total as a multiple of the baseline (None while collecting or on a zero one)."""
        if self.baseline is None or self.baseline <= 0:
            return None
        return self.total / self.baseline

    @property
    def long_share(self) -> float | None:
        return self.longs / self.total if self.total > 0 else None


def liquidation_window(
    asset: str,
    hours: Sequence[LiquidationHour],
    first_hour: datetime | None,
    now: datetime,
    window: str = "24h",
) -> LiquidationWindow:
    """The window ending at ``now`` from the hourly totals (which must cover the 30 days
    before it as well), with its baseline once 30 days have been collected."""
    span = WINDOWS[window]
    start = now - span
    longs = sum(h.notional_usd for h in hours if start <= h.hour < now and h.side == "long")
    shorts = sum(h.notional_usd for h in hours if start <= h.hour < now and h.side == "short")
    events = sum(h.events for h in hours if start <= h.hour < now)
    collected = now - first_hour if first_hour is not None else timedelta(0)
    baseline = None
    if first_hour is not None and collected >= COLLECTING + span:
        count = int(COLLECTING / span)
        totals = [0.0] * count
        tick = timedelta(microseconds=1)
        for h in hours:
            if h.hour < start:  # window k covers [start - (k+1)·span, start - k·span)
                k = (start - h.hour - tick) // span
                if k < count:
                    totals[k] += h.notional_usd
        baseline = statistics.median(totals)
    return LiquidationWindow(asset, window, now, longs, shorts, events, baseline, collected)


def money_short(usd: float) -> str:
    """$410M / $2.7B / $85K: liquidation totals at a glance."""
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if usd >= size:
            return f"${usd / size:.1f}{unit}".replace(".0", "")
    return f"${usd:,.0f}"


def _side(w: LiquidationWindow) -> str:
    share = w.long_share
    return "long" if share is not None and share >= 0.5 else "short"


def side_text(w: LiquidationWindow) -> str:
    """ "85 % longs" / "62 % shorts": the side that was liquidated most."""
    share = w.long_share
    if share is None:
        return "none"
    return f"{share:.0%} longs" if share >= 0.5 else f"{1 - share:.0%} shorts"


def liquidation_line(w: LiquidationWindow) -> str:
    """One line for /price and /fear, e.g. "sampled liquidations 24h: $410M, 85 % longs, 6×
    the 30-day median"."""
    head = f"sampled liquidations {w.window}: {money_short(w.total)}"
    if w.total > 0:
        head += f", {side_text(w)}"
    if w.collecting:
        days = w.collected / timedelta(days=1)
        return f"{head} (collecting: {days:.0f} of 30 days, no baseline yet)"
    multiple = w.multiple
    if multiple is None:
        return f"{head} (the 30-day median is $0)"
    return f"{head}, {multiple:.1f}× the 30-day median".replace(".0×", "×")


def cascade_alert(
    w: LiquidationWindow,
    state: AlertState,
    price: float | None,
    level: str | None,
    mood: str | None,
    params: CascadeParams | None = None,
) -> tuple[Alert | None, AlertState]:
    """A cascade: the window's sampled liquidations many times their baseline, outside the
    cooldown. Says which side, with the price, the nearest level and the mood. Never while
    collecting."""
    params = params or CascadeParams()
    multiple = w.multiple
    need, floor = (
        (params.hour_multiple, params.min_usd_hour)
        if w.window == "1h"
        else (params.day_multiple, params.min_usd_day)
    )
    if multiple is None or multiple < need or w.total < floor:
        return None, state
    last = state.fired_at(CASCADE)
    if last is not None and w.until - last < params.cooldown:
        return None, state
    title = (
        f"{w.asset} liquidation cascade: {money_short(w.total)} liquidated in {w.window},"
        f" {side_text(w)} ({multiple:.0f}× the 30-day median)"
    )
    details = [
        f"{SAMPLED}; {w.events} events",
        ", ".join(
            part
            for part in (
                f"price ${price:,.0f}" if price is not None else "",
                f"nearest level {level}" if level else "",
                f"mood {mood}" if mood else "",
            )
            if part
        ),
    ]
    alert = Alert(
        key=f"{CASCADE}|{w.asset}|{w.window}|{_side(w)}|{w.until:%Y-%m-%dT%H}",
        kind=CASCADE,
        scope=Scope(asset=w.asset),
        at=w.until,
        title=title,
        value=w.total,
        previous=w.baseline,
        detail="\n".join(d for d in details if d),
    )
    return alert, state.with_fired(CASCADE, w.until)
