"""The training recipe end to end on a tiny encoder: hold-out ranking, teachers, distillation,
calibration and saving, and the same seed giving the same model."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest
import torch

from nlp import training
from nlp.scorer import Scorer, sha256_of
from tests.conftest import synthetic_text

MOODS = ("negative", "neutral", "positive")


def write_tsv(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A train.tsv with a 2016test slice, a val.tsv and StockTwits-like tagged posts."""
    rng = random.Random(3)
    root = tmp_path_factory.mktemp("train-data")
    train = [
        {"label": mood, "text": synthetic_text(rng, mood), "source": source}
        for source in ("2013train", "2016test")
        for mood in MOODS * 60
    ]
    val = [{"label": mood, "text": synthetic_text(rng, mood)} for mood in MOODS * 30]
    posts = root / "posts.csv"
    with open(posts, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["created_at", "text", "tag"])
        writer.writeheader()
        for day, (mood, tag) in enumerate(
            [("positive", "Bullish"), ("negative", "Bearish"), ("neutral", "")] * 20
        ):
            writer.writerow(
                {
                    # the 12 posts of 17 to 20 July are not before --unlabelled-before
                    "created_at": f"2022-07-{1 + day // 3:02d}T12:00:00Z",
                    "text": synthetic_text(rng, mood),
                    "tag": tag,
                }
            )
    return {
        "train": write_tsv(root / "train.tsv", train),
        "val": write_tsv(root / "val.tsv", val),
        "posts": posts,
    }


def train(base: Path, data: dict[str, Path], out: Path, *extra: str) -> dict:
    argv = [
        "--base", str(base), "--train", str(data["train"]), "--val", str(data["val"]),
        "--out", str(out), "--device", "cpu", "--seeds", "2", "--batch-size", "32",
        "--unlabelled", str(data["posts"]), "--unlabelled-before", "2022-07-17", *extra,
    ]  # fmt: skip
    return training.run_recipe(training.build_parser().parse_args(argv))


def figures(report: dict) -> dict:
    """The report without wall-clock times."""
    drop = {"seconds", "elapsed_s"}
    text = json.dumps(report, sort_keys=True)
    return json.loads(text, object_hook=lambda d: {k: v for k, v in d.items() if k not in drop})


def test_same_seed_same_model_and_figures(tiny_base_dir: Path, data, tmp_path: Path) -> None:
    first = train(tiny_base_dir, data, tmp_path / "a")
    second = train(tiny_base_dir, data, tmp_path / "b")

    # Step A ranked both configs on the 2016test slice and fitted a temperature there.
    assert [r["config"]["name"] for r in first["holdout"]] == ["plain", "tuned"]
    assert all(r["holdout_2016test"]["macro_recall"] > 0 for r in first["holdout"])
    assert first["chosen"]["temperature"] > 0
    # Step B: two teachers; step C: a student over train.tsv plus the older posts only.
    assert [s["teacher"] for s in first["steps"]] == [0, 1]
    assert first["student_val"]["n_extra"] == 48
    student = tmp_path / "a" / "student"
    meta = json.loads((student / "moodring.json").read_text())
    assert meta["kind"] == "student" and meta["teachers"] == 2
    assert meta["temperature"] == first["chosen"]["temperature"]

    # Reproducible: the same seed gives the same figures and byte-identical weights.
    assert figures(first) == figures(second)
    weights = sha256_of(student / "model.safetensors")
    assert weights == sha256_of(tmp_path / "b" / "student" / "model.safetensors")

    # The saved student is a model the product loads and scores with.
    scores = Scorer(student, backend="torch").score(["$BTC to the moon", ""])
    assert len(scores) == 2 and all(s.model_id == "student" for s in scores)

    # ...and the seed matters: other teachers give another student.
    third = train(tiny_base_dir, data, tmp_path / "c", "--seed-offset", "5", "--configs", "plain")
    assert "holdout" not in third  # one config: nothing to rank
    assert sha256_of(tmp_path / "c" / "student" / "model.safetensors") != weights


def test_soup_interpolates_two_models_in_weight_space(tiny_model_dir: Path, tmp_path: Path) -> None:
    """``stance_training soup``: alpha 0 is the first model, 1 the second, 0.5 their mean;
    the result carries its own name and none of the second's sha256 or offsets, so it loads
    and scores like any model (its int8 cache keyed by its own weights)."""
    import shutil

    from safetensors.torch import load_file, save_file

    from nlp.stance_training import main as stance_main

    other = tmp_path / "other"
    shutil.copytree(tiny_model_dir, other)
    weights = load_file(str(other / "model.safetensors"))
    shifted = {
        k: (v.float() + 0.5).to(v.dtype) if v.is_floating_point() else v for k, v in weights.items()
    }
    save_file(shifted, str(other / "model.safetensors"), metadata={"format": "pt"})
    meta = json.loads((other / "moodring.json").read_text())
    meta |= {"weights_sha256": sha256_of(other / "model.safetensors"), "class_bias": [1, 0, 0]}
    (other / "moodring.json").write_text(json.dumps(meta))
    mixed: dict[float, dict] = {}
    for alpha in (0.0, 0.5, 1.0):
        out = tmp_path / f"soup{alpha}"
        args = ["soup", str(tiny_model_dir), str(other), "--alpha", str(alpha), "--out", str(out)]
        assert stance_main([*args, "--model-id", f"soup-{alpha}"]) == 0
        mixed[alpha] = load_file(str(out / "model.safetensors"))
    first = load_file(str(tiny_model_dir / "model.safetensors"))
    for k, v in first.items():
        assert torch.equal(mixed[0.0][k], v)
        assert torch.equal(mixed[1.0][k], shifted[k])
        if v.is_floating_point():
            mean = (v.float() + shifted[k].float()) / 2
            assert torch.allclose(mixed[0.5][k].float(), mean, atol=1e-2)
    meta = json.loads((tmp_path / "soup0.5" / "moodring.json").read_text())
    assert meta["soup"]["alpha"] == 0.5 and meta["model_id"] == "soup-0.5"
    assert "weights_sha256" not in meta and "class_bias" not in meta
    scorer = Scorer(tmp_path / "soup0.5", cache_size=0, backend="torch")
    (score,) = scorer.score(["to the moon"])
    assert score.model_id == "soup-0.5"
    assert abs(score.p_neg + score.p_neu + score.p_pos - 1) < 1e-4
    with pytest.raises(ValueError, match="one of the models"):
        stance_main([*args[:5], "--out", str(other), "--alpha", "0.5", "--model-id", "x"])


def test_self_training_reads_only_untagged_posts_from_before_the_hold_out(tmp_path: Path) -> None:
    """``--pseudo`` texts: untagged StockTwits posts older than the hold-out and the 2021
    crypto tweets; a tagged post, or any post of the hold-out week, is never among them."""
    from nlp.stance_training import HOLDOUT_FROM, read_untagged

    social = tmp_path / "social"
    social.mkdir()
    before, after = "2022-07-01T00:00:00Z", "2022-07-20T00:00:00Z"
    assert before < HOLDOUT_FROM < after
    with open(social / "stocktwits_btc_eth_2022.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "created_at", "author", "tag", "likes", "text"])
        w.writerow([1, before, "a", "", 0, "untagged, before"])
        w.writerow([2, before, "a", "Bullish", 0, "tagged, before"])
        w.writerow([3, after, "a", "", 0, "untagged, in the hold-out"])
        w.writerow([4, after, "a", "Bearish", 0, "tagged, in the hold-out"])
        w.writerow([5, before, "a", "", 0, ""])
    with open(social / "crypto_tweets_2021.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "created_at", "text"])
        w.writerow([1, "2021-03-01T00:00:00Z", "a 2021 tweet"])
    assert read_untagged(tmp_path) == ["untagged, before", "a 2021 tweet"]


def test_soft_cross_entropy_leaves_masked_classes_out() -> None:
    """A row whose neutral class is masked out is a two-way bullish/bearish cross-entropy:
    neutral's logit gets no gradient from it, and the loss is finite; an unmasked row is the
    ordinary three-way soft cross-entropy."""
    logits = torch.tensor([[0.3, 2.0, -0.5], [0.1, 0.4, 0.2]], requires_grad=True)
    targets = torch.tensor([[0.05, 0.0, 0.95], [0.1, 0.8, 0.1]])
    mask = torch.tensor([[True, False, True], [True, True, True]])
    loss = training.soft_cross_entropy(logits, targets, mask)
    loss.backward()
    assert logits.grad is not None and torch.isfinite(loss)
    assert logits.grad[0, 1] == 0 and logits.grad[0, 0] != 0 and logits.grad[1, 1] != 0
    two_way = -(targets[0, [0, 2]] * logits[0, [0, 2]].log_softmax(-1)).sum()
    three_way = -(targets[1] * logits[1].log_softmax(-1)).sum()
    assert torch.allclose(loss, (two_way + three_way) / 2)
    plain = training.soft_cross_entropy(logits, targets)
    assert not torch.allclose(plain, loss)  # the mask changed the first row's loss


def test_st_polar_targets_leave_neutral_out_for_stocktwits_rows_only(monkeypatch) -> None:
    """``--st-polar``: StockTwits rows get a zero neutral target and a mask without neutral;
    every other source keeps its three-way target."""
    from nlp import stance_training

    rows = [("up only", "positive", "stocktwits"), ("flat day", "neutral", "tfns")]
    targets, mask = stance_training.stance_targets(rows, label_smoothing=0.1, st_polar=True)
    assert mask is not None
    assert mask[0].tolist() == [True, False, True] and mask[1].tolist() == [True, True, True]
    assert targets[0, 1] == 0 and torch.isclose(targets[0].sum(), torch.tensor(1.0))
    assert targets[0, 2] > 0.9 and torch.isclose(targets[1].sum(), torch.tensor(1.0))
    plain, none = stance_training.stance_targets(rows, label_smoothing=0.1, st_polar=False)
    assert none is None and plain[0, 1] > 0


def test_drop_cashtags_leaves_what_the_post_says() -> None:
    """``--cashtag-drop``: a StockTwits post without its stream's cashtags, which every
    tagged post carries and a model would learn as a prior."""
    from nlp.stance_training import drop_cashtags

    assert drop_cashtags("$ETH.X @user I just entered shorts") == "@user I just entered shorts"
    assert drop_cashtags("$BTC.X $SOL.X going to zero $AAPL") == "going to zero"
    assert drop_cashtags("buy $BRK.B now") == "buy now"
    assert drop_cashtags("I paid $400 for it") == "I paid $400 for it"  # a price, not a tag
    assert drop_cashtags("$BTC.X $ETH.X") == "$BTC.X $ETH.X"  # nothing else: kept whole
