"""The market alert rules replayed on every daily close of a price history, with no look-ahead."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from bot.market.alerts import (
    MarketAlertParams,
    composite_alert,
    level_alerts,
)
from bot.market.composite import MarketWeights, daily_series
from bot.mood.alerts import AlertParams, AlertState
from bot.types import Alert
from connectors.types import Candle

_DAY = timedelta(days=1)

log = logging.getLogger(__name__)


def replay_market(
    asset: str,
    candles: Sequence[Candle],
    params: MarketAlertParams | None = None,
    bands: AlertParams | None = None,
    weights: MarketWeights | None = None,
) -> tuple[datetime | None, list[Alert]]:
    """The level-break and composite alerts the market rules raise on each daily close, from
    the first close with a composite reading on: ``(that close, the alerts)``.

    Each close sees only the candles closed by then. The composite's readings are
    ``daily_series`` (equal to ``market_reading`` day by day) through ``composite_alert`` with
    its hysteresis state carried from day to day, as ``MarketRules`` does. The breaks are one
    ``level_alerts`` call over the whole span: ``detect_breaks`` warms its state over the
    lookback, so one call gives the breaks of the daily calls (tests/test_track.py checks a
    stretch of BTC), in a second instead of an hour. There is no social or funding history,
    so the composite is the market-only one, and there are no divergences to replay.

    Raises:
        ValueError: candles that are not one asset's consecutive daily bars.
    """
    ordered = sorted(candles, key=lambda c: c.ts)
    readings = daily_series(ordered, weights=weights or MarketWeights())
    if not readings:
        return None, []
    start = readings[0].at
    end = ordered[-1].ts + _DAY
    alerts = level_alerts(
        asset, ordered, start - timedelta(seconds=1), end, None, None, params or MarketAlertParams()
    )
    state = AlertState()
    for reading in readings:
        found, state = composite_alert(asset, reading, state, bands)
        if found is not None:
            alerts.append(found)
    return start, sorted(alerts, key=lambda a: (a.at, a.key))
