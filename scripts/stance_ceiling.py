"""How far the stance encoder goes on each dev set: specialists and dev-tuned offsets (not a test).

    .venv/bin/python scripts/stance_ceiling.py figures models/sentiment
    .venv/bin/python scripts/stance_ceiling.py specialist tfns --epochs 2 --out build/spec_tfns
    .venv/bin/python scripts/stance_ceiling.py specialist stocktwits --epochs 3 --out build/spec_st

``figures`` scores the three dev sets on the exact fp32 path (the scorer's reading of long
posts) and prints, for each set, its figure with the model's own offsets, with the
offsets that maximise that set alone (tuned on the dev set itself: an upper bound for any
choice of offsets, never a result), and a bootstrap 95 % interval of the first.
``specialist`` fine-tunes the model on one source only (``tfns-train``, or the StockTwits
posts before the hold-out with the direction-only loss) and prints the same figures: what
this encoder reaches when nothing else competes for it. Needs ``../shared/data``. The
figures in models/README.md ("How far this encoder goes") come from this script.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np
import torch

from nlp.calibration import DevSet, dev_figure, fit_class_bias
from nlp.stance_training import (
    RUN_TRUNCATE,
    STOCKTWITS_FILE,
    dev_sets,
    model_text,
    read_stocktwits,
    stance_targets,
    swap_cashtags,
)
from nlp.training import (
    TrainConfig,
    fine_tune,
    load_base_model,
    load_tokenizer,
    predict_logits,
    read_labelled,
    save_model,
)

DEVICE = torch.device("cpu")


def figures(
    model: torch.nn.Module, tok: object, data: Path, bias: tuple[float, float, float]
) -> dict[str, dict[str, object]]:
    """Each dev set's figure with ``bias``, with offsets tuned on that set, and a 95 % interval."""
    rng = np.random.default_rng(0)
    out: dict[str, dict[str, object]] = {}
    for name, texts, gold, metric in dev_sets(data):
        logits = predict_logits(
            model,
            tok,
            [model_text(t) for t in texts],
            DEVICE,
            RUN_TRUNCATE["max_length"],
            tail=RUN_TRUNCATE["tail"],
        )
        dev = DevSet(name, logits.double().numpy(), np.asarray(gold), metric)
        tuned, _ = fit_class_bias([dev], span=3.0)
        draws = []
        for _ in range(1000):
            i = rng.integers(0, len(gold), len(gold))
            draws.append(dev_figure(DevSet(name, dev.logits[i], dev.gold[i], metric), bias))
        out[name] = {
            "figure": round(dev_figure(dev, bias), 4),
            "ci95": [round(float(x), 4) for x in np.percentile(draws, [2.5, 97.5])],
            "tuned_on_itself": round(dev_figure(dev, tuned), 4),
            "tuned_offsets": list(tuned),
        }
    return out


def specialist_rows(which: str, data: Path, seed: int) -> list[tuple[str, str, str]]:
    """One source's training rows ``(text, label, source)``, as the recipe draws them."""
    rng = random.Random(seed)
    if which == "tfns":
        rows = [
            (r["text"], r["label"].lower(), "tfns")
            for r in read_labelled(data / "sentiment" / "fin_train.tsv")
            if r["source"] == "tfns-train"
        ]
    else:
        posts = read_stocktwits(data / "social" / STOCKTWITS_FILE)
        posts = [(swap_cashtags(t, rng) if rng.random() < 0.3 else t, lab) for t, lab in posts]
        posts += [p for p in posts if p[1] == "negative"]  # bearish twice, as the recipe
        rows = [(t, lab, "stocktwits") for t, lab in posts]
    rng.shuffle(rows)
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=Path("../shared/data"))
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("figures", help="dev figures of an installed model")
    f.add_argument("model", type=Path)
    s = sub.add_parser("specialist", help="fine-tune on one source, then its dev figures")
    s.add_argument("source", choices=("tfns", "stocktwits"))
    s.add_argument("--init", type=Path, default=Path("models/sentiment"))
    s.add_argument("--epochs", type=float, default=2.0)
    s.add_argument("--lr", type=float, default=3e-5)
    s.add_argument("--seed", type=int, default=21)
    s.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(2)
    if args.command == "figures":
        meta = json.loads((args.model / "moodring.json").read_text())
        bias = tuple(meta.get("class_bias", (0.0, 0.0, 0.0)))
        model = load_base_model(args.model).eval()
        report = {"model": meta.get("model_id"), "offsets": list(bias)}
        report["dev"] = figures(model, load_tokenizer(args.model), args.data, bias)
        print(json.dumps(report))
        return 0
    rows = specialist_rows(args.source, args.data, args.seed)
    targets, mask = stance_targets(rows, 0.1, st_polar=args.source == "stocktwits")
    tok = load_tokenizer(args.init)
    cfg = TrainConfig(
        name=f"specialist-{args.source}",
        lr=args.lr,
        epochs=args.epochs,
        batch_size=32,
        layer_decay=0.9,
        max_length=RUN_TRUNCATE["max_length"],
        seed=args.seed,
        freeze_word_embeddings=True,
        length_buckets=True,
    )
    t0 = time.monotonic()
    texts = [model_text(t) for t, _, _ in rows]
    model = fine_tune(args.init, tok, texts, targets, cfg, DEVICE, class_mask=mask).eval()
    report = {"source": args.source, "rows": len(rows), "epochs": args.epochs}
    report["init"], report["train_s"] = str(args.init), round(time.monotonic() - t0)
    report["dev"] = figures(model, tok, args.data, (0.0, 0.0, 0.0))
    save_model(model, tok, args.out, {"truncate": dict(RUN_TRUNCATE), "emoji_words": True})
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
