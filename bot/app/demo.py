"""`moodring demo`: replay the bundled 2022 StockTwits month through the real pipeline."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from bot.errors import ConfigError
from bot.pipeline.observer import Observer, Sensor
from bot.store import Store, iso
from bot.types import Scope

log = logging.getLogger(__name__)

DEMO_POSTS = "stocktwits_btc_eth_2022.csv"


class ProgressBar(Sensor):
    """The demo's progress: a tqdm bar of posts seen, with scored and alerts beside it,
    redrawn from the observer's counters whenever intake, scoring or the index moved on."""

    def __init__(self, observer: Observer, bar: Any) -> None:
        self.observer = observer
        self.bar = bar  # a tqdm.tqdm (imported lazily by the CLI)

    def _show(self) -> None:
        c = self.observer.counters
        self.bar.n = c.seen
        self.bar.set_postfix(scored=c.scored, alerts=c.alerts, refresh=False)
        self.bar.refresh()

    def on_messages(self, source: str | None, n: int, newest: datetime) -> None:
        self._show()

    def on_scored(self, n: int) -> None:
        self._show()

    def on_tick(self, ticks: int, last: datetime | None) -> None:
        self._show()


@dataclass(frozen=True, slots=True)
class DayRow:
    """One line of the demo timeline."""

    day: datetime
    close: float | None
    mood: float | None
    band: str
    btc_mood: float | None
    messages: int
    spam: int
    alerts: int


def timeline(store: Store) -> list[DayRow]:
    """Per day of stored messages: BTC close, the day's closing mood, volume, spam, alerts."""
    first, last = store.oldest_message_time(), store.newest_message_time()
    if first is None or last is None:
        return []
    day = first.replace(hour=0, minute=0, second=0, microsecond=0)
    closes = dict(store.closes("BTC", "1d"))
    rows = []
    while day <= last:
        end = day + timedelta(days=1)
        n_messages, n_spam = store.count_messages(day, end)
        rows.append(
            DayRow(
                day=day,
                close=closes.get(iso(day)),
                mood=_last_value(store, Scope(), day, end),
                band=_last_band(store, Scope(), day, end),
                btc_mood=_last_value(store, Scope(asset="BTC"), day, end),
                messages=n_messages,
                spam=n_spam,
                alerts=store.count_alerts_between(day, end),
            )
        )
        day = end
    return rows


def _last_value(store: Store, scope: Scope, day: datetime, end: datetime) -> float | None:
    row = store.last_reading(scope, "24h", day, end)
    return row[0] if row else None


def _last_band(store: Store, scope: Scope, day: datetime, end: datetime) -> str:
    row = store.last_reading(scope, "24h", day, end)
    return row[1] if row else "no reading"


def print_report(store: Store, out: TextIO) -> dict:
    """Print the timeline and every alert from the database; return summary figures."""
    rows = timeline(store)
    out.write("\nDay         BTC close   Mood (24h, all sources)    BTC mood  Msgs  Spam  Alerts\n")
    for r in rows:
        close = f"${r.close:>9,.0f}" if r.close is not None else f"{'—':>10}"
        mood = f"{r.mood:5.1f} {r.band:<14}" if r.mood is not None else f"{'—':>5} {r.band:<14}"
        btc = f"{r.btc_mood:5.1f}" if r.btc_mood is not None else f"{'—':>5}"
        share = f"{100 * r.spam / r.messages:4.0f}%" if r.messages else "   —"
        bar = "█" * round((r.mood or 0) / 5)
        out.write(
            f"{r.day:%Y-%m-%d}  {close}  {mood} {bar:<20}  {btc}  {r.messages:>5} "
            f"{share} {r.alerts:>5}\n"
        )
    first, last = store.oldest_message_time(), store.newest_message_time()
    alerts = store.alerts_between(first, last + timedelta(days=1)) if first and last else []
    out.write(f"\nAlerts raised: {len(alerts)}\n")
    for a in alerts:
        out.write(f"\n[{a.at:%Y-%m-%d %H:%M}] {a.kind}: {a.title}\n")
        for line in a.detail.splitlines():  # the reading's details, then its track record
            out.write(f"    {line}\n")
        for q in a.evidence:
            out.write(f"    “{q}”\n")
    counts = store.counts()
    summary = {
        "messages": sum(counts.get(k, 0) for k in ("new", "scored", "failed")),
        "scored": counts.get("scored", 0),
        "failed": counts.get("failed", 0),
        "spam": counts.get("spam", 0),
        "set_aside": counts.get("set_aside", 0),
        "alerts": len(alerts),
        "days": len(rows),
    }
    out.write("\n" + json.dumps(summary) + "\n")
    return summary


def older_models_line(store: Store, model_id: str) -> str | None:
    """One line when messages in ``store`` were scored by a model other than ``model_id``."""
    counts = store.model_counts()
    older = {m: n for m, n in counts.items() if m != model_id}
    if not older:
        return None
    total = sum(counts.values())
    names = ", ".join(m or "an unnamed model" for m in older)
    return (
        f"note: {sum(older.values())} of {total} stored messages were scored by an older model"
        f" ({names}), not {model_id}: run `moodring rescore` to re-score them and rebuild"
        " the history"
    )


def check_demo_file(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"demo data missing: {path} (reinstall moodring)")
    return path
