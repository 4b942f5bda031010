"""PNG charts of the mood index, message volume and price, for the ``/chart`` command."""

from __future__ import annotations

import io
import itertools
import math
import struct
from collections.abc import Sequence
from datetime import UTC, datetime

from matplotlib import dates as mdates
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from bot.render import money
from bot.types import BANDS

#: One fill colour per band in BANDS order (Extreme Fear red ... Extreme Greed green).
BAND_COLOURS: tuple[str, ...] = ("#d7301f", "#fc8d59", "#969696", "#91cf60", "#1a9850")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(data: bytes) -> tuple[int, int]:
    """The (width, height) of a PNG, read from its IHDR header.

    Args:
        data: PNG bytes (only the first 24 are read).

    Returns:
        ``(width, height)`` in pixels.

    Raises:
        ValueError: if ``data`` does not start like a PNG.
    """
    if len(data) < 24 or data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def _usd(value: float, _pos: int | None = None) -> str:
    """Format a price tick (matplotlib passes the tick position too)."""
    return money(value)


def _darker(colour: str, factor: float = 0.7) -> tuple[float, float, float]:
    """``colour`` darkened, so a pale band colour still reads as text on a white box."""
    r, g, b = to_rgb(colour)
    return (r * factor, g * factor, b * factor)


def _bar_width(days: Sequence[float]) -> float:
    """Bar width in days: 80% of the smallest spacing, so daily and hourly bars both fit."""
    gaps = [b - a for a, b in itertools.pairwise(sorted(days)) if b > a]
    return 0.8 * (min(gaps) if gaps else 1.0)


def mood_chart(
    title: str,
    readings: Sequence[tuple[datetime, float | None]],
    volumes: Sequence[tuple[datetime, int]],
    prices: Sequence[tuple[datetime, float]] = (),
    *,
    width_px: int = 1200,
    height_px: int = 700,
    dpi: int = 100,
) -> bytes:
    """Render the mood index over band areas, message volume and optional price as a PNG.

    Uses ``Figure`` + ``FigureCanvasAgg`` directly (no pyplot), so it touches no global
    matplotlib state, is safe to call from worker threads and never opens a window.

    Args:
        title: Chart title, e.g. ``"BTC mood — 30d to 2022-07-24"``.
        readings: ``(at, value)`` of the mood index (0-100); ``None`` leaves a gap.
        volumes: ``(at, messages)`` per period, drawn as bars in the bottom panel.
        prices: ``(at, close)``; drawn on a secondary ``$`` axis, omitted when empty.
        width_px: Image width in pixels.
        height_px: Image height in pixels.
        dpi: Resolution used to turn pixels into figure inches and font sizes.

    Returns:
        PNG bytes, identical for identical input (no timestamps or versions embedded).
    """
    fig = mood_figure(
        title, readings, volumes, prices, width_px=width_px, height_px=height_px, dpi=dpi
    )
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def mood_figure(
    title: str,
    readings: Sequence[tuple[datetime, float | None]],
    volumes: Sequence[tuple[datetime, int]],
    prices: Sequence[tuple[datetime, float]] = (),
    *,
    width_px: int = 1200,
    height_px: int = 700,
    dpi: int = 100,
) -> Figure:
    """The figure :func:`mood_chart` renders (same arguments), for callers that lay it out.

    Its axes are ``fig.axes``: the mood panel, the volume panel, then the price axis (a twin
    of the mood panel) when there are prices. The figure has an Agg canvas attached.
    """
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi)
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(
        2, 1, sharex=True, gridspec_kw={"height_ratios": (2, 1), "hspace": 0.08}
    )
    fig.subplots_adjust(left=0.07, right=0.91, top=0.93, bottom=0.09)
    fig.suptitle(title)

    # Band areas, labelled inside the left edge on a light box: at the right edge the labels
    # ran into the price axis's tick labels ("Extreme Greed $24,000" read as one label).
    lower = 0
    for (upper, name), colour in zip(BANDS, BAND_COLOURS, strict=True):
        top.axhspan(lower, upper, color=colour, alpha=0.15, linewidth=0)
        # 4 points in from the left edge at any size; the mood line is drawn over the box.
        top.annotate(
            name, (0, (lower + upper) / 2), xycoords=top.get_yaxis_transform(),
            xytext=(4, 0), textcoords="offset points", ha="left", va="center", fontsize=8,
            color=_darker(colour), zorder=2.5,
            bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "alpha": 0.8,
                  "edgecolor": "none"},
        )  # fmt: skip
        lower = upper
    top.set_ylim(0, 100)
    top.set_ylabel("Mood index")

    # date2num converts aware datetimes to UTC and avoids the global units registry.
    has_mood = any(v is not None for _, v in readings)
    if has_mood:
        xs = mdates.date2num([at for at, _ in readings])
        ys = [math.nan if v is None else v for _, v in readings]  # NaN breaks the line
        top.plot(xs, ys, color="#3a3a8c", linewidth=1.6, zorder=3)
    else:
        top.text(0.5, 0.5, "no readings yet", transform=top.transAxes,
                 ha="center", va="center", fontsize=14, color="#555555")  # fmt: skip

    if prices:
        price_ax = top.twinx()
        price_ax.plot(
            mdates.date2num([at for at, _ in prices]), [p for _, p in prices],
            color="#808080", linewidth=0.8, zorder=2,
        )  # fmt: skip
        price_ax.yaxis.set_major_formatter(FuncFormatter(_usd))
        price_ax.set_ylabel("Price (USD)", color="#808080")
        price_ax.tick_params(axis="y", colors="#808080", labelsize=8)
        # Draw the mood axes (line, bands, labels) over the price line: mood is the subject.
        top.set_zorder(price_ax.get_zorder() + 1)
        top.patch.set_visible(False)

    if volumes:
        days = mdates.date2num([at for at, _ in volumes])
        bottom.bar(days, [n for _, n in volumes], width=_bar_width(days), color="#7a8fa6")
    bottom.set_ylabel("Messages")
    bottom.set_xlabel("UTC")

    locator = mdates.AutoDateLocator(tz=UTC)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    for ax in (top, bottom):
        ax.grid(axis="x", alpha=0.3)
    if not (has_mood or volumes or prices):
        bottom.tick_params(axis="x", labelbottom=False)  # no data: hide the 1970 epoch dates

    return fig
