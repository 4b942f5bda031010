"""Market data: candles, exchange tickers, daily closes, and which assets the store has seen."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from bot.store.base import StoreBase, locked
from bot.store.rows import iso, parse_ts
from bot.store.sql import upsert
from connectors.types import Candle, Ticker

_PRICE = upsert(
    "prices", "asset interval ts open high low close volume source", "asset interval ts"
)
_TICKER = upsert(
    "tickers",
    "asset at last change_24h_pct volume_24h funding_rate open_interest source",
    "asset at",
)


class MarketMixin(StoreBase):
    """Candles (the ``prices`` table) and tickers."""

    @locked
    def add_candles(self, candles: Sequence[Candle], source: str) -> int:
        """Upsert candles (any assets and intervals) in one transaction; how many."""
        with self.transaction() as db:
            for c in candles:
                db.execute(
                    _PRICE,
                    [
                        c.asset,
                        c.interval,
                        iso(c.ts),
                        c.open,
                        c.high,
                        c.low,
                        c.close,
                        c.volume,
                        source,
                    ],
                )
        return len(candles)

    @locked
    def candles(
        self, asset: str, interval: str = "1d", until: datetime | None = None
    ) -> list[Candle]:
        """Stored candles of ``asset`` opened at or before ``until``, oldest first."""
        sql = (
            "SELECT ts, open, high, low, close, volume FROM prices WHERE asset = ? AND interval = ?"
        )
        params: list[Any] = [asset, interval]
        if until is not None:
            sql += " AND ts <= ?"
            params.append(iso(until))
        rows = self.db.execute(sql + " ORDER BY ts", params).fetchall()
        return [
            Candle(asset, interval, parse_ts(r[0]), r[1], r[2], r[3], r[4], r[5] or 0.0)
            for r in rows
        ]

    @locked
    def newest_candle_time(
        self, asset: str, interval: str, until: datetime | None = None
    ) -> datetime | None:
        """Open time of the newest stored candle of ``asset`` at ``interval`` (opened at or
        before ``until``)."""
        sql = "SELECT MAX(ts) FROM prices WHERE asset = ? AND interval = ?"
        params: list[Any] = [asset, interval]
        if until is not None:
            sql += " AND ts <= ?"
            params.append(iso(until))
        row = self.db.execute(sql, params).fetchone()
        return parse_ts(row[0]) if row and row[0] else None

    @locked
    def add_ticker(self, t: Ticker) -> None:
        """Keep an exchange's ticker (price, 24h change, funding, open interest)."""
        with self.transaction() as db:
            db.execute(
                _TICKER,
                [
                    t.asset,
                    iso(t.at),
                    t.last,
                    t.change_24h_pct,
                    t.volume_24h,
                    t.funding_rate,
                    t.open_interest,
                    t.source,
                ],
            )

    @locked
    def latest_ticker(self, asset: str, until: datetime | None = None) -> Ticker | None:
        """The newest stored ticker of ``asset`` at or before ``until``."""
        sql = "SELECT * FROM tickers WHERE asset = ?"
        params: list[Any] = [asset]
        if until is not None:
            sql += " AND at <= ?"
            params.append(iso(until))
        r = self.db.execute(sql + " ORDER BY at DESC LIMIT 1", params).fetchone()
        if r is None:
            return None
        return Ticker(r[0], parse_ts(r[1]), r[2], r[3], r[4], r[5], r[6], r[7] or "")

    @locked
    def closes(self, asset: str, interval: str = "1d") -> list[tuple[str, float]]:
        return [
            (r[0], float(r[1]))
            for r in self.db.execute(
                "SELECT ts, close FROM prices WHERE asset = ? AND interval = ? ORDER BY ts",
                [asset, interval],
            )
        ]

    # ------------------------------------------------------------------ assets seen

    @locked
    def asset_known(self, asset: str) -> bool:
        """Whether a message named ``asset`` or it has candles or a ticker."""
        # Each probe is an index seek (message_assets by asset; prices and tickers by primary key).
        return any(
            self.db.execute(sql, [asset]).fetchall()
            for sql in (
                "SELECT 1 FROM message_assets WHERE asset = ? LIMIT 1",
                "SELECT 1 FROM prices WHERE asset = ? LIMIT 1",
                "SELECT 1 FROM tickers WHERE asset = ? LIMIT 1",
            )
        )

    @locked
    def priced_assets(self) -> set[str]:
        """The assets with candles or a ticker."""
        sql = "SELECT asset FROM prices UNION SELECT asset FROM tickers"
        return {r[0] for r in self.db.execute(sql).fetchall()}

    @locked
    def known_assets(self) -> tuple[dict[str, int], set[str]]:
        """Messages naming each asset, and the assets with candles or a ticker."""
        mentions = {
            r[0]: int(r[1])
            for r in self.db.execute(
                "SELECT asset, COUNT(*) FROM message_assets GROUP BY asset"
            ).fetchall()
        }
        priced = {
            r[0]
            for r in self.db.execute(
                "SELECT asset FROM prices UNION SELECT asset FROM tickers"
            ).fetchall()
        }
        return mentions, priced
