"""Evaluate a scorer on a labelled TSV file: recall per class, macro recall, accuracy, ECE."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from nlp.metrics import expected_calibration_error, macro_recall, per_class_recall
from nlp.types import LABELS, Score

log = logging.getLogger(__name__)


class TextScorer(Protocol):
    """What :func:`evaluate_file` needs of a scorer (:class:`nlp.scorer.Scorer` fits)."""

    def score(self, texts: list[str]) -> list[Score]: ...


#: The authors' own StockTwits tags, as labels.
TAG_LABELS = {"bullish": "positive", "bearish": "negative"}


def read_labelled_tsv(path: Path, source: str | None = None) -> tuple[list[str], list[int]]:
    """Texts and label ids of a tab-separated file whose header names ``label`` and ``text``.

    Other columns are ignored, except ``source`` when ``source`` is given (only those rows).
    Labels are negative/neutral/positive or, as the product names them, bearish/neutral/
    bullish, in any case. A UTF-8 byte-order mark is allowed.

    Raises:
        ValueError: the file is not UTF-8, the header lacks a column, a label is unknown,
            or there are no rows.
    """
    texts: list[str] = []
    gold: list[int] = []
    names = {**{label: label for label in LABELS}, **TAG_LABELS}
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        try:
            fields = reader.fieldnames or ()
            missing = {"label", "text"} - set(fields)
            if missing:
                raise ValueError(
                    f"{path}: the tab-separated header must name 'label' and 'text' "
                    f"(missing {', '.join(sorted(missing))})"
                )
            if source is not None and "source" not in fields:
                raise ValueError(f"{path}: --source needs a 'source' column")
            for row in reader:
                if source is not None and row.get("source") != source:
                    continue
                label = names.get((row.get("label") or "").strip().lower())
                if label is None:
                    raise ValueError(
                        f"{path}, line {reader.line_num}: label {row.get('label')!r} is not one"
                        f" of {', '.join(LABELS)} (or bearish, bullish)"
                    )
                texts.append(row.get("text") or "")
                gold.append(LABELS.index(label))
        except UnicodeDecodeError as exc:
            line = reader.line_num + 1
            raise ValueError(f"{path}, near line {line}: not UTF-8 text ({exc.reason})") from exc
    if not texts:
        raise ValueError(f"{path}: no labelled rows" + (f" of source {source!r}" if source else ""))
    return texts, gold


def read_tagged_csv(path: Path, since: str | None = None) -> tuple[list[str], list[int]]:
    """Texts and labels of a social CSV's posts tagged Bullish/Bearish by their authors
    (``tag`` column), created at or after ``since`` (ISO text, compared as stored)."""
    texts: list[str] = []
    gold: list[int] = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if not {"tag", "text"} <= set(reader.fieldnames or ()):
            raise ValueError(f"{path}: a tagged CSV needs 'tag' and 'text' columns")
        for row in reader:
            label = TAG_LABELS.get((row.get("tag") or "").strip().lower())
            if label is None or (since and (row.get("created_at") or "") < since):
                continue
            texts.append(row.get("text") or "")
            gold.append(LABELS.index(label))
    if not texts:
        raise ValueError(f"{path}: no tagged posts" + (f" since {since}" if since else ""))
    return texts, gold


def polar_accuracies(says_bullish: Sequence[bool], bullish: Sequence[bool]) -> tuple[float, float]:
    """(polar accuracy, balanced polar accuracy) of "P(pos) > P(neg)" against the labels.

    The balanced figure is the mean of the recall on each side present.
    """
    right = [s == b for s, b in zip(says_bullish, bullish, strict=True)]
    sides = [
        [ok for ok, b in zip(right, bullish, strict=True) if b == side] for side in set(bullish)
    ]
    return sum(right) / len(right), sum(sum(s) / len(s) for s in sides) / len(sides)


def evaluate_file(
    path: Path, scorer: TextScorer, source: str | None = None, since: str | None = None
) -> dict:
    """Score every text of a labelled TSV file and compare with its labels.

    Args:
        path: tab-separated file with a header naming at least ``label`` and ``text``.
        scorer: anything with ``score(texts) -> list[Score]`` (a :class:`nlp.scorer.Scorer`).

    Returns:
        ``n``, ``macro_recall`` (over the labels present), ``accuracy`` and
        ``recall_<label>`` for each label present; ``polar_accuracy`` (P(pos) > P(neg)
        against the label) and ``balanced_polar_accuracy`` (the mean of its recall on each
        side) when only positive and negative occur; ``ece`` (top-label, 15 bins) when all
        three occur. Metrics are rounded to 4 decimals. A ``.csv`` file is read as a social
        stream whose authors tagged posts Bullish/Bearish (only posts from ``since`` on);
        ``source`` keeps the TSV rows of that source.

    Raises:
        ValueError: the file is not a labelled TSV (see :func:`read_labelled_tsv`).
    """
    path = Path(path)
    if path.suffix.lower() == ".csv":
        texts, gold = read_tagged_csv(path, since)
    else:
        texts, gold = read_labelled_tsv(path, source)
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
        polar, balanced = polar_accuracies(
            [s.p_pos > s.p_neg for s in scores], [g == positive for g in gold]
        )
        result["polar_accuracy"] = round(polar, 4)
        result["balanced_polar_accuracy"] = round(balanced, 4)
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
    p.add_argument("--source", help="TSV: only rows of this source (e.g. tfns-valid)")
    p.add_argument("--since", help="tagged CSV: only posts created at or after this")
    args = p.parse_args(argv)
    scorer = Scorer(args.model, device=args.device, backend=args.backend)
    result = evaluate_file(args.path, scorer, args.source, args.since)
    result["backend"] = scorer.backend
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
