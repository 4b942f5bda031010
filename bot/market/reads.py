"""The market side of chat answers: price, composite fear & greed, levels and correlation."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from itertools import pairwise

from bot.market.candles import closed_by, daily_closes
from bot.market.composite import MarketReading, MarketWeights
from bot.market.correlation import rolling_correlation
from bot.market.levels import levels_at, nearest
from bot.market.liquidations import COLLECTING, WINDOWS, LiquidationWindow, liquidation_window
from bot.render import money
from bot.store import Store
from bot.types import band_of
from connectors.types import Candle, VolatilityIndex

log = logging.getLogger(__name__)

#: Where ``moodring run`` publishes the composite's configured weights, so every process
#: (``moodring ask``, a moderator's ``/fear``) reads the composite the same way.
WEIGHTS_CHECKPOINT = "market:weights"
#: A ticker older than this is not "the price now".
FRESH = timedelta(hours=2)
#: /levels names this many of a community's manual levels, those nearest the price.
MANUAL_LISTED = 12


def save_weights(store: Store, weights: MarketWeights, now: datetime) -> None:
    """Publish the composite's weights (see docs/INDEX.md)."""
    doc = {f.name: getattr(weights, f.name) for f in fields(weights)}
    store.set_checkpoint(WEIGHTS_CHECKPOINT, json.dumps(doc, sort_keys=True), now)


def stored_weights(store: Store) -> MarketWeights:
    """The published weights, or the defaults."""
    text = store.checkpoint(WEIGHTS_CHECKPOINT)
    if not text:
        return MarketWeights()
    try:
        return MarketWeights(**json.loads(text))
    except (TypeError, ValueError) as exc:  # written by another version: keep the tick going
        log.warning("published market weights unreadable (%s); using the defaults", exc)
        return MarketWeights()


def funding_at(store: Store, asset: str, now: datetime) -> float | None:
    """The asset's perpetual funding rate, if a fresh ticker has one."""
    ticker = store.latest_ticker(asset, now)
    if ticker is None or now - ticker.at > FRESH:
        return None
    return ticker.funding_rate


def composite_v2_at(
    store: Store, asset: str, now: datetime, social: float | None
) -> tuple[MarketReading | None, str]:
    """The market-v2 composite of ``asset`` as of ``now`` (implied volatility and sampled
    liquidations where stored), and why there is none when there is none."""
    from bot.market.composite_v2 import market_reading_v2

    candles = closed_by(daily_closes(store, asset, now), now)
    implied = implied_daily(store, asset, now)
    try:
        reading = market_reading_v2(
            candles,
            now,
            funding_at(store, asset, now),
            social,
            implied,
            liquidations_at(store, asset, now),
            stored_weights(store),
        )
    except ValueError as exc:
        return None, f"the stored {asset} daily history is not usable ({exc})"
    if reading is None:
        return None, (
            f"needs a year of {asset} daily candles up to the last two days"
            f" (stored: {len(candles)}; `moodring prices backfill {asset}`)"
        )
    return reading, ""


_LABELS = {
    "volatility": "volatility",
    "momentum": "momentum",
    "volume": "volume",
    "drawdown": "drawdown",
    "funding": "funding",
    "social": "social mood (all assets and sources)",
    "liquidations": "liquidations (sampled)",
}


def composite_lines(reading: MarketReading) -> list[str]:
    """The composite and each component with its weight, one per line."""
    lines = [f"{round(reading.value)}/100 {reading.band} ({reading.version})"]
    for name, value in reading.components.items():
        weight = reading.weights.get(name, 0.0)
        lines.append(
            f"• {_LABELS.get(name, name)}: {value:.0f}/100 {band_of(value)} (weight {weight:.0%})"
        )
    lines += [f"  ({note})" for note in reading.notes]
    return lines


@dataclass(frozen=True, slots=True)
class PriceView:
    """What ``/price`` says of an asset as of a time."""

    price: float
    at: datetime
    source: str  # "ticker" | "1h close" | "1d close"
    change_24h_pct: float | None
    volatility_30d: float | None  # annualised, from daily closes
    funding_rate: float | None
    open_interest: float | None


def price_view(
    store: Store, asset: str, now: datetime, daily: list[Candle] | None = None
) -> PriceView | None:
    """The freshest price we hold (a ticker, else the newest closed candle), its 24h change,
    30-day realised volatility and funding; None when nothing is stored. ``daily``: the
    asset's daily candles closed by ``now``, when the caller has already read them."""
    if daily is None:
        daily = closed_by(daily_closes(store, asset, now), now)
    hourly = closed_by(store.candles(asset, "1h", now), now)
    ticker = store.latest_ticker(asset, now)
    vol = _volatility(daily[-31:])
    if ticker is not None and now - ticker.at <= FRESH:
        return PriceView(
            ticker.last,
            ticker.at,
            "ticker",
            ticker.change_24h_pct,
            vol,
            ticker.funding_rate,
            ticker.open_interest,
        )
    if hourly and (not daily or hourly[-1].ts >= daily[-1].ts):
        last = hourly[-1]
        before = [c for c in hourly if c.ts <= last.ts - timedelta(hours=24)]
        change = 100 * (last.close / before[-1].close - 1) if before else None
        return PriceView(
            last.close, last.ts + timedelta(hours=1), "1h close", change, vol, None, None
        )
    if daily:
        last = daily[-1]
        change = 100 * (last.close / daily[-2].close - 1) if len(daily) > 1 else None
        return PriceView(
            last.close, last.ts + timedelta(days=1), "1d close", change, vol, None, None
        )
    return None


def _volatility(candles: list[Candle]) -> float | None:
    """Annualised realised volatility of daily log returns.

    Annualised by the closes a year holds, counted from the data: about 365 for crypto,
    which never closes, and 252 for an equity's trading days.
    """
    if len(candles) < 8:
        return None
    rets = [math.log(b.close / a.close) for a, b in pairwise(candles)]
    mean = sum(rets) / len(rets)
    var = sum((r - mean) ** 2 for r in rets) / (len(rets) - 1)
    days = (candles[-1].ts - candles[0].ts).total_seconds() / 86_400
    per_year = len(rets) * 365.25 / days
    return math.sqrt(var * per_year)


def corr_text(store: Store, a: str, b: str, window_days: int, now: datetime) -> str:
    """``/corr``'s answer: the rolling correlation of daily returns, on aligned trading days."""
    series = {}
    for asset in (a, b):
        candles = closed_by(daily_closes(store, asset, now), now)
        if not candles:
            return f"No daily prices for {asset} (bundled: BTC, IGV, QQQ, GLD, SPY)."
        series[asset] = [(c.ts.date(), c.close) for c in candles]
    result = rolling_correlation(series[a], series[b], window_days)
    if result is None:
        return f"Not enough common trading days for {a} and {b} in the last {window_days} days."
    strength = abs(result.r)
    word = "strong" if strength >= 0.7 else "moderate" if strength >= 0.4 else "weak"
    direction = "positive" if result.r >= 0 else "negative"
    stale = ""
    if (now.date() - result.end).days > 7:
        stale = f" (the newest common close is {result.end}; prices are not current)"
    return (
        f"{a}–{b} correlation of daily returns, {window_days}d to {result.end}: "
        f"r = {result.r:+.2f} ({word} {direction}), {result.n} aligned trading days"
        f" from {result.start}{stale}"
    )


def levels_text(
    store: Store, asset: str, now: datetime, platform: str, community: str, n: int = 3
) -> str:
    """``/levels``'s answer: the nearest supports and resistances known now, with distance,
    strength and how each was found (this community's manual levels included)."""
    candles = closed_by(daily_closes(store, asset, now), now)
    manual = store.manual_levels(platform, community, asset)
    if not candles:
        return f"No stored prices for {asset} yet (`moodring prices backfill {asset}`)."
    price = price_view(store, asset, now, candles)
    last = price.price if price is not None else candles[-1].close
    supports, resistances = nearest(levels_at(candles, now, manual=manual), last, n)
    lines = [f"{asset} {money(last)} — levels as of {now:%Y-%m-%d %H:%M} UTC (daily candles)"]
    for title, views in (("Resistance", resistances), ("Support", supports)):
        if not views:
            lines.append(f"{title}: none within the last year's range")
        for v in views:
            lines.append(
                f"{title} {money(v.level.price)} ({v.distance_pct:.1f}% away,"
                f" strength {v.level.strength:.2f}): {v.level.note}"
            )
    if manual:
        # The nearest ones, lowest first: a community's moderators may have added hundreds.
        near = sorted(sorted(manual, key=lambda p: abs(p - last))[:MANUAL_LISTED])
        listed = ", ".join(money(p) for p in near)
        if len(manual) > len(near):
            listed += f" and {len(manual) - len(near)} more"
        lines.append("Manual levels here: " + listed)
    return "\n".join(lines)


def liquidations_at(
    store: Store, asset: str, now: datetime, window: str = "24h"
) -> LiquidationWindow | None:
    """The sampled liquidations of ``asset`` in the window ending at ``now``, against their
    baseline; None when none were ever collected for it."""
    windows = liquidation_windows(store, asset, now, (window,))
    return windows[0] if windows else None


def liquidation_windows(
    store: Store, asset: str, now: datetime, windows: Sequence[str] = tuple(WINDOWS)
) -> list[LiquidationWindow]:
    """``liquidations_at`` for several windows from one read of the hourly totals; empty
    when none were ever collected for ``asset``."""
    first = store.first_liquidation_hour(asset)
    if first is None:
        return []
    span = max(WINDOWS[w] for w in windows)
    hours = store.liquidation_hours(asset, now - span - COLLECTING, now)
    return [liquidation_window(asset, hours, first, now, w) for w in windows]


#: The implied-volatility history market-v2 reads (its 90-day average, and room for gaps).
IV_HISTORY = timedelta(days=120)


def implied_daily(store: Store, asset: str, now: datetime) -> list[VolatilityIndex]:
    """The daily implied-volatility bars market-v2's volatility component reads."""
    return store.implied_vol(asset, "1d", now - IV_HISTORY, now)


#: An implied-volatility reading older than this is not shown as "now".
IV_FRESH = timedelta(days=2)


def implied_vol_at(store: Store, asset: str, now: datetime) -> VolatilityIndex | None:
    """The newest implied-volatility bar of ``asset`` closed by ``now`` (hourly, else daily),
    if it is under two days old."""
    for interval, step in (("1h", timedelta(hours=1)), ("1d", timedelta(days=1))):
        bars = [
            b for b in store.implied_vol(asset, interval, now - IV_FRESH, now) if b.ts + step <= now
        ]
        if bars:
            return bars[-1]
    return None


def implied_vol_line(iv: VolatilityIndex, realised: float | None) -> str:
    """The implied volatility beside the realised, e.g. "implied volatility 97% (deribit
    DVOL, 1h bar 02-05 14:00) vs 64% realised over 30 days"."""
    bar = f"{iv.interval} bar {iv.ts:%m-%d %H:%M}"
    line = f"implied volatility {iv.close:.0f}% ({iv.source} DVOL, {bar})"
    if realised is not None:
        line += f" vs {realised:.0%} realised over 30 days"
    return line
