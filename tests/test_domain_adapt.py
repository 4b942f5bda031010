"""Domain-adaptive pre-training (``python -m nlp.domain_adapt``) on a tiny encoder: what it reads,
what it masks, and that it hands back the same classifier with only the encoder trained."""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import torch
from safetensors.torch import load_file

from nlp import domain_adapt
from nlp.scorer import Scorer
from tests.conftest import synthetic_text

SUITE_CASE = "bullish af"  # a behaviour-suite case: never trained on, not even unlabelled


def write_data(root: Path) -> Path:
    rng = random.Random(5)
    (root / "social").mkdir(parents=True)
    (root / "sentiment").mkdir()
    with open(root / "social" / "stocktwits_btc_eth_2022.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "created_at", "author", "tag", "likes", "text"])
        w.writeheader()
        for i in range(60):
            # Posts from the 7-day hold-out on: their texts must not be read.
            day = 1 + i // 3
            text = "HOLDOUT POST" if day >= 18 else synthetic_text(rng, "positive")
            at = f"2022-07-{day:02d}T12:00:00Z"
            w.writerow(
                {"id": i, "created_at": at, "author": "a", "tag": "", "likes": 0, "text": text}
            )
        at = "2022-07-01T00:00:00Z"
        w.writerow(
            {
                "id": 99,
                "created_at": at,
                "author": "b",
                "tag": "Bullish",
                "likes": 0,
                "text": SUITE_CASE,
            }
        )
    with open(root / "social" / "crypto_tweets_2021.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["id", "created_at", "text"])
        w.writeheader()
        for i in range(40):
            text = synthetic_text(rng, "neutral")
            w.writerow({"id": i, "created_at": "2021-03-01", "text": text})
        w.writerow({"id": 41, "created_at": "2021-03-01", "text": "  "})
    with open(root / "sentiment" / "fin_train.tsv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["label", "text", "source"], delimiter="\t")
        w.writeheader()
        for _ in range(40):
            text = synthetic_text(rng, "negative")
            w.writerow({"label": "negative", "text": text, "source": "tfns-train"})
        w.writerow({"label": "neutral", "text": "A DEV SET HEADLINE", "source": "tfns-valid"})
    return root


def test_the_corpus_is_older_posts_and_training_texts_only(tmp_path: Path) -> None:
    data = write_data(tmp_path / "data")
    texts, counts = domain_adapt.corpus(data)
    # 51 posts before the hold-out (17 days x 3, the suite case dropped), 40 tweets (the blank
    # one left out), 40 tfns-train texts; synthetic texts may repeat, and repeats count once.
    assert counts["stocktwits_dropped_near_suite"] == 1
    assert 0 < counts["stocktwits"] <= 51 and 0 < counts["crypto_tweets"] <= 40
    assert 0 < counts["tfns_train"] <= 40
    assert (
        len(texts)
        == len(set(texts))
        == counts["stocktwits"] + counts["crypto_tweets"] + (counts["tfns_train"])
    )
    joined = "\n".join(texts).lower()
    assert "holdout post" not in joined and "dev set headline" not in joined
    assert SUITE_CASE not in texts


def test_masking_never_picks_special_tokens_and_always_picks_one() -> None:
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 2000, (64, 12))
    ids[:, 0], ids[:, -1] = 101, 102
    ids[::2, 3:] = 0  # padded rows, only 2 real tokens
    special = torch.isin(ids, torch.tensor([0, 101, 102]))
    out, chosen = domain_adapt.mask_tokens(ids, special, mask_id=103, vocab=30522, gen=gen)
    assert not (chosen & special).any()
    assert chosen.any(dim=1).all()
    assert torch.equal(out[~chosen], ids[~chosen])  # only chosen positions change
    share = chosen.sum() / (~special).sum()
    assert 0.1 < share < 0.3
    assert (out[chosen] == 103).float().mean() > 0.6


def test_adapt_trains_the_encoder_and_keeps_the_classifier(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    data = write_data(tmp_path / "data")
    out = tmp_path / "adapted"
    argv = [
        "--init", str(tiny_model_dir), "--data", str(data), "--out", str(out), "--epochs", "6",
        "--batch-size", "16", "--lr", "2e-3", "--head-lr", "1e-2", "--head-warmup", "4",
        "--log-every", "4", "--no-eval",
    ]  # fmt: skip
    report = domain_adapt.adapt(domain_adapt.build_parser().parse_args(argv))
    losses = [row["mlm_loss"] for row in report["loss"]]
    assert losses[-1] < losses[0]  # the masked-LM loss fell: the encoder learned the corpus

    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(out / "model" / "model.safetensors"))
    assert before.keys() == after.keys()
    kept = [k for k in before if k.startswith(("classifier.", "bert.pooler."))]
    kept.append("bert.embeddings.word_embeddings.weight")
    for k in kept:
        assert torch.equal(before[k], after[k]), k
    trained = [k for k in before if ".encoder.layer." in k and k.endswith("weight")]
    assert all(not torch.equal(before[k], after[k]) for k in trained)

    meta = json.loads((out / "model" / "moodring.json").read_text())
    assert meta["domain_adapt"]["steps"] == report["loss"][-1]["step"]
    assert "weights_sha256" not in meta  # `ship` records the new weights' own
    (score,) = Scorer(out / "model", cache_size=0, backend="torch").score(["$BTC rekt again"])
    assert abs(score.p_neg + score.p_neu + score.p_pos - 1) < 1e-4
