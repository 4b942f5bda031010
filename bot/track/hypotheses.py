"""What each alert kind claims comes next (docs/INDEX.md, "Track record"), and which kind an
alert counts as."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.market.alerts import (
    DIVERGENCE,
    LEVELS,
)
from bot.market.liquidations import CASCADE
from bot.mood.alerts import EXTREME, HYPE, SWING
from bot.types import Alert

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)

#: The horizons measured, in days.
HORIZONS = (1, 7, 30)
#: Below this many cases there is no verdict, only "too few cases".
MIN_CASES = 10

RETURN = "return"
VOLATILITY = "volatility"


@dataclass(frozen=True, slots=True)
class Hypothesis:
    """What one alert kind claims comes next (docs/INDEX.md, "Track record")."""

    kind: str  # the row's id, what ``case_kind`` returns
    label: str  # the row's name in the table
    noun: str  # what a case is called in the record line: "composite extreme-fear entries"
    claim: str
    metric: str  # RETURN or VOLATILITY
    sign: int  # +1: above random days; -1: below
    horizon: int  # the primary horizon, days
    replayed: bool  # cases from replaying the price history (else from stored alerts)
    #: Why the kind has no cases at all yet, where that is known.
    pending: str = ""


HYPOTHESES: tuple[Hypothesis, ...] = (
    Hypothesis(
        "social-extreme-fear",
        "social extreme fear",
        "social extreme-fear entries",
        "contrarian: a rebound",
        RETURN,
        +1,
        7,
        False,
    ),
    Hypothesis(
        "social-extreme-greed",
        "social extreme greed",
        "social extreme-greed entries",
        "contrarian: a pullback",
        RETURN,
        -1,
        7,
        False,
    ),
    Hypothesis("swing", "swing", "mood swings", "news: more volatility", VOLATILITY, +1, 1, False),
    Hypothesis(
        "hype", "hype spike", "hype spikes", "contrarian: a local top", RETURN, -1, 7, False
    ),
    Hypothesis(
        "level-up",
        "level break up",
        "breaks up through resistance",
        "momentum: it keeps rising",
        RETURN,
        +1,
        7,
        True,
    ),
    Hypothesis(
        "level-down",
        "level break down",
        "breaks down through support",
        "momentum: it keeps falling",
        RETURN,
        -1,
        7,
        True,
    ),
    Hypothesis(
        "divergence-bearish",
        "divergence, bearish",
        "bearish divergences",
        "the rally fades",
        RETURN,
        -1,
        7,
        False,
    ),
    Hypothesis(
        "divergence-bullish",
        "divergence, bullish",
        "bullish divergences",
        "the fall reverses",
        RETURN,
        +1,
        7,
        False,
    ),
    Hypothesis(
        "composite-extreme-fear",
        "composite extreme fear",
        "composite extreme-fear entries",
        "contrarian: a rebound",
        RETURN,
        +1,
        30,
        True,
    ),
    Hypothesis(
        "composite-extreme-greed",
        "composite extreme greed",
        "composite extreme-greed entries",
        "contrarian: a pullback",
        RETURN,
        -1,
        30,
        True,
    ),
    Hypothesis(
        "liquidation",
        "liquidation cascade",
        "liquidation cascades",
        "forced selling overshoots: a rebound",
        RETURN,
        +1,
        7,
        False,
        pending="no cases yet (liquidation collection is new)",
    ),
)
BY_KIND = {h.kind: h for h in HYPOTHESES}


def case_kind(alert: Alert) -> str | None:
    """The track-record row an alert counts in, from its kind and dedupe key (which carry the
    direction), or ``None`` for a kind with no hypothesis."""
    parts = alert.key.split("|")
    found: str | None = None
    if alert.kind == EXTREME:
        if alert.key.startswith(f"{EXTREME}|composite|"):  # composite_alert's key
            found = f"composite-extreme-{parts[3]}" if len(parts) > 3 else None
        else:  # the mood rules' key: "extreme-fear:BTC|*|*:24h:bucket"
            found = "social-" + alert.key.split(":", 1)[0]
    elif alert.kind in (SWING, HYPE):
        found = alert.kind
    elif alert.kind == LEVELS and len(parts) > 2:
        found = f"level-{parts[2]}"
    elif alert.kind == DIVERGENCE and len(parts) > 2:
        found = f"divergence-{parts[2]}"
    elif alert.kind == CASCADE and len(parts) > 3 and parts[3] == "long":
        found = "liquidation"  # the claim is about long liquidations (forced selling)
    return found if found in BY_KIND else None
