"""Alerts that join price and mood: level breaks, divergence, and the composite's extremes.

Pure functions of the candles and readings known at ``now``; the index engine calls them once
a day, when a daily candle has closed, and stores what they raise with the tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bot.market.composite import MarketReading, divergence
from bot.market.levels import DOWN, LevelBreak, detect_breaks
from bot.mood.alerts import EXTREME, AlertParams, AlertState, extreme_step
from bot.render import money
from bot.types import Alert, MoodReading, Scope, band_of
from connectors.types import Candle

LEVELS = "levels"
DIVERGENCE = "divergence"
#: The alert-state window name under which an asset's market rules keep their state.
MARKET_STATE = "market"
#: In that state, the rule name whose time is the last daily close the rules processed.
DAILY_CLOSE = "daily-close"


@dataclass(frozen=True, slots=True)
class MarketAlertParams:
    """Every number the market rules use (reasons in docs/INDEX.md)."""

    #: Only levels at least this strong alert when broken (0.4: a 30-day extreme, or a swing
    #: touched recently); weaker ones still show in /levels.
    level_min_strength: float = 0.4
    #: A break is a daily close this far (%) beyond the level...
    confirm_pct: float = 1.0
    #: ...and the same level fires again only after price came back this far (%) beyond it.
    rearm_pct: float = 2.0
    divergence_days: int = 7
    divergence_min_mood_change: float = 10.0
    #: One divergence alert per asset and direction in this many days.
    divergence_cooldown_days: int = 3


def mood_words(reading: MoodReading | None, change: float | None) -> str:
    """'mood 12 Extreme Fear (−18 in 24h)', or what the mood is not yet."""
    if reading is None or reading.value is None:
        return "mood still collecting"
    text = f"mood {round(reading.value)} {reading.band}"
    if change is not None:
        text += f" ({round(change):+d} in 24h)".replace("-", "−")
    return text


def level_alerts(
    asset: str,
    candles: Sequence[Candle],
    since: datetime,
    now: datetime,
    mood: MoodReading | None,
    mood_change: float | None,
    params: MarketAlertParams = MarketAlertParams(),
) -> list[Alert]:
    """An alert for each confirmed break of a level by a daily close in ``(since, now]``."""
    breaks = detect_breaks(
        candles,
        since,
        now,
        confirm_pct=params.confirm_pct,
        rearm_pct=params.rearm_pct,
        min_strength=params.level_min_strength,
    )
    return [_break_alert(asset, b, mood, mood_change) for b in breaks]


def _break_alert(
    asset: str, b: LevelBreak, mood: MoodReading | None, change: float | None
) -> Alert:
    down = b.direction == DOWN
    kind_word = "support" if down else "resistance"
    touches = b.level.touches
    history = (
        f"{touches} touch{'es' if touches != 1 else ''} since {b.level.first_at:%b %Y}"
        if b.level.source == "swing"
        else b.level.note
    )
    nxt = (
        f"next {kind_word} {money(b.next_level.price)}"
        if b.next_level is not None
        else f"no {kind_word} left within the last year's range"
    )
    title = (
        f"{asset} broke {'below' if down else 'above'} {money(b.level.price)} {kind_word}"
        f" ({history}); {mood_words(mood, change)}; {nxt}"
    )
    return Alert(
        key=f"{LEVELS}|{asset}|{b.direction}|{b.level.price:.2f}|{b.at:%Y-%m-%d}",
        kind=LEVELS,
        scope=Scope(asset=asset),
        at=b.at,
        title=title,
        value=mood.value if mood is not None else None,
        detail=(
            f"daily close {money(b.close)}, {abs(100 * (b.close / b.level.price - 1)):.1f}%"
            f" {'below' if down else 'above'} the level (strength {b.level.strength:.2f};"
            f" {b.level.note})"
        ),
    )


def divergence_alert(
    asset: str,
    closes: Sequence[tuple[datetime, float]],
    moods: Sequence[tuple[datetime, float]],
    now: datetime,
    state: AlertState,
    params: MarketAlertParams = MarketAlertParams(),
) -> tuple[Alert | None, AlertState]:
    """A divergence alert (price at a new high while the mood falls, or the reverse), at most
    one per direction per cooldown."""
    found = divergence(
        closes,
        moods,
        now,
        window_days=params.divergence_days,
        min_mood_change=params.divergence_min_mood_change,
    )
    if found is None:
        return None, state
    rule = f"{DIVERGENCE}-{found.kind}"
    last = state.fired_at(rule)
    if last is not None and now - last < timedelta(days=params.divergence_cooldown_days):
        return None, state
    alert = Alert(
        key=f"{DIVERGENCE}|{asset}|{found.kind}|{now:%Y-%m-%d}",
        kind=DIVERGENCE,
        scope=Scope(asset=asset),
        at=now,
        title=f"{asset} {found.kind} divergence: {found.explanation}",
        value=found.mood_end,
        previous=found.mood_start,
        detail=(
            f"price {found.price_change_pct:+.1f}% over {found.window_days}d"
            f" ({money(found.price_start)} → {money(found.price_end)}); mood"
            f" {found.mood_start:.0f} → {found.mood_end:.0f}"
        ),
    )
    return alert, state.with_fired(rule, now)


def composite_alert(
    asset: str,
    reading: MarketReading,
    state: AlertState,
    bands: AlertParams | None = None,
) -> tuple[Alert | None, AlertState]:
    """An alert when the composite (market + social) enters an extreme band, with the social
    rule's thresholds and hysteresis (``bands``): it leaves the band only past the exit."""
    v = reading.value
    held, entered = extreme_step(round(v), state.extreme, bands or AlertParams())
    state = replace(state, extreme=held)
    if entered is None:
        return None, state
    parts = ", ".join(f"{name} {value:.0f}" for name, value in reading.components.items())
    # Say what it is made of: the social mood joins only once it is out of "collecting".
    what = "market + social" if "social" in reading.components else "market only"
    alert = Alert(
        key=f"{EXTREME}|composite|{asset}|{entered}|{reading.at:%Y-%m-%d}",
        kind=EXTREME,
        scope=Scope(asset=asset),
        at=reading.at,
        title=(f"{asset} fear & greed composite ({what}) entered {band_of(v)}: {round(v)}/100"),
        value=v,
        detail=f"components: {parts} ({reading.version})",
    )
    return alert, state.with_fired("composite", reading.at)
