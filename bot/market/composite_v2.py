"""The fear & greed composite "market-v2": market-v1's components, implied volatility in place
of realised where Deribit's DVOL is stored, and sampled liquidations as a component with a
weight fixed in advance (docs/INDEX.md, "Market composite v2"). market-v1 stays as it was."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from bot.market.composite import (
    COMPONENTS,
    VOL_BASELINES,
    VOL_GAIN,
    MarketReading,
    MarketWeights,
    market_components,
)
from bot.market.liquidations import LiquidationWindow
from bot.types import band_of
from connectors.types import Candle, VolatilityIndex

MARKET_V2: Final = "market-v2"
#: The liquidation component's share, fixed in advance: there is no liquidation history to
#: fit it on. The other components keep market-v1's weights (the defaults, or the operator's),
#: scaled to the remaining 90 %; all are renormalised over those present.
LIQUIDATION_WEIGHT: Final = 0.10
ORDER: Final[tuple[str, ...]] = (*COMPONENTS[:-1], "liquidations", "social")
#: How hard a liquidation tilt pulls: 10× the baseline, all longs, reads about 10 (fear).
LIQUIDATION_GAIN: Final = 1.5
#: An implied-volatility bar older than this is not "now".
IV_STALE: Final = timedelta(days=2)


def implied_vol_component(bars: Sequence[VolatilityIndex], t: datetime) -> float | None:
    """Implied volatility against its own 30- and 90-day averages (geometric mean of the two),
    as market-v1 reads realised volatility: a ratio of 1 reads 50, a rise reads fear. Daily
    bars closed by ``t``; None under 30 of them or when the newest is stale."""
    closed = sorted(
        (b for b in bars if b.interval == "1d" and b.ts + timedelta(days=1) <= t),
        key=lambda b: b.ts,
    )
    if len(closed) < VOL_BASELINES[0] or t - (closed[-1].ts + timedelta(days=1)) > IV_STALE:
        return None
    values = [b.close for b in closed if math.isfinite(b.close) and b.close > 0]
    if len(values) < VOL_BASELINES[0]:
        return None
    means = [sum(values[-w:]) / len(values[-w:]) for w in VOL_BASELINES]
    baseline = math.sqrt(means[0] * means[1])
    ratio = values[-1] / baseline
    return 100.0 / (1.0 + ratio**VOL_GAIN)


def liquidation_component(window: LiquidationWindow | None) -> float | None:
    """Sampled liquidations of the last 24 h as 0-100: long liquidations many times their
    baseline read fear, short ones greed, an ordinary day 50. None while collecting."""
    if window is None or window.multiple is None or window.long_share is None:
        return None
    tilt = 2.0 * (window.long_share - 0.5)  # +1: all longs liquidated
    strength = math.log10(max(window.multiple, 1.0))  # 1×: 0, 10×: 1
    return 50.0 - 50.0 * math.tanh(LIQUIDATION_GAIN * tilt * strength)


def market_reading_v2(
    candles: Sequence[Candle],
    t: datetime,
    funding: float | None,
    social: float | None,
    implied: Sequence[VolatilityIndex],
    liquidations: LiquidationWindow | None,
    weights: MarketWeights | None = None,
) -> MarketReading | None:
    """The market-v2 composite as of ``t``; None while the price history is too short.

    Its notes say what stood in for what: realised volatility where no implied volatility is
    stored, and liquidations left out while they are being collected.

    Raises:
        ValueError: as ``market_components`` does.
    """
    components = market_components(candles, t, funding)
    if components is None:
        return None
    notes = []
    iv = implied_vol_component(implied, t)
    if iv is not None:
        components["volatility"] = iv
        notes.append("volatility: implied (Deribit DVOL) against its 30/90-day averages")
    else:
        notes.append("volatility: realised (no implied volatility stored for 30 days)")
    liq = liquidation_component(liquidations)
    if liq is not None:
        components["liquidations"] = liq
    elif liquidations is None:
        notes.append("liquidations: not collected (left out)")
    else:
        days = liquidations.collected / timedelta(days=1)
        notes.append(f"liquidations: collecting ({days:.0f} of 30 days; left out)")
    if social is not None:
        components["social"] = social
    base = weights or MarketWeights()
    raw = {k: LIQUIDATION_WEIGHT if k == "liquidations" else 0.9 * base.of(k) for k in ORDER}
    present = {k: v for k, v in components.items() if k in raw}
    total = math.fsum(raw[k] for k in present)
    if total <= 0:
        raise ValueError(f"no weighted component to combine (got {sorted(present)})")
    used = {k: raw[k] / total for k in ORDER if k in present}
    value = min(100.0, max(0.0, math.fsum(used[k] * present[k] for k in used)))
    ordered = {k: float(present[k]) for k in ORDER if k in present}
    return MarketReading(
        at=t,
        value=value,
        band=band_of(value),
        components=ordered,
        weights=used,
        version=MARKET_V2,
        notes=tuple(notes),
    )
