"""Class-prior correction: one logit offset per class, fitted on the dev sets (logit adjustment).

A classifier trained on a mix where neutral rows dominate (TFNS is 65 % neutral) learns that
prior, and under-calls the minority classes on every set whose mix differs. Adding a fixed
offset to each class's logit moves the decision boundaries without touching the weights (Menon
et al., "Long-tail learning via logit adjustment", 2021). The offsets are chosen on the dev
sets only, never on the behaviour suite, and stored in ``moodring.json`` as ``class_bias``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nlp.metrics import macro_recall
from nlp.types import LABELS

NEG, NEU, POS = (LABELS.index(label) for label in ("negative", "neutral", "positive"))


@dataclass(frozen=True, slots=True)
class DevSet:
    """Temperature-scaled logits of one dev set, its gold classes, and the figure it reports."""

    name: str
    logits: np.ndarray
    gold: np.ndarray
    #: ``"macro_recall"`` (3 classes) or ``"balanced_polar"`` (P(pos) > P(neg), tagged posts).
    metric: str


def dev_figure(dev: DevSet, bias: Sequence[float]) -> float:
    """The set's figure with ``bias`` added to the logits."""
    z = dev.logits + np.asarray(bias, dtype=np.float64)
    if dev.metric == "macro_recall":
        return macro_recall(dev.gold.tolist(), z.argmax(axis=1).tolist())
    if dev.metric == "balanced_polar":
        says = z[:, POS] > z[:, NEG]
        bullish = dev.gold == POS
        sides = [float((says[bullish]).mean()), float((~says[~bullish]).mean())]
        return sum(sides) / len(sides)
    raise ValueError(f"unknown dev metric {dev.metric!r}")


def fit_class_bias(
    devs: Sequence[DevSet], span: float = 1.5, step: float = 0.1
) -> tuple[tuple[float, float, float], dict[str, dict[str, float]]]:
    """Offsets for (negative, neutral, positive) that maximise the mean dev figure.

    Neutral stays at 0 (only differences matter). A grid, not a gradient: the figures are
    counts of right answers. Among equal means the smallest offsets win, so a model that
    needs no correction gets none.

    Returns:
        The offsets, and each set's figure before and after.
    """
    if not devs:
        raise ValueError("fit_class_bias needs at least one dev set")
    grid = np.round(np.arange(-span, span + step / 2, step), 4)
    best: tuple[float, float, tuple[float, float, float]] = (-1.0, 0.0, (0.0, 0.0, 0.0))
    for b_neg in grid:
        for b_pos in grid:
            bias = (float(b_neg), 0.0, float(b_pos))
            mean = sum(dev_figure(d, bias) for d in devs) / len(devs)
            size = abs(b_neg) + abs(b_pos)
            if mean > best[0] + 1e-9 or (abs(mean - best[0]) <= 1e-9 and size < best[1]):
                best = (mean, size, bias)
    bias = best[2]
    report = {
        d.name: {
            "before": round(dev_figure(d, (0.0, 0.0, 0.0)), 4),
            "after": round(dev_figure(d, bias), 4),
        }
        for d in devs
    }
    return bias, report
