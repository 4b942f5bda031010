"""Each alert's one line of its own track record, as of its own time."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from bot.market.alerts import (
    MarketAlertParams,
)
from bot.market.candles import closed_by
from bot.market.composite_v2 import MARKET_V2
from bot.market.reads import stored_weights
from bot.mood.alerts import AlertParams
from bot.store import Store
from bot.track.hypotheses import (
    BY_KIND,
    MIN_CASES,
    RETURN,
    Hypothesis,
    case_kind,
)
from bot.track.replay import replay_market
from bot.track.stats import (
    N_BOOT,
    SEED,
    Measure,
    Prices,
    measure,
    outcomes,
    verdict,
)
from bot.types import Alert
from connectors.types import Candle

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)


def pct(x: float, digits: int = 0) -> str:
    """+9 % / −4 %, with a true minus sign."""
    return f"{100 * x:+.{digits}f}%".replace("-", "−")


def vol_text(x: float, digits: int = 0) -> str:
    """An annualised volatility: 64%."""
    return f"{100 * x:.{digits}f}%"


def record_line(asset: str, hypothesis: Hypothesis, m: Measure) -> str:
    """The alert's one line of its own record, e.g. "track record: after the 23 past BTC
    composite extreme-fear entries, the 30-day return had median +9% (IQR −4 … +21%), up in
    61% (random days +3%, 55%); no edge (difference +6 points, 95% CI −2 … +14)"."""
    days = f"{m.horizon}-day"
    if m.n < MIN_CASES:
        return (
            f"track record: too few cases ({m.n} past {asset} {hypothesis.noun} with a"
            f" closed {days} horizon; {MIN_CASES} needed)"
        )
    if hypothesis.metric == RETURN:
        own, base, fmt = m.ret, m.base_ret, pct
        what = f"the {days} return"
        way = "up" if hypothesis.sign > 0 else "down"
        scale = "points"
    else:
        own, base, fmt = m.vol, m.base_vol, vol_text
        what = f"the {days} realised volatility (annualised)"
        way = "above the usual" if hypothesis.sign > 0 else "below the usual"
        scale = "points of volatility"
    assert own is not None and base is not None and m.hit is not None and m.base_hit is not None
    text = (
        f"track record: after the {m.n} past {asset} {hypothesis.noun}, {what} had median"
        f" {fmt(own.median)} (IQR {fmt(own.q1)} … {fmt(own.q3)}), {way} in {m.hit:.0%};"
        f" random days {fmt(base.median)}, {m.base_hit:.0%}"
    )
    said = verdict(m, hypothesis)
    if m.ci is None or m.diff is None:
        return f"{text}; {said}"
    low, high = m.ci
    numbers = (
        f"difference {pct(m.diff, 1)[:-1]} {scale}, 95% CI {pct(low, 1)[:-1]} … {pct(high, 1)[:-1]}"
    )
    return f"{text}; {said} ({numbers})"


class TrackRecord:
    """Each new alert's record line, from the store's daily candles and past alerts.

    The index engine calls ``annotate`` before it stores a tick's alerts, so the line is part
    of the stored alert (its ``detail``) and says only what was known at the alert's time.
    The market replay is kept per asset until the stored candles change.
    """

    def __init__(
        self,
        store: Store,
        params: MarketAlertParams | None = None,
        bands: AlertParams | None = None,
        n_boot: int = N_BOOT,
        seed: int = SEED,
    ) -> None:
        self.store = store
        self.params = params or MarketAlertParams()
        self.bands = bands
        self.n_boot = n_boot
        self.seed = seed
        self._replays: dict[str, tuple[tuple[int, datetime], datetime | None, list[Alert]]] = {}

    def annotate(self, alerts: Sequence[Alert]) -> list[Alert]:
        """The alerts with their record line added to ``detail`` (on a line of its own)."""
        out = []
        for alert in alerts:
            line = self.line(alert)
            if line:
                detail = f"{alert.detail}\n{line}" if alert.detail else line
                alert = replace(alert, detail=detail)
            out.append(alert)
        return out

    def line(self, alert: Alert) -> str:
        """The record line of ``alert`` as of its own time ("" for a kind with no hypothesis)."""
        hypothesis = BY_KIND.get(case_kind(alert) or "")
        if hypothesis is None:
            return ""
        asset = alert.scope.asset
        if asset == "*":
            return "track record: none (an alert about all assets follows no one price)"
        now = alert.at
        candles = closed_by(self.store.candles(asset, "1d", now), now)
        if len(candles) < 2:
            return f"track record: none yet (no daily prices of {asset})"
        try:
            if hypothesis.replayed:
                start, replayed = self._replay(asset, candles)
                if start is None:
                    return f"track record: none yet (under a year of {asset} prices to replay)"
                times = [a.at for a in replayed if case_kind(a) == hypothesis.kind]
            else:
                start = self.store.oldest_message_time() or now
                times = [
                    a.at
                    for a in self.store.alerts_about(alert.scope, now)
                    if case_kind(a) == hypothesis.kind
                ]
            prices = Prices.of(candles)
            m = measure(
                prices,
                outcomes(prices, hypothesis.horizon),
                times,
                start,
                now,
                now,
                hypothesis,
                self.n_boot,
                self.seed,
            )
        except ValueError as exc:  # malformed stored candles: say so, keep the tick
            log.warning("track record of %s skipped: %s", alert.key, exc)
            return f"track record: unavailable ({exc})"
        line = record_line(asset, hypothesis, m)
        if hypothesis.kind.startswith("composite") and MARKET_V2 in alert.detail:
            # The composite alerts are market-v2's; their past is market-v1's price-only
            # replay (there is no liquidation or implied-volatility history), and says so.
            line = line.replace("track record:", "track record (market-v1, price only):", 1)
        return line

    def _replay(self, asset: str, candles: list[Candle]) -> tuple[datetime | None, list[Alert]]:
        key = (len(candles), candles[-1].ts)
        held = self._replays.get(asset)
        if held is None or held[0] != key:
            start, alerts = replay_market(
                asset, candles, self.params, self.bands, stored_weights(self.store)
            )
            held = (key, start, alerts)
            self._replays = {asset: held, **{a: v for a, v in self._replays.items() if a != asset}}
        return held[1], held[2]
