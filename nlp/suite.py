"""The behaviour suite: hand-written trading-chat cases, each tagged with one capability.

A CheckList-style test of the stance the index needs (bearish / neutral / bullish). The
suite is frozen (its sha256 is recorded with every model that reports on it) and is never
training data: :mod:`nlp.neardup` keeps its near-duplicates out of the training sets.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

#: Capabilities with a bar (each ≥ 80 %, and ≥ 90 % over all of them); "hard" is reported only.
REQUIRED = ("slang", "direction", "negation", "emoji", "headlines", "neutral")
REPORTED = ("hard",)
STANCES = ("bearish", "neutral", "bullish")
#: The stance names are the model's negative / neutral / positive classes, in that order.
STANCE_TO_LABEL = {"bearish": "negative", "neutral": "neutral", "bullish": "positive"}
OVERALL_BAR = 0.90
CAPABILITY_BAR = 0.80


@dataclass(frozen=True, slots=True)
class Case:
    """One suite case: the text, the stance a trader reads in it, and what it tests."""

    capability: str
    stance: str
    text: str

    @property
    def label(self) -> str:
        """The model class this case expects (negative / neutral / positive)."""
        return STANCE_TO_LABEL[self.stance]


def default_path() -> Path:
    """The suite shipped with moodring."""
    return Path(str(resources.files("nlp") / "data" / "suite.tsv"))


def suite_sha256(path: Path | None = None) -> str:
    """sha256 of the suite file, as recorded in the model card."""
    return hashlib.sha256((path or default_path()).read_bytes()).hexdigest()


def load_suite(path: Path | None = None) -> list[Case]:
    """Read the suite TSV (``capability``, ``label``, ``text``).

    Raises:
        ValueError: a row names an unknown capability or stance, or the file is empty.
    """
    path = path or default_path()
    cases = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        for row in reader:
            capability, stance = row.get("capability", ""), row.get("label", "")
            if capability not in REQUIRED + REPORTED:
                raise ValueError(
                    f"{path}, line {reader.line_num}: unknown capability {capability!r}"
                )
            if stance not in STANCES:
                raise ValueError(f"{path}, line {reader.line_num}: unknown stance {stance!r}")
            cases.append(Case(capability, stance, row.get("text") or ""))
    if not cases:
        raise ValueError(f"{path}: no cases")
    return cases


def grade(cases: Sequence[Case], predicted: Sequence[str]) -> dict:
    """Pass rates per capability from the predicted labels (negative / neutral / positive).

    Returns ``n``, ``passed``, ``pass_rate`` and ``pass_rate_required`` (over the required
    capabilities, the figure the 90 % bar applies to), ``capabilities`` (each with ``n``,
    ``passed``, ``pass_rate``, ``required``), ``meets_bars`` and ``failures`` (the failed
    cases with what the model said).
    """
    if len(cases) != len(predicted):
        raise ValueError("one prediction per case")
    caps: dict[str, dict] = {}
    failures = []
    for case, label in zip(cases, predicted, strict=True):
        entry = caps.setdefault(
            case.capability,
            {"n": 0, "passed": 0, "required": case.capability in REQUIRED},
        )
        entry["n"] += 1
        if label == case.label:
            entry["passed"] += 1
        else:
            failures.append(
                {
                    "capability": case.capability,
                    "text": case.text,
                    "want": case.stance,
                    "got": label,
                }
            )
    for entry in caps.values():
        entry["pass_rate"] = round(entry["passed"] / entry["n"], 4)
    required = [e for c, e in caps.items() if c in REQUIRED]
    req_n = sum(e["n"] for e in required)
    req_passed = sum(e["passed"] for e in required)
    passed = sum(e["passed"] for e in caps.values())
    overall_required = req_passed / req_n if req_n else 0.0
    return {
        "n": len(cases),
        "passed": passed,
        "pass_rate": round(passed / len(cases), 4),
        "n_required": req_n,
        "passed_required": req_passed,
        "pass_rate_required": round(overall_required, 4),
        "capabilities": {c: caps[c] for c in (*REQUIRED, *REPORTED) if c in caps},
        "meets_bars": overall_required >= OVERALL_BAR
        and all(e["pass_rate"] >= CAPABILITY_BAR for e in required),
        "failures": failures,
    }


def run_suite(predict: Callable[[list[str]], list[str]], path: Path | None = None) -> dict:
    """Grade ``predict`` (texts → labels) on the suite; adds the suite's sha256."""
    cases = load_suite(path)
    result = grade(cases, predict([c.text for c in cases]))
    result["suite_sha256"] = suite_sha256(path)
    return result
