"""Class-prior offsets: fitted on dev figures, applied by the scorer after the temperature."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from nlp.calibration import DevSet, dev_figure, fit_class_bias
from nlp.errors import ModelLoadError
from nlp.scorer import Scorer


def _overcalls_neutral(n: int = 300, shift: float = 1.0) -> DevSet:
    """Logits of a model that learned a neutral-heavy prior: every row's neutral logit is
    ``shift`` too high, so some bearish and bullish rows come out neutral."""
    rng = np.random.default_rng(3)
    gold = np.repeat(np.arange(3), n)
    logits = rng.normal(0.0, 1.0, (3 * n, 3))
    logits[np.arange(3 * n), gold] += 1.5
    logits[:, 1] += shift
    return DevSet("skewed", logits, gold, "macro_recall")


def test_offsets_undo_a_learned_neutral_prior() -> None:
    dev = _overcalls_neutral()
    bias, figures = fit_class_bias([dev])
    assert bias[1] == 0.0
    # Raising both polar classes by about the neutral excess is the correction.
    assert 0.5 <= bias[0] <= 1.5 and 0.5 <= bias[2] <= 1.5
    assert figures["skewed"]["after"] > figures["skewed"]["before"] + 0.05
    assert figures["skewed"]["after"] == pytest.approx(dev_figure(dev, bias), abs=1e-4)


def test_a_model_without_a_skew_gets_no_correction() -> None:
    # Perfectly separated logits: every offset within the grid scores the same, so the
    # smallest (none) wins.
    gold = np.repeat(np.arange(3), 50)
    logits = np.eye(3)[gold] * 10.0
    bias, figures = fit_class_bias([DevSet("clean", logits, gold, "macro_recall")])
    assert bias == (0.0, 0.0, 0.0)
    assert figures["clean"] == {"before": 1.0, "after": 1.0}


def test_balanced_polar_reads_only_bearish_against_bullish() -> None:
    gold = np.array([0, 0, 2, 2])
    # The neutral logit is the largest everywhere: it must not matter for a polar figure.
    logits = np.array([[1.0, 9.0, 0.0], [0.0, 9.0, 1.0], [0.0, 9.0, 1.0], [0.0, 9.0, 2.0]])
    dev = DevSet("tags", logits, gold, "balanced_polar")
    assert dev_figure(dev, (0.0, 0.0, 0.0)) == pytest.approx((0.5 + 1.0) / 2)
    assert dev_figure(dev, (1.5, 0.0, 0.0)) == pytest.approx((1.0 + 0.5) / 2)
    with pytest.raises(ValueError, match="dev metric"):
        dev_figure(DevSet("x", logits, gold, "accuracy"), (0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="at least one"):
        fit_class_bias([])


def _with_meta(src: Path, dst: Path, **changes: object) -> Path:
    shutil.copytree(src, dst)
    meta = json.loads((dst / "moodring.json").read_text())
    meta.update(changes)
    (dst / "moodring.json").write_text(json.dumps(meta))
    return dst


def test_the_scorer_adds_the_offsets_after_the_temperature(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    texts = ["to the moon", "rug pull, sold it all", "what time is it", ""]
    plain = Scorer(tiny_model_dir, backend="torch", cache_size=0)
    biased = Scorer(
        _with_meta(tiny_model_dir, tmp_path / "biased", class_bias=[2.0, 0.0, -1.0]),
        backend="torch",
        cache_size=0,
    )
    assert biased.info.class_bias == (2.0, 0.0, -1.0)
    for p, b in zip(plain.score(texts), biased.score(texts), strict=True):
        # Offsets multiply each class's odds: log(p_neg/p_neu) rises by exactly 2.
        assert np.log(b.p_neg / b.p_neu) - np.log(p.p_neg / p.p_neu) == pytest.approx(2.0)
        assert np.log(b.p_pos / b.p_neu) - np.log(p.p_pos / p.p_neu) == pytest.approx(-1.0)


@pytest.mark.parametrize("bad", [[1.0, 2.0], "high", [1.0, "x", 0.0]])
def test_a_malformed_offset_is_a_load_error(
    tiny_model_dir: Path, tmp_path: Path, bad: object
) -> None:
    with pytest.raises(ModelLoadError, match=r"moodring\.json"):
        Scorer(_with_meta(tiny_model_dir, tmp_path / "bad", class_bias=bad), backend="torch")
