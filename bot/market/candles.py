"""Price history in and out of the store: candle CSV files, exchange backfill, bundled data."""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from itertools import pairwise
from pathlib import Path

from bot.errors import ConfigError
from bot.market.levels import interval_seconds
from bot.store import Store
from connectors.bounds import bar_problem
from connectors.types import Candle

log = logging.getLogger(__name__)

#: The reference assets whose daily closes ship with moodring (bot/demo_data/, see its
#: ATTRIBUTION.md), so ``/corr`` and ``moodring backtest`` work offline.
BUNDLED = {
    "BTC": "btc_usd_daily.csv",
    "IGV": "igv_usd_daily.csv",
    "QQQ": "qqq_usd_daily.csv",
    "GLD": "gld_usd_daily.csv",
    "SPY": "spy_usd_daily.csv",
}
BUNDLED_SOURCE = "yahoo (bundled)"


@dataclass(frozen=True, slots=True)
class CsvCandles:
    """What a candle file held: the candles, and how many rows were skipped (with why)."""

    candles: list[Candle]
    skipped: int
    first_error: str = ""


def interval_of(header: Sequence[str], candles_ts: Sequence[datetime]) -> str:
    """ "1d" or "1h": from the header (``date`` vs ``time``) and the spacing of the rows."""
    if len(candles_ts) >= 2:
        gaps = sorted((b - a).total_seconds() for a, b in pairwise(candles_ts))
        median = gaps[len(gaps) // 2]
        if median <= 3600:
            return "1h"
        return "1d"
    return "1d" if "date" in header else "1h"


def read_candles_csv(path: Path, asset: str, interval: str | None = None) -> CsvCandles:
    """Candles from a ``date|time,open,high,low,close[,volume]`` CSV (UTC times).

    The interval is given, or worked out from the header and the rows' spacing. Rows that
    are not candles (bad numbers, high below low, a close outside the bar) are skipped and
    counted, never guessed at.

    Raises:
        ConfigError: the file is missing or has no time and close columns.
    """
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a CSV file")
    if not path.is_file():
        raise ConfigError(f"no such file: {path}")
    try:
        return _read_candles(path, asset, interval)
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path.name}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except csv.Error as exc:
        raise ConfigError(f"{path.name}: not a readable CSV file ({exc})") from None


def _read_candles(path: Path, asset: str, interval: str | None) -> CsvCandles:
    rows: list[tuple[datetime, float, float, float, float, float]] = []
    skipped, first_error = 0, ""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        reader.fieldnames = header
        time_col = next((c for c in ("date", "time", "timestamp", "ts") if c in header), None)
        if time_col is None or "close" not in header:
            raise ConfigError(
                f"{path.name}: expected columns date|time, open, high, low, close[, volume];"
                f" found {', '.join(header) or 'none'}"
            )
        for n, row in enumerate(reader, start=2):
            try:
                ts = _parse_time(row[time_col] or "")  # None: the row is short
                if ts > datetime.now(UTC):  # the newest stored bar sets where updates resume
                    raise ValueError("dated in the future")
                o, h, lo, c = (float(row[k]) for k in ("open", "high", "low", "close"))
                v = float(row.get("volume") or 0)
                if problem := bar_problem(o, h, lo, c, v):  # NaN and infinity included
                    raise ValueError(problem)
                rows.append((ts, o, h, lo, c, v))
            except (KeyError, TypeError, ValueError, OverflowError, OSError) as exc:
                skipped += 1
                why = "a value is missing" if isinstance(exc, TypeError) else str(exc)
                first_error = first_error or f"line {n}: {why}"
    rows.sort()
    found = interval_of(header, [r[0] for r in rows[:200]])
    if interval is not None and len(rows) >= 2 and interval != found:
        # Storing hourly bars as daily ones would corrupt levels and the composite.
        raise ConfigError(
            f"{path.name}: the rows are {found} bars, not {interval} (leave out --interval)"
        )
    interval = interval or found
    candles = [Candle(asset, interval, *r) for r in rows]
    if skipped:
        log.warning("%s: %d rows skipped (first: %s)", path.name, skipped, first_error)
    return CsvCandles(candles, skipped, first_error)


def _parse_time(text: str) -> datetime:
    text = text.strip()
    if text.isdigit():  # epoch seconds or milliseconds, as exchanges export them
        value = int(text)
        return datetime.fromtimestamp(value / 1000 if value > 10**11 else value, UTC)
    ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def bundled_path(asset: str) -> Path:
    """The bundled daily file of ``asset``.

    Raises:
        ConfigError: no bundled file for it.
    """
    name = BUNDLED.get(asset.upper())
    if name is None:
        raise ConfigError(f"no bundled prices for {asset}; bundled: {', '.join(BUNDLED)}")
    return Path(str(resources.files("bot") / "demo_data" / name))


def load_bundled(store: Store, assets: Sequence[str] = tuple(BUNDLED)) -> dict[str, int]:
    """Store the bundled daily candles of ``assets`` (idempotent upserts); count per asset."""
    out = {}
    for asset in assets:
        got = read_candles_csv(bundled_path(asset), asset, "1d")
        out[asset] = store.add_candles(got.candles, BUNDLED_SOURCE)
    return out


def daily_closes(store: Store, asset: str, until: datetime | None = None) -> list[Candle]:
    """``asset``'s stored daily candles up to ``until``; the bundled file where none are stored
    (reference assets such as IGV work on a fresh database)."""
    candles = store.candles(asset, "1d", until)
    if candles or asset.upper() not in BUNDLED:
        return candles
    loaded = read_candles_csv(bundled_path(asset), asset.upper(), "1d").candles
    return [c for c in loaded if until is None or c.ts <= until]


def closed_by(candles: Sequence[Candle], t: datetime) -> list[Candle]:
    """The candles that had closed by ``t`` (a bar is known at its open time + its interval)."""
    if not candles:
        return []
    step = timedelta(seconds=interval_seconds(candles[0].interval))
    return [c for c in candles if c.ts + step <= t]
