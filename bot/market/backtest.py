"""`moodring backtest`: the composite over the price history, and whether social mood leads price.

Pure analysis of daily series (the CLI gathers them): the market composite's daily readings and
band distribution, the social mood of each day joined in where known, lead/lag correlations of
mood with the next day's return and volatility (Fisher-z intervals), a CSV of the daily rows
and a PNG of price, levels and index.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from itertools import pairwise
from pathlib import Path

from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bot.market.composite import (
    MARKET_VERSION,
    MarketReading,
    MarketWeights,
    composite,
    daily_series,
)
from bot.market.correlation import LagCorr, lead_lag
from bot.market.levels import Level, levels_at
from bot.types import BANDS, band_of
from connectors.types import Candle

LAGS = (-1, 0, 1, 2)
_PRICE_COMPONENTS = ("volatility", "momentum", "volume", "drawdown")


@dataclass(frozen=True, slots=True)
class DayRow:
    """One day of the backtest: the close, the composite as of that close and the day's mood."""

    day: date
    close: float
    composite: float | None
    components: dict[str, float]
    social: float | None  # the 24h social mood over this day, where messages exist


@dataclass(frozen=True, slots=True)
class Backtest:
    """Everything the report prints."""

    rows: list[DayRow]
    bands: dict[str, int]
    returns: list[LagCorr]  # social mood(t) vs return(t + lag)
    volatility: list[LagCorr]  # social mood(t) vs |return|(t + lag)
    levels: list[Level]  # known at the last close
    weights: MarketWeights


def run_backtest(
    candles: Sequence[Candle],
    social: Sequence[tuple[date, float]],
    weights: MarketWeights | None = None,
) -> Backtest:
    """The composite for every day with a year of history behind it; the social mood joined
    in on the days it covers; lead/lag of mood against return and volatility.

    Args:
        candles: consecutive daily candles of one asset.
        social: ``(day, mood)``: the 24h social mood over each day (the reading at the next
            midnight).
        weights: the composite's weights.
    """
    weights = weights or MarketWeights()
    mood = dict(social)
    ordered = sorted(candles, key=lambda c: c.ts)
    market = {r.at.date() - timedelta(days=1): r for r in daily_series(ordered, weights=weights)}
    rows = []
    for c in ordered:
        day = c.ts.date()
        reading: MarketReading | None = market.get(day)
        value, components = None, {}
        if reading is not None:
            prices = {k: v for k, v in reading.components.items() if k in _PRICE_COMPONENTS}
            if day in mood:  # the social mood of the same day joins with its weight
                reading = composite(prices, mood[day], weights, at=reading.at)
            value, components = reading.value, dict(reading.components)
        rows.append(DayRow(day, c.close, value, components, mood.get(day)))
    bands = Counter(band_of(r.composite) for r in rows if r.composite is not None)
    returns = [
        (b.day, b.close / a.close - 1.0) for a, b in pairwise(rows) if b.day - a.day == _ONE_DAY
    ]
    moods = [(r.day, r.social) for r in rows if r.social is not None]
    last = ordered[-1].ts + _ONE_DAY if ordered else None
    return Backtest(
        rows=rows,
        bands={name: bands.get(name, 0) for _, name in BANDS},
        returns=lead_lag(moods, returns, LAGS) if moods else [],
        volatility=lead_lag(moods, [(d, abs(r)) for d, r in returns], LAGS) if moods else [],
        levels=levels_at(ordered, last) if last is not None else [],
        weights=weights,
    )


_ONE_DAY = timedelta(days=1)


def verdict(lags: Sequence[LagCorr], what: str) -> str:
    """One honest sentence on whether today's mood says anything about tomorrow's ``what``."""
    nxt = next((c for c in lags if c.lag == 1), None)
    if nxt is None or nxt.r is None:
        return f"not enough days with both mood and prices to test {what}"
    ci = f"r = {nxt.r:+.2f}, 95% CI [{nxt.ci_low:+.2f}, {nxt.ci_high:+.2f}], n = {nxt.n}"
    if nxt.ci_low is not None and nxt.ci_high is not None and nxt.ci_low <= 0 <= nxt.ci_high:
        return f"on this data, social mood does not lead next-day {what} ({ci})"
    sign = "higher" if nxt.r > 0 else "lower"
    return f"mood leads next-day {what} here: higher mood went with {sign} {what} ({ci})"


def follows_price(lags: Sequence[LagCorr]) -> str:
    """A sentence when yesterday's return clearly moved today's mood (price leading mood)."""
    before = next((c for c in lags if c.lag == -1), None)
    if before is None or before.r is None or before.ci_low is None or before.ci_high is None:
        return ""
    if before.ci_low <= 0 <= before.ci_high:
        return ""
    return (
        f"the reverse holds: yesterday's return moved today's mood (r = {before.r:+.2f},"
        f" 95% CI [{before.ci_low:+.2f}, {before.ci_high:+.2f}]): mood follows price"
    )


def write_csv(result: Backtest, path: Path) -> None:
    """The daily rows: date, close, composite and its components, social mood where known."""
    names = list(_PRICE_COMPONENTS)  # the social component is the social_mood column
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["date", "close", "composite", "band", *names, "social_mood"])
        for r in result.rows:
            out.writerow(
                [
                    r.day.isoformat(),
                    f"{r.close:.2f}",
                    "" if r.composite is None else f"{r.composite:.2f}",
                    "" if r.composite is None else band_of(r.composite),
                    *("" if n not in r.components else f"{r.components[n]:.2f}" for n in names),
                    "" if r.social is None else f"{r.social:.2f}",
                ]
            )


def chart(result: Backtest, title: str) -> bytes:
    """A PNG: price (log scale) with the levels known at the end, and the composite below
    with the band edges; the social mood where known."""
    rows = [r for r in result.rows if r.composite is not None]
    fig = Figure(figsize=(11, 7), dpi=100)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    days = [datetime(r.day.year, r.day.month, r.day.day) for r in result.rows]
    top.plot(days, [r.close for r in result.rows], color="#333333", linewidth=0.8)
    top.set_yscale("log")
    top.set_title(title)
    top.set_ylabel("close (USD, log)")
    if days:
        # The levels known at the last close, drawn over the year they were found in.
        since = max(days[0], days[-1] - timedelta(days=365))
        for level in result.levels:
            alpha = 0.3 + 0.6 * level.strength
            top.hlines(level.price, since, days[-1], color="#3182bd", linewidth=0.8, alpha=alpha)
    x = [datetime(r.day.year, r.day.month, r.day.day) for r in rows]
    bottom.plot(x, [r.composite for r in rows], color="#6a51a3", linewidth=0.7, label="composite")
    social = [(d, r.social) for d, r in zip(days, result.rows, strict=True) if r.social is not None]
    if social:
        bottom.plot(
            *zip(*social, strict=True),
            "o",
            color="#e6550d",
            markersize=2.5,
            label="social mood (24h)",
        )
    for upper, _ in BANDS[:-1]:
        bottom.axhline(upper + 0.5, color="#bbbbbb", linewidth=0.5, linestyle="--")
    bottom.set_ylim(0, 100)
    bottom.set_ylabel(f"fear & greed ({MARKET_VERSION})")
    bottom.legend(loc="upper left", fontsize=8)
    bottom.xaxis.set_major_formatter(mdates.DateFormatter("%Y"))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def report(result: Backtest) -> list[str]:
    """The printed report, line by line (the CLI adds the JSON summary last)."""
    rows = [r for r in result.rows if r.composite is not None]
    lines = []
    if not rows:
        return ["not enough price history for the composite (it needs a year of daily closes)"]
    total = len(rows)
    lines.append(
        f"Market composite ({MARKET_VERSION}) daily from {rows[0].day} to {rows[-1].day}:"
        f" {total:,} days"
    )
    for name, n in result.bands.items():
        lines.append(f"  {name:<13} {n:6,} days  {100 * n / total:5.1f}%")
    by_year: dict[int, list[float]] = {}
    for r in rows:
        by_year.setdefault(r.day.year, []).append(r.composite or 0.0)
    lines.append(
        "  yearly medians: "
        + ", ".join(f"{y} {_median(v):.0f}" for y, v in sorted(by_year.items()))
    )
    social = [r for r in result.rows if r.social is not None]
    if social:
        lines.append(
            f"Social mood: {len(social)} days ({social[0].day} to {social[-1].day}),"
            f" mean {sum(r.social or 0 for r in social) / len(social):.0f}/100"
        )
        pairs = (("return", result.returns), ("volatility (|return|)", result.volatility))
        for title, lags in pairs:
            lines.append(f"  mood(t) vs {title}(t + lag), by lag in days:")
            for c in lags:
                if c.r is None:
                    lines.append(f"    lag {c.lag:+d}: n = {c.n}, too few pairs")
                else:
                    lines.append(
                        f"    lag {c.lag:+d}: r = {c.r:+.2f}  95% CI [{c.ci_low:+.2f},"
                        f" {c.ci_high:+.2f}]  n = {c.n}  p = {c.p_value:.2f}"
                    )
        lines.append("  " + verdict(result.returns, "return"))
        lines.append("  " + verdict(result.volatility, "volatility"))
        follows = follows_price(result.returns)
        if follows:
            lines.append("  " + follows)
    else:
        lines.append("Social mood: no days with messages (give --messages or --db)")
    last = result.rows[-1]
    near = sorted(result.levels, key=lambda lv: abs(math.log(lv.price / last.close)))[:4]
    if near:
        lines.append(
            f"Nearest of the {len(result.levels)} levels at the last close"
            f" ({last.day}, ${last.close:,.0f}): "
            + "; ".join(f"${lv.price:,.0f} {lv.source} ({lv.strength:.2f})" for lv in near)
        )
    return lines


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
