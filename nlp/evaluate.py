"""Evaluate a scorer on a labelled TSV file: recall per class, macro recall, accuracy, ECE."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from pathlib import Path

from nlp.metrics import expected_calibration_error, macro_recall, per_class_recall

log = logging.getLogger(__name__)

LABELS = ("negative", "neutral", "positive")


def read_labelled_tsv(path: Path) -> tuple[list[str], list[int]]:
    """Texts and label ids of a tab-separated file whose header names ``label`` and ``text``.

    Other columns are ignored; labels are negative/neutral/positive in any case.

    Raises:
        ValueError: the header lacks a column, a label is unknown, or there are no rows.
    """
    texts: list[str] = []
    gold: list[int] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        missing = {"label", "text"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(
                f"{path}: the tab-separated header must name 'label' and 'text' "
                f"(missing {', '.join(sorted(missing))})"
            )
        for row in reader:
            label = (row.get("label") or "").strip().lower()
            if label not in LABELS:
                raise ValueError(
                    f"{path}, line {reader.line_num}: label {row.get('label')!r} is not one of "
                    f"{', '.join(LABELS)}"
                )
            texts.append(row.get("text") or "")
            gold.append(LABELS.index(label))
    if not texts:
        raise ValueError(f"{path}: no labelled rows")
    return texts, gold


def evaluate_file(path: Path, scorer) -> dict:
    """Score every text of a labelled TSV file and compare with its labels.

    Args:
        path: tab-separated file with a header naming at least ``label`` and ``text``.
        scorer: anything with ``score(texts) -> list[Score]`` (a :class:`nlp.scorer.Scorer`).

    Returns:
        ``n``, ``macro_recall`` (over the labels present), ``accuracy`` and
        ``recall_<label>`` for each label present; ``polar_accuracy`` (P(pos) > P(neg)
        against the label) when only positive and negative occur; ``ece`` (top-label,
        15 bins) when all three occur. Metrics are rounded to 4 decimals.

    Raises:
        ValueError: the file is not a labelled TSV (see :func:`read_labelled_tsv`).
    """
    texts, gold = read_labelled_tsv(Path(path))
    scores = scorer.score(texts)
    probs = [(s.p_neg, s.p_neu, s.p_pos) for s in scores]
    pred = [LABELS.index(s.label) for s in scores]
    result: dict = {
        "n": len(gold),
        "macro_recall": round(macro_recall(gold, pred), 4),
        "accuracy": round(sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold), 4),
    }
    for cls, recall in per_class_recall(gold, pred).items():
        result[f"recall_{LABELS[cls]}"] = round(recall, 4)
    present = set(gold)
    neutral = LABELS.index("neutral")
    if neutral not in present:
        positive = LABELS.index("positive")
        right = sum(
            (s.p_pos > s.p_neg) == (g == positive) for s, g in zip(scores, gold, strict=True)
        )
        result["polar_accuracy"] = round(right / len(gold), 4)
    if len(present) == len(LABELS):
        result["ece"] = round(expected_calibration_error(probs, gold, bins=15), 4)
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m nlp.evaluate FILE --model DIR``: print the metrics as one JSON line."""
    from nlp.scorer import Scorer

    p = argparse.ArgumentParser(description="evaluate the sentiment scorer on a labelled TSV")
    p.add_argument("path", type=Path)
    p.add_argument("--model", type=Path, default=Path("models/sentiment"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"))
    args = p.parse_args(argv)
    scorer = Scorer(args.model, device=args.device, backend=args.backend)
    result = evaluate_file(args.path, scorer)
    result["backend"] = scorer.backend
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
