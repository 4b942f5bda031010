"""Derivatives market data: sampled liquidations (each event once, with hourly totals by side),
the live streams' gaps, and implied-volatility index bars."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.store.base import StoreBase, locked
from bot.store.rows import iso, parse_ts
from bot.store.sql import insert_new, upsert
from connectors.types import Liquidation, StreamGap, VolatilityIndex

_EVENT = insert_new(
    "liquidations", "exchange event_id asset symbol side price amount notional_usd at"
)
# The hourly totals grow by each event stored for the first time, in the same transaction.
_HOUR = (
    "INSERT INTO liquidation_hours (asset, hour, side, notional_usd, events)"
    " VALUES (?, ?, ?, ?, 1) ON CONFLICT (asset, hour, side) DO UPDATE SET"
    " notional_usd = liquidation_hours.notional_usd + excluded.notional_usd,"
    " events = liquidation_hours.events + 1"
)
_GAP = upsert("stream_gaps", "source since until reason", "source since")
_VOL = upsert("implied_vol", "asset interval ts open high low close source", "asset interval ts")


@dataclass(frozen=True, slots=True)
class LiquidationHour:
    """One hour's sampled liquidations of an asset on one side ("long" or "short")."""

    hour: datetime
    side: str
    notional_usd: float
    events: int


def _hour(at: datetime) -> datetime:
    return at.replace(minute=0, second=0, microsecond=0)


class DerivativesMixin(StoreBase):
    """The ``liquidations``, ``liquidation_hours``, ``stream_gaps`` and ``implied_vol`` tables."""

    @locked
    def add_liquidations(self, events: Sequence[Liquidation]) -> int:
        """Store the events not stored yet (by exchange and event id) and add each to its
        hour's total, in one transaction; how many were new. A duplicate changes nothing."""
        new = 0
        with self.transaction() as db:
            for e in events:
                row = [e.exchange, e.event_id, e.asset, e.symbol, e.side, e.price, e.amount]
                if db.execute(_EVENT, [*row, e.notional_usd, iso(e.at)]).rowcount:
                    db.execute(_HOUR, [e.asset, iso(_hour(e.at)), e.side, e.notional_usd])
                    new += 1
        return new

    @locked
    def liquidation_hours(
        self, asset: str, since: datetime, until: datetime
    ) -> list[LiquidationHour]:
        """The hourly totals of ``asset`` for hours starting in ``[since, until)``, oldest
        first."""
        rows = self.db.execute(
            "SELECT hour, side, notional_usd, events FROM liquidation_hours"
            " WHERE asset = ? AND hour >= ? AND hour < ? ORDER BY hour, side",
            [asset, iso(since), iso(until)],
        ).fetchall()
        return [LiquidationHour(parse_ts(r[0]), r[1], r[2], r[3]) for r in rows]

    @locked
    def largest_liquidations(
        self, asset: str, since: datetime, until: datetime, limit: int = 5
    ) -> list[Liquidation]:
        """The largest single events of ``asset`` in ``[since, until)``, largest first."""
        rows = self.db.execute(
            "SELECT exchange, symbol, asset, side, price, amount, notional_usd, at, event_id"
            " FROM liquidations WHERE asset = ? AND at >= ? AND at < ?"
            " ORDER BY notional_usd DESC, at LIMIT ?",
            [asset, iso(since), iso(until), limit],
        ).fetchall()
        return [
            Liquidation(r[0], r[1], r[2], r[3], r[4], r[5], r[6], parse_ts(r[7]), r[8])
            for r in rows
        ]

    @locked
    def first_liquidation_hour(self, asset: str) -> datetime | None:
        """The first hour with a sampled liquidation of ``asset`` (how long it has been
        collected)."""
        row = self.db.execute(
            "SELECT MIN(hour) FROM liquidation_hours WHERE asset = ?", [asset]
        ).fetchone()
        return parse_ts(row[0]) if row and row[0] else None

    @locked
    def prune_liquidations(self, before: datetime) -> int:
        """Drop single events older than ``before`` (the hourly totals stay: the baselines
        need months of them, the events only feed "largest" lists); how many."""
        with self.transaction() as db:
            return db.execute("DELETE FROM liquidations WHERE at < ?", [iso(before)]).rowcount

    @locked
    def add_stream_gap(self, gap: StreamGap) -> None:
        """Record a stretch a live stream missed (idempotent)."""
        with self.transaction() as db:
            db.execute(_GAP, [gap.source, iso(gap.since), iso(gap.until), gap.reason])

    @locked
    def stream_gaps(self, since: datetime, source_prefix: str = "") -> list[StreamGap]:
        """The gaps that ended after ``since``, of sources starting with ``source_prefix``,
        oldest first."""
        rows = self.db.execute(
            'SELECT source, since, "until", reason FROM stream_gaps'
            ' WHERE "until" > ? AND source LIKE ? ORDER BY since',
            [iso(since), source_prefix.replace("%", "") + "%"],
        ).fetchall()
        return [StreamGap(r[0], parse_ts(r[1]), parse_ts(r[2]), r[3]) for r in rows]

    @locked
    def add_implied_vol(self, bars: Sequence[VolatilityIndex]) -> int:
        """Upsert implied-volatility bars; how many."""
        with self.transaction() as db:
            for b in bars:
                db.execute(
                    _VOL,
                    [b.asset, b.interval, iso(b.ts), b.open, b.high, b.low, b.close, b.source],
                )
        return len(bars)

    @locked
    def implied_vol(
        self, asset: str, interval: str, since: datetime, until: datetime
    ) -> list[VolatilityIndex]:
        """Implied-volatility bars of ``asset`` opened in ``[since, until]``, oldest first."""
        rows = self.db.execute(
            'SELECT ts, "open", high, low, "close", source FROM implied_vol'
            ' WHERE asset = ? AND "interval" = ? AND ts >= ? AND ts <= ? ORDER BY ts',
            [asset, interval, iso(since), iso(until)],
        ).fetchall()
        return [
            VolatilityIndex(asset, interval, parse_ts(r[0]), r[1], r[2], r[3], r[4], r[5])
            for r in rows
        ]


#: How long single liquidation events are kept (the hourly totals are kept with readings).
EVENTS_KEPT = timedelta(days=35)
