"""evaluate_file: reading labelled TSVs and the metrics it reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nlp.evaluate import evaluate_file
from nlp.types import Score

LABELS = ("negative", "neutral", "positive")


class FakeScorer:
    """Scores each text from a lookup table of (p_neg, p_neu, p_pos)."""

    def __init__(self, table: dict[str, tuple[float, float, float]]) -> None:
        self.table = table

    def score(self, texts: list[str]) -> list[Score]:
        out = []
        for text in texts:
            p = self.table[text]
            out.append(Score(*p, label=LABELS[p.index(max(p))], model_id="fake"))
        return out


def write_tsv(path: Path, rows: list[tuple[str, ...]], header: str = "label\ttext") -> Path:
    path.write_text(header + "\n" + "".join("\t".join(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_three_classes(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "three.tsv",
        [
            ("extra", "Negative", "a"),
            ("extra", "negative", "b"),
            ("extra", "NEUTRAL", "c"),
            ("extra", "positive", "d"),
        ],
        header="id\tlabel\ttext",
    )
    scorer = FakeScorer(
        {
            "a": (0.8, 0.1, 0.1),  # right, confident
            "b": (0.2, 0.7, 0.1),  # wrong: neutral
            "c": (0.1, 0.8, 0.1),  # right
            "d": (0.1, 0.3, 0.6),  # right
        }
    )
    result = evaluate_file(path, scorer)
    assert result["n"] == 4
    assert result["recall_negative"] == 0.5
    assert result["recall_neutral"] == 1.0
    assert result["recall_positive"] == 1.0
    assert result["macro_recall"] == round((0.5 + 1 + 1) / 3, 4)
    assert result["accuracy"] == 0.75
    # Bins: 0.6 (right), 0.7 (wrong), two at 0.8 (right): |0.6-1| + |0.7-0| + 2*|0.8-1|, / 4.
    assert result["ece"] == pytest.approx((0.4 + 0.7 + 0.4) / 4, abs=1e-4)
    assert "polar_accuracy" not in result
    json.dumps(result)  # the CLI prints it as JSON


def test_polar_only(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "polar.tsv",
        [("positive", "up"), ("positive", "flat"), ("negative", "down")],
    )
    scorer = FakeScorer(
        {
            "up": (0.1, 0.3, 0.6),
            "flat": (0.2, 0.5, 0.3),  # neutral label (wrong) but P(pos) > P(neg): polar right
            "down": (0.3, 0.2, 0.5),  # wrong both ways
        }
    )
    result = evaluate_file(path, scorer)
    assert result["polar_accuracy"] == round(2 / 3, 4)
    assert result["recall_positive"] == 0.5
    assert result["recall_negative"] == 0.0
    assert result["macro_recall"] == 0.25
    assert "recall_neutral" not in result
    assert "ece" not in result


def test_quoted_text_with_tabs_and_quotes(tmp_path: Path) -> None:
    path = tmp_path / "quoted.tsv"
    path.write_text('label\ttext\npositive\t"say ""hi""\tthere"\n', encoding="utf-8")
    scorer = FakeScorer({'say "hi"\tthere': (0.1, 0.1, 0.8)})
    assert evaluate_file(path, scorer)["accuracy"] == 1.0


def test_missing_header_columns(tmp_path: Path) -> None:
    path = write_tsv(tmp_path / "bad.tsv", [("positive", "x")], header="sentiment\ttext")
    with pytest.raises(ValueError, match="label"):
        evaluate_file(path, FakeScorer({}))


def test_unknown_label_and_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="line 2"):
        evaluate_file(write_tsv(tmp_path / "u.tsv", [("moon", "x")]), FakeScorer({}))
    with pytest.raises(ValueError, match="no labelled rows"):
        evaluate_file(write_tsv(tmp_path / "e.tsv", []), FakeScorer({}))


def test_source_keeps_only_that_sources_rows(tmp_path: Path) -> None:
    path = write_tsv(
        tmp_path / "fin.tsv",
        [("negative", "a", "tfns-train"), ("positive", "b", "tfns-valid")],
        header="label\ttext\tsource",
    )
    scorer = FakeScorer({"a": (0.1, 0.1, 0.8), "b": (0.1, 0.1, 0.8)})
    assert evaluate_file(path, scorer, source="tfns-valid")["accuracy"] == 1.0
    assert evaluate_file(path, scorer)["accuracy"] == 0.5
    with pytest.raises(ValueError, match="no labelled rows of source 'nope'"):
        evaluate_file(path, scorer, source="nope")
    plain = write_tsv(tmp_path / "plain.tsv", [("negative", "a")])
    with pytest.raises(ValueError, match="needs a 'source' column"):
        evaluate_file(plain, scorer, source="tfns-valid")


def test_a_tagged_social_csv_gives_balanced_polar_accuracy_from_a_date(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text(
        "id,created_at,author,tag,likes,text\n"
        "1,2022-07-01T00:00:00Z,u,Bullish,0,old\n"  # before the hold-out: left out
        "2,2022-07-20T00:00:00Z,u,Bullish,0,up\n"
        "3,2022-07-20T01:00:00Z,u,Bullish,0,up too\n"
        "4,2022-07-20T02:00:00Z,u,Bearish,0,down\n"
        "5,2022-07-20T03:00:00Z,u,,0,untagged\n",
        encoding="utf-8",
    )
    scorer = FakeScorer({"up": (0.1, 0.2, 0.7), "up too": (0.6, 0.2, 0.2), "down": (0.7, 0.2, 0.1)})
    result = evaluate_file(path, scorer, since="2022-07-17T10:30:28Z")
    assert result["n"] == 3
    assert result["polar_accuracy"] == round(2 / 3, 4)
    assert result["balanced_polar_accuracy"] == round((0.5 + 1.0) / 2, 4)


def test_stance_names_a_byte_order_mark_and_bad_bytes(tmp_path: Path) -> None:
    """Labels may be named as the product names them (bearish/neutral/bullish); a file
    saved with a UTF-8 byte-order mark reads; bytes that are not UTF-8 name the file."""
    scorer = FakeScorer({"up": (0.1, 0.1, 0.8), "down": (0.8, 0.1, 0.1)})
    path = tmp_path / "stance.tsv"
    path.write_text("label\ttext\nBullish\tup\nbearish\tdown\n", encoding="utf-8-sig")
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert evaluate_file(path, scorer)["accuracy"] == 1.0
    bad = tmp_path / "latin1.tsv"
    bad.write_bytes(b"label\ttext\npositive\tup\npositive\tcaf\xe9\n")
    with pytest.raises(ValueError, match=r"latin1\.tsv.*not UTF-8"):
        evaluate_file(bad, scorer)
