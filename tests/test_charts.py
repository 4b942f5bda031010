"""Tests for the mood chart PNG renderer."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import matplotlib
import pytest
from PIL import Image

from bot.chat.charts import PNG_SIGNATURE, mood_chart, mood_figure, png_size
from bot.types import BANDS

START = datetime(2022, 6, 24, tzinfo=UTC)


def daily(n: int = 30) -> tuple[list, list, list]:
    """n days of readings, volumes and prices with a simple wave."""
    days = [START + timedelta(days=i) for i in range(n)]
    readings = [(d, 20.0 + 60.0 * (i % 10) / 9) for i, d in enumerate(days)]
    volumes = [(d, 100 + 7 * i) for i, d in enumerate(days)]
    prices = [(d, 20_000.0 + 150.0 * i) for i, d in enumerate(days)]
    return readings, volumes, prices


def decode(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()  # forces a full decode, not just the header
    return image


def test_png_is_valid_and_sized() -> None:
    readings, volumes, prices = daily()
    data = mood_chart("BTC mood — 30d to 2022-07-24", readings, volumes, prices)
    assert data.startswith(PNG_SIGNATURE)
    assert png_size(data) == (1200, 700)
    image = decode(data)
    assert image.format == "PNG"
    assert image.size == (1200, 700)


def test_custom_size() -> None:
    readings, volumes, _ = daily(7)
    data = mood_chart("t", readings, volumes, width_px=800, height_px=400, dpi=80)
    assert png_size(data) == (800, 400)
    assert decode(data).size == (800, 400)


def test_deterministic_bytes() -> None:
    readings, volumes, prices = daily()
    first = mood_chart("BTC", readings, volumes, prices)
    second = mood_chart("BTC", readings, volumes, prices)
    assert first == second
    assert b"Software" not in first and b"matplotlib" not in first.lower()


def test_gaps_for_none_differ_from_full_line() -> None:
    readings, volumes, _ = daily()
    gapped = [(at, None if 10 <= i < 15 else v) for i, (at, v) in enumerate(readings)]
    full = mood_chart("BTC", readings, volumes)
    with_gap = mood_chart("BTC", gapped, volumes)
    assert png_size(with_gap) == (1200, 700)
    decode(with_gap)
    assert with_gap != full


def test_without_prices_differs_from_with_prices() -> None:
    readings, volumes, prices = daily()
    without = mood_chart("BTC", readings, volumes)
    assert png_size(without) == (1200, 700)
    assert without != mood_chart("BTC", readings, volumes, prices)


@pytest.mark.parametrize("volumes", [[], [(START, 5)]])
def test_empty_readings_still_render(volumes: list) -> None:
    data = mood_chart("ETH mood — 7d", [], volumes)
    assert png_size(data) == (1200, 700)
    decode(data)


def test_all_collecting_is_like_empty() -> None:
    collecting = [(START + timedelta(days=i), None) for i in range(5)]
    data = mood_chart("ETH", collecting, [])
    decode(data)
    assert data == mood_chart("ETH", [], [])


def test_png_size_rejects_non_png() -> None:
    with pytest.raises(ValueError):
        png_size(b"GIF89a" + bytes(30))


def test_thirty_days_hourly() -> None:
    hours = [START + timedelta(hours=i) for i in range(720)]
    readings = [(h, None if i % 97 == 0 else 50.0 + 40.0 * ((i % 48) - 24) / 24) for i, h in
                enumerate(hours)]  # fmt: skip
    volumes = [(h, i % 31) for i, h in enumerate(hours)]
    prices = [(h, 0.5 + i / 10_000) for i, h in enumerate(hours)]  # a cheap coin: small $ ticks
    data = mood_chart("DOGE mood — 30d", readings, volumes, prices)
    assert decode(data).size == (1200, 700)


def test_leaves_global_matplotlib_state_alone() -> None:
    import matplotlib.pyplot as plt

    # dict.items reads raw values: RcParams.__getitem__ would itself resolve the backend.
    before = dict(dict.items(matplotlib.rcParams))
    figures_before = plt.get_fignums()
    readings, volumes, prices = daily()
    mood_chart("BTC", readings, volumes, prices)
    mood_chart("BTC", [], [])
    assert dict(dict.items(matplotlib.rcParams)) == before
    assert plt.get_fignums() == figures_before


SIZES = [(1200, 700, 100, 1.0), (1200, 700, 100, 1e-5), (800, 400, 80, 50.0), (600, 350, 100, 1.0)]


@pytest.mark.parametrize(("width", "height", "dpi", "scale"), SIZES)
def test_band_labels_clear_every_axis_label(
    width: int, height: int, dpi: int, scale: float
) -> None:
    """Band labels sit inside the mood panel and touch no tick label, axis label or each other,
    whatever the price's magnitude (long "$1,000,000" ticks or short "$0.2" ones)."""
    readings, volumes, prices = daily()
    scaled = [(d, p * scale) for d, p in prices]
    fig = mood_figure("BTC", readings, volumes, scaled, width_px=width, height_px=height, dpi=dpi)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    mood = fig.axes[0]
    names = {name for _, name in BANDS}
    # The label's box (text plus padding) is what must stay clear.
    boxes = [t.get_bbox_patch().get_window_extent(renderer) for t in mood.texts
             if t.get_text() in names]  # fmt: skip
    assert len(boxes) == len(BANDS)
    labels = [
        label.get_window_extent(renderer)
        for ax in fig.axes  # mood, volume and price axes
        for label in [*ax.get_yticklabels(), *ax.get_xticklabels(), ax.yaxis.label]
        if label.get_visible() and label.get_text()
    ]
    assert len(labels) > 10
    panel = mood.get_window_extent(renderer)
    for i, box in enumerate(boxes):
        assert panel.x0 <= box.x0 and box.x1 <= panel.x1
        assert panel.y0 <= box.y0 and box.y1 <= panel.y1
        assert not any(box.overlaps(label) for label in labels)
        assert not any(box.overlaps(other) for other in boxes[i + 1 :])
