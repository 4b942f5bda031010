"""Classification metrics shared by training and evaluation (numpy only, no torch)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike


def macro_recall(gold: Sequence[int], pred: Sequence[int]) -> float:
    """Mean recall over the classes present in ``gold`` (``nan`` when ``gold`` is empty)."""
    recalls = per_class_recall(gold, pred)
    return sum(recalls.values()) / len(recalls) if recalls else float("nan")


def per_class_recall(gold: Sequence[int], pred: Sequence[int]) -> dict[int, float]:
    """Recall of each class present in ``gold``, keyed by class id."""
    g = np.asarray(gold, dtype=np.int64)
    p = np.asarray(pred, dtype=np.int64)
    return {int(c): float((p[g == c] == c).mean()) for c in np.unique(g)}


def expected_calibration_error(probs: ArrayLike, gold: ArrayLike, bins: int = 15) -> float:
    """Top-label expected calibration error over equal-width confidence bins.

    Args:
        probs: ``[n, classes]`` probabilities (a nested sequence, numpy array or CPU tensor).
        gold: ``[n]`` true class ids.
        bins: number of equal-width confidence bins on (0, 1].
    """
    p = np.asarray(probs, dtype=np.float64)
    g = np.asarray(gold, dtype=np.int64)
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == g).astype(np.float64)
    ece = 0.0
    edges = np.linspace(0.0, 1.0, bins + 1)
    for lo, hi in itertools.pairwise(edges):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(conf[mask].mean() - correct[mask].mean())
    return float(ece)
