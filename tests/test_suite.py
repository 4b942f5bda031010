"""The behaviour suite: its shape, its grading, and the shipped model's recorded pass rates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlp.suite import (
    CAPABILITY_BAR,
    OVERALL_BAR,
    REQUIRED,
    Case,
    grade,
    load_suite,
    run_suite,
    suite_sha256,
)
from tests.conftest import SHIPPED_MODEL

#: int8 scores move slightly with batch-mates, so a recorded count may differ by this much.
TOLERANCE_CASES = 2


def test_the_suite_has_at_least_300_cases_over_every_required_capability() -> None:
    cases = load_suite()
    assert len(cases) >= 300
    by_cap = {c: [x for x in cases if x.capability == c] for c in REQUIRED}
    assert all(len(v) >= 30 for v in by_cap.values()), {c: len(v) for c, v in by_cap.items()}
    assert len({c.text for c in cases}) == len(cases), "a case is written twice"
    # Every stance occurs, and the headlines include neutral announcements.
    assert {c.stance for c in cases} == {"bearish", "neutral", "bullish"}
    assert {c.stance for c in by_cap["headlines"]} == {"bearish", "neutral", "bullish"}


def test_grade_counts_passes_per_capability_and_applies_the_bars() -> None:
    cases = [
        Case("slang", "bullish", "a"),
        Case("slang", "bearish", "b"),
        Case("neutral", "neutral", "c"),
        Case("hard", "bearish", "d"),
    ]
    result = grade(cases, ["positive", "positive", "neutral", "positive"])
    assert result["capabilities"]["slang"] == {
        "n": 2, "passed": 1, "required": True, "pass_rate": 0.5,
    }  # fmt: skip
    assert result["passed_required"] == 2 and result["n_required"] == 3
    assert result["passed"] == 2 and result["n"] == 4
    assert result["meets_bars"] is False
    assert [f["text"] for f in result["failures"]] == ["b", "d"]
    perfect = grade(cases[:3], ["positive", "negative", "neutral"])
    assert perfect["meets_bars"] is True and perfect["pass_rate_required"] == 1.0


def test_a_suite_file_with_an_unknown_capability_or_stance_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "suite.tsv"
    bad.write_text("capability\tlabel\ttext\nslang\tbullish\tok\nvibes\tbullish\tx\n")
    with pytest.raises(ValueError, match="unknown capability 'vibes'"):
        load_suite(bad)
    bad.write_text("capability\tlabel\ttext\nslang\tpositive\tx\n")
    with pytest.raises(ValueError, match="unknown stance 'positive'"):
        load_suite(bad)
    with pytest.raises(ValueError, match="one prediction"):
        grade([Case("slang", "bullish", "a")], [])


def test_the_shipped_model_passes_what_its_metadata_records() -> None:
    """The figures in the model card come from this very suite and model (int8 path)."""
    from nlp.scorer import Scorer

    meta = json.loads((SHIPPED_MODEL / "moodring.json").read_text())
    recorded = meta["suite"]
    assert recorded["sha256"] == suite_sha256(), "the suite changed after the model recorded it"
    scorer = Scorer(SHIPPED_MODEL, backend=recorded["backend"], cache_size=0, dedupe=False)
    result = run_suite(lambda texts: [s.label for s in scorer.score(texts)])
    for cap, entry in result["capabilities"].items():
        assert entry["n"] == recorded["n"][cap]
        assert abs(entry["passed"] - recorded["passed"][cap]) <= TOLERANCE_CASES, (
            cap,
            entry["passed"],
            recorded["passed"][cap],
        )
    # The recorded claim follows from the recorded counts...
    req = [c for c in recorded["n"] if c in REQUIRED]
    overall = sum(recorded["passed"][c] for c in req) / sum(recorded["n"][c] for c in req)
    claimed = overall >= OVERALL_BAR and all(
        recorded["passed"][c] / recorded["n"][c] >= CAPABILITY_BAR for c in req
    )
    assert recorded.get("meets_bars", False) == claimed
    # ...and is this run's own whenever the counts reproduce exactly (v3's slang sits one case
    # above its bar, so another CPU's int8 kernels may move it within the tolerance above).
    if all(e["passed"] == recorded["passed"][c] for c, e in result["capabilities"].items()):
        assert result["meets_bars"] == claimed
