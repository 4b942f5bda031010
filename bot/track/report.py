"""`moodring track`: every kind over every horizon, as a table, a JSON summary, a CSV and a PNG."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bot.market.alerts import (
    MarketAlertParams,
)
from bot.market.composite import MarketWeights
from bot.mood.alerts import AlertParams
from bot.track.hypotheses import (
    HORIZONS,
    HYPOTHESES,
    MIN_CASES,
    RETURN,
    VOLATILITY,
    Hypothesis,
    case_kind,
)
from bot.track.record import pct, record_line, vol_text
from bot.track.replay import replay_market
from bot.track.stats import (
    N_BOOT,
    SEED,
    Measure,
    Prices,
    Spread,
    measure,
    outcomes,
    verdict,
)
from bot.types import Alert, Scope
from connectors.types import Candle

log = logging.getLogger(__name__)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Row:
    """One kind's record: a measure per horizon, or why there is none."""

    hypothesis: Hypothesis
    measures: tuple[Measure, ...]
    note: str = ""  # why the kind could not be measured at all (no database, ...)

    @property
    def primary(self) -> Measure | None:
        return next((m for m in self.measures if m.horizon == self.hypothesis.horizon), None)

    @property
    def verdict(self) -> str:
        if self.note:
            return self.note
        primary = self.primary
        return verdict(primary, self.hypothesis) if primary else "no cases"


@dataclass(frozen=True, slots=True)
class TrackReport:
    """Everything `moodring track` prints."""

    asset: str
    now: datetime  # the last close: every horizon closed by then counts
    replay_from: datetime | None
    watched: tuple[datetime, datetime] | None  # the stored alerts' span (the messages')
    rows: list[Row]
    lines: dict[str, str] = field(default_factory=dict)  # kind → its record line as of now


def track(
    asset: str,
    candles: Sequence[Candle],
    stored: Sequence[Alert],
    watched: tuple[datetime, datetime] | None,
    params: MarketAlertParams | None = None,
    bands: AlertParams | None = None,
    weights: MarketWeights | None = None,
    missing: str = "",
    n_boot: int = N_BOOT,
    seed: int = SEED,
) -> TrackReport:
    """The record of every kind over every horizon, as of the last close.

    Args:
        asset: the asset measured.
        candles: its daily candles.
        stored: alerts from a database: the social kinds and divergence are counted from
            those about the asset's own scope.
        watched: the span the database's messages cover (the random days of those kinds).
        params, bands, weights: the market rules' numbers, for the replay.
        missing: why ``stored`` is empty when there is no database (shown on those rows).
        n_boot, seed: the bootstrap's.
    """
    prices = Prices.of(candles)
    if not len(prices.times):
        raise ValueError("no daily candles")
    now = datetime.fromtimestamp(float(prices.times[-1]), UTC)
    start, replayed = replay_market(asset, candles, params, bands, weights)
    by_horizon = {h: outcomes(prices, h) for h in HORIZONS}
    own = Scope(asset=asset)
    rows, lines = [], {}
    for hyp in HYPOTHESES:
        if hyp.replayed:
            times = [a.at for a in replayed if case_kind(a) == hyp.kind]
            span = (start, now) if start is not None else None
            note = "" if start is not None else "under a year of prices: nothing to replay"
        else:
            times = [a.at for a in stored if a.scope == own and case_kind(a) == hyp.kind]
            span = watched
            note = missing if watched is None and not hyp.pending else ""
        if span is None:
            rows.append(Row(hyp, (), note or hyp.pending or "no cases"))
            continue
        measures = tuple(
            measure(prices, by_horizon[h], times, span[0], span[1], now, hyp, n_boot, seed)
            for h in HORIZONS
        )
        row = Row(hyp, measures)
        rows.append(row)
        if row.primary is not None and row.primary.n:
            lines[hyp.kind] = record_line(asset, hyp, row.primary)
    return TrackReport(asset, now, start, watched, rows, lines)


def _spread(s: Spread | None, fmt: str = "ret") -> str:
    if s is None:
        return "—"
    if fmt == "vol":
        return f"{vol_text(s.median)} ({vol_text(s.q1)}…{vol_text(s.q3)})"
    return f"{pct(s.median, 1)} ({pct(s.q1, 1)} … {pct(s.q3, 1)})"


def report(result: TrackReport) -> list[str]:
    """The printed table, line by line (the CLI adds the JSON summary last)."""
    lines = []
    header = (
        f"{'kind':<24}{'h':>4}{'n':>5}  {'return: median (IQR)':<27}{'random':>8}"
        f"{'hit':>6}{'rand':>6}  {'vol (IQR), annualised':<20}{'random':>7}"
        f"  {'diff 95% CI':<18}verdict"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for row in result.rows:
        hyp = row.hypothesis
        if not row.measures:
            lines.append(f"{hyp.label:<24}{'':>4}{0:>5}  {row.verdict}")
            continue
        names = [hyp.label, f"  {hyp.claim}"[:23]]
        for k, m in enumerate(row.measures):
            name = names[k] if k < len(names) else ""
            star = "*" if m.horizon == hyp.horizon else " "
            hit = f"{m.hit:.0%}" if m.hit is not None else "—"
            base_hit = f"{m.base_hit:.0%}" if m.base_hit is not None else "—"
            base = pct(m.base_ret.median, 1) if m.base_ret else "—"
            base_vol = vol_text(m.base_vol.median) if m.base_vol else "—"
            if m.ci is not None:
                fmt = pct if hyp.metric == RETURN else signed_vol
                ci = f"{fmt(m.ci[0], 1)} … {fmt(m.ci[1], 1)}"
            else:
                ci = "—"
            said = verdict(m, hyp) if m.n >= MIN_CASES or m is row.primary else ""
            lines.append(
                f"{name:<24}{m.horizon:>3}d{star}{m.n:>4}  {_spread(m.ret):<27}{base:>8}"
                f"{hit:>6}{base_hit:>6}  {_spread(m.vol, 'vol'):<20}{base_vol:>7}"
                f"  {ci:<18}{said}"
            )
    lines.append(
        '* the hypothesis\' primary horizon (docs/INDEX.md, "Track record"); hit: the share'
        " that moved the hypothesis' way; random: every day of the same span; diff: the"
        " hypothesis' metric, cases' median minus random days', block-bootstrap 95% CI"
    )
    if result.replay_from is not None:
        lines.append(
            f"market kinds replayed on every daily close from {result.replay_from:%Y-%m-%d}"
            f" to {result.now:%Y-%m-%d}; social kinds and divergence from "
            + (
                f"the stored alerts of {result.watched[0]:%Y-%m-%d} to {result.watched[1]:%Y-%m-%d}"
                if result.watched
                else "no database"
            )
        )
    for row in result.rows:
        line = result.lines.get(row.hypothesis.kind)
        if line:
            lines.append(f"{row.hypothesis.label}: {line.removeprefix('track record: ')}")
    return lines


def signed_vol(x: float, digits: int = 0) -> str:
    return f"{100 * x:+.{digits}f}".replace("-", "−")


def summary(result: TrackReport) -> dict[str, object]:
    """The JSON summary: per kind its primary horizon's numbers and verdict."""
    kinds: dict[str, object] = {}
    for row in result.rows:
        hyp, m = row.hypothesis, row.primary
        metric = None
        if m is not None and m.n:
            own = m.ret if hyp.metric == RETURN else m.vol
            base = m.base_ret if hyp.metric == RETURN else m.base_vol
            metric = {
                "median": own.median if own else None,
                "iqr": [own.q1, own.q3] if own else None,
                "random_median": base.median if base else None,
                "hit": m.hit,
                "random_hit": m.base_hit,
                "diff": m.diff,
                "ci": list(m.ci) if m.ci else None,
            }
        kinds[hyp.kind] = {
            "metric": hyp.metric,
            "sign": hyp.sign,
            "horizon_days": hyp.horizon,
            "cases": m.n if m is not None else 0,
            "verdict": row.verdict,
            "primary": metric,
        }
    return {
        "asset": result.asset,
        "as_of": result.now.isoformat(),
        "replay_from": result.replay_from.isoformat() if result.replay_from else None,
        "stored_from": result.watched[0].isoformat() if result.watched else None,
        "stored_to": result.watched[1].isoformat() if result.watched else None,
        "kinds": kinds,
    }


def write_csv(result: TrackReport, path: Path) -> None:
    """One row per kind and horizon, every number in the table."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(
            [
                "kind",
                "metric",
                "sign",
                "horizon_days",
                "primary",
                "cases",
                "random_days",
                "return_median",
                "return_q1",
                "return_q3",
                "random_return_median",
                "random_return_q1",
                "random_return_q3",
                "vol_median",
                "vol_q1",
                "vol_q3",
                "random_vol_median",
                "hit_rate",
                "random_hit_rate",
                "diff",
                "diff_ci_low",
                "diff_ci_high",
                "verdict",
            ]
        )
        for row in result.rows:
            hyp = row.hypothesis
            if not row.measures:
                out.writerow([hyp.kind, hyp.metric, hyp.sign, hyp.horizon, True, 0, 0])
                continue
            for m in row.measures:

                def num(x: float | None) -> str:
                    return "" if x is None else f"{x:.6f}"

                def parts(s: Spread | None) -> list[str]:
                    return [num(s.median), num(s.q1), num(s.q3)] if s else ["", "", ""]

                out.writerow(
                    [
                        hyp.kind,
                        hyp.metric,
                        hyp.sign,
                        m.horizon,
                        m.horizon == hyp.horizon,
                        m.n,
                        m.days,
                        *parts(m.ret),
                        *parts(m.base_ret),
                        *parts(m.vol),
                        num(m.base_vol.median if m.base_vol else None),
                        num(m.hit),
                        num(m.base_hit),
                        num(m.diff),
                        num(m.ci[0] if m.ci else None),
                        num(m.ci[1] if m.ci else None),
                        verdict(m, hyp),
                    ]
                )


def chart(result: TrackReport, title: str) -> bytes:
    """A PNG: for each horizon, each kind's median of its hypothesis' metric minus the random
    days', with the block-bootstrap 95 % interval (kinds with too few cases as a dot)."""
    rows = result.rows
    fig = Figure(figsize=(12, 0.45 * len(rows) + 2), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(HORIZONS), sharey=True)
    labels = [
        f"{r.hypothesis.label} ({'vol' if r.hypothesis.metric == VOLATILITY else 'ret'})"
        for r in rows
    ]
    ys = np.arange(len(rows))[::-1]
    for ax, h in zip(axes, HORIZONS, strict=True):
        for y, row in zip(ys, rows, strict=True):
            m = next((x for x in row.measures if x.horizon == h), None)
            if m is None or m.diff is None:
                continue
            primary = h == row.hypothesis.horizon
            color = "#3182bd" if row.hypothesis.sign > 0 else "#e6550d"
            if m.ci is not None:
                ax.hlines(
                    y, 100 * m.ci[0], 100 * m.ci[1], color=color, linewidth=2 if primary else 1
                )
            marker = "D" if primary else "o"
            ax.plot(
                100 * m.diff,
                y,
                marker,
                color=color if m.n >= MIN_CASES else "#999999",
                markersize=6 if primary else 4,
            )
        ax.axvline(0, color="#333333", linewidth=0.8)
        ax.set_title(f"{h}-day horizon")
        ax.set_xlabel("cases' median − random days' (points)")
    axes[0].set_yticks(ys)
    axes[0].set_yticklabels(labels, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
