"""The market rules as the index ticks: level breaks, divergence and the composite's extremes,
once per new daily close of each configured asset; the liquidation cascade every tick."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta

from bot.market.alerts import (
    DAILY_CLOSE,
    MARKET_STATE,
    MarketAlertParams,
    composite_alert,
    divergence_alert,
    level_alerts,
)
from bot.market.candles import closed_by
from bot.market.composite_v2 import market_reading_v2
from bot.market.levels import levels_at, nearest
from bot.market.liquidations import LIQUIDATION_STATE, cascade_alert
from bot.market.reads import (
    funding_at,
    implied_daily,
    liquidation_windows,
    liquidations_at,
    price_view,
    stored_weights,
)
from bot.mood.alerts import AlertParams, AlertState
from bot.store import Store
from bot.types import Alert, MoodReading, Scope

log = logging.getLogger(__name__)


class MarketRules:
    """Runs the market alert rules for the configured assets, with their state in the store."""

    def __init__(
        self,
        store: Store,
        assets: Sequence[str],
        alert_params: AlertParams,
        market_params: MarketAlertParams | None = None,
    ) -> None:
        self.store = store
        self.assets = tuple(assets)
        self.alert_params = alert_params
        self.market_params = market_params or MarketAlertParams()

    def alerts(
        self,
        now: datetime,
        readings: list[MoodReading],
        history: Mapping[tuple[str, str], Sequence[MoodReading]],
    ) -> tuple[list[Alert], dict[tuple[str, str], str]]:
        """On the first tick that finds a newer closed daily candle of a configured asset:
        level breaks, divergence and the composite's extremes.

        Each asset's state remembers the last daily close it processed, so a candle that
        reaches the store after the midnight tick (the exchange poll runs a minute later) is
        processed at the next tick instead of being skipped.
        """
        by_key = {(r.scope.key(), r.window): r for r in readings}
        social = by_key.get((Scope().key(), "24h"))
        weights = None  # read only when a new daily close needs the composite
        alerts: list[Alert] = []
        states: dict[tuple[str, str], str] = {}
        day = timedelta(days=1)
        for asset in self.assets:
            found_cascade, liq_state = self._cascade(asset, now, by_key)
            if liq_state is not None:
                alerts += found_cascade
                states[(Scope(asset=asset).key(), LIQUIDATION_STATE)] = liq_state
        for asset in self.assets:
            scope = Scope(asset=asset)
            state = AlertState.from_json(self.store.alert_state(scope.key(), MARKET_STATE))
            done = state.fired_at(DAILY_CLOSE)
            newest = self.store.newest_candle_time(asset, "1d", until=now - day)  # closed
            if newest is None or (done is not None and newest + day <= done):
                continue  # no daily close since the last one processed: skip the reads below
            candles = closed_by(self.store.candles(asset, "1d", now), now)
            if len(candles) < 60:  # too little history for levels: nothing to say
                continue
            close = candles[-1].ts + day  # the newest daily close known now
            if done is None and now - close >= day:
                # A fresh start mid-history: no alerts about old closes. Remember this close,
                # or every tick would read the whole history again to find it.
                states[(scope.key(), MARKET_STATE)] = state.with_fired(DAILY_CLOSE, close).to_json()
                continue
            if done is not None and close <= done:
                continue
            mood = by_key.get((scope.key(), "24h"))
            change = _change_24h(history, scope, mood, now)
            since = done if done is not None else close - timedelta(seconds=1)
            try:
                alerts += level_alerts(
                    asset, candles, since, close, mood, change, self.market_params
                )
            except ValueError as exc:  # malformed stored candles: skip, keep the tick
                log.warning("levels of %s skipped: %s", asset, exc)
            if mood is not None and mood.value is not None:
                days = self.market_params.divergence_days + 2
                closes = [(c.ts + day, c.close) for c in candles[-days:]]
                moods = [
                    (r.at, r.value)
                    for r in self.store.readings(scope, "24h", now - days * day, now)
                    if r.value is not None and r.at.hour == 0 and r.at < now
                ]
                moods.append((now, mood.value))  # this tick's reading is not stored yet
                try:
                    found, state = divergence_alert(
                        asset, closes, moods, now, state, self.market_params
                    )
                except ValueError as exc:  # a bad stored close: skip, keep the tick
                    log.warning("divergence of %s skipped: %s", asset, exc)
                    found = None
                alerts += [found] if found is not None else []
            weights = weights or stored_weights(self.store)
            try:
                # market-v2: equal to market-v1 until implied volatility or 30 days of
                # sampled liquidations are stored (its weights renormalise the same way).
                composite = market_reading_v2(
                    candles,
                    now,
                    funding_at(self.store, asset, now),
                    social.value if social is not None else None,
                    implied_daily(self.store, asset, now),
                    liquidations_at(self.store, asset, now),
                    weights,
                )
            except ValueError as exc:
                log.warning("composite of %s skipped: %s", asset, exc)
                composite = None
            if composite is not None:
                found, state = composite_alert(asset, composite, state, self.alert_params)
                alerts += [found] if found is not None else []
            states[(scope.key(), MARKET_STATE)] = state.with_fired(DAILY_CLOSE, close).to_json()
        return alerts, states

    def _cascade(
        self, asset: str, now: datetime, by_key: Mapping[tuple[str, str], MoodReading]
    ) -> tuple[list[Alert], str | None]:
        """The liquidation cascade rule over the last hour and day, every tick (a cascade is
        news within the hour, not at the daily close); no state change where nothing is
        collected."""
        windows = liquidation_windows(self.store, asset, now)
        if not any(w.multiple for w in windows):
            return [], None  # collecting, or nothing to compare: no reads below
        scope = Scope(asset=asset)
        state = AlertState.from_json(self.store.alert_state(scope.key(), LIQUIDATION_STATE))
        found: list[Alert] = []
        view = price_view(self.store, asset, now)
        price = view.price if view is not None else None
        level = _nearest_level(self.store, asset, now, price)
        mood = by_key.get((scope.key(), "24h"))
        mood_text = (
            f"{mood.value:.0f}/100 {mood.band}"
            if mood is not None and mood.value is not None
            else None
        )
        for window in windows:
            alert, state = cascade_alert(window, state, price, level, mood_text)
            found += [alert] if alert is not None else []
        return found, state.to_json()


def _nearest_level(store: Store, asset: str, now: datetime, price: float | None) -> str | None:
    """ "support $60,000 (−3.2 %)": the level nearest the price, on the side it is heading."""
    if price is None:
        return None
    candles = closed_by(store.candles(asset, "1d", now), now)
    if len(candles) < 60:
        return None
    try:
        supports, resistances = nearest(levels_at(candles, now), price, 1)
    except ValueError:
        return None
    views = supports + resistances
    if not views:
        return None
    view = min(views, key=lambda v: v.distance_pct)
    return f"{view.kind} ${view.level.price:,.0f} ({view.distance_pct:.1f}% away)"


def _change_24h(
    history: Mapping[tuple[str, str], Sequence[MoodReading]],
    scope: Scope,
    mood: MoodReading | None,
    now: datetime,
) -> float | None:
    """How far ``scope``'s 24h mood moved since the same hour yesterday."""
    if mood is None or mood.value is None:
        return None
    for r in history.get((scope.key(), "24h"), ()):
        if r.at == now - timedelta(days=1) and r.value is not None:
            return mood.value - r.value
    return None
