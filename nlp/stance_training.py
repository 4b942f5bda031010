"""The market-stance recipe: one MiniLM classifier for bearish / neutral / bullish trading chat.

It fine-tunes one encoder on a mix of labelled sources, all mapped onto the three classes the
product reads (negative = bearish, neutral, positive = bullish; see ``models/LABELLING.md``):

- Twitter Financial News Sentiment, ``tfns-train`` rows (finance tweets, Bearish/Bullish/Neutral);
- StockTwits ``$BTC.X``/``$ETH.X`` posts older than the 7-day hold-out, with their authors'
  own Bullish/Bearish tags (bearish repeated to balance the two);
- SemEval tweets (``train.tsv``), a random subsample each run: plain emotion is crowd fear and
  greed, so the general classes carry over, and they keep the model's general skill;
- weakly labelled trading-chat sentences from :mod:`nlp.stance_templates`;
- optionally (``--pseudo``), untagged in-domain posts (StockTwits before the hold-out, the
  2021 crypto tweets) with the teacher's sharpened probabilities as targets (self-training).

Every text that is a near-duplicate of a behaviour-suite case is dropped first. Cashtags of
StockTwits posts are swapped for other coins' at random (augmentation at no extra cost).
Emoji are spelled as words (:func:`nlp.normalize.emoji_to_words`); the saved model asks the
scorer for the same step. The dev sets are ``tfns-valid``, the StockTwits hold-out and
TweetEval ``val.tsv``; the behaviour suite is reported, never trained on.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import random
import re
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from nlp.evaluate import TAG_LABELS, polar_accuracies, read_tagged_csv
from nlp.metrics import macro_recall
from nlp.neardup import NearDuplicateIndex
from nlp.normalize import emoji_to_words, normalize
from nlp.smoothing import DEFAULT_ALPHA, SHIP_FP32_LAYERS, SMOOTHING_FILE
from nlp.stance_templates import generate
from nlp.suite import load_suite, run_suite, suite_sha256
from nlp.training import (
    LABEL_TO_ID,
    LABELS,
    TrainConfig,
    fine_tune,
    fit_temperature,
    load_tokenizer,
    predict_logits,
    read_labelled,
    save_model,
    write_meta,
)

if TYPE_CHECKING:  # imported lazily at run time: transformers is slow to import
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

#: The StockTwits hold-out: the last 7 days of the stream (tagged posts from here on).
HOLDOUT_FROM = "2022-07-17T10:30:28Z"
STOCKTWITS_FILE = "stocktwits_btc_eth_2022.csv"
_CASHTAG_RE = re.compile(r"\$(BTC|ETH)\.X\b")
#: A StockTwits cashtag (``$ETH.X``, ``$SOL.X``, ``$AAPL``), with the spaces after it.
_ANY_CASHTAG_RE = re.compile(r"\$[A-Za-z][A-Za-z0-9]{0,9}(?:\.[A-Za-z]{1,2})?\b\s*")
#: How the product cuts a long post for a model of this recipe (nlp.scorer.head_and_tail): 64
#: tokens, as in training, keeping the last 24 text tokens. It read the StockTwits hold-out as
#: 128 head tokens did (0.780) with batches of long posts half as long (models/README.md).
RUN_TRUNCATE = {"max_length": 64, "tail": 24}
SWAP_TO = ("SOL", "DOGE", "XRP", "ADA", "LINK", "AVAX", "DOT", "MATIC", "LTC", "BNB", "SHIB")


def model_text(text: str) -> str:
    """What the stance model reads: normalised text with emoji spelled as words."""
    return emoji_to_words(normalize(text))


def stocktwits_before_holdout(path: Path) -> list[dict[str, str]]:
    """The StockTwits rows with a text from before the hold-out (:data:`HOLDOUT_FROM`),
    tagged or not: what training may read of the stream."""
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            row
            for row in csv.DictReader(fh)
            if row.get("text") and row["created_at"] < HOLDOUT_FROM
        ]


def read_crypto_tweets(data: Path) -> list[str]:
    """The texts of the 2021 crypto tweets (unlabelled)."""
    with open(data / "social" / "crypto_tweets_2021.csv", newline="", encoding="utf-8") as fh:
        return [row["text"] for row in csv.DictReader(fh) if row.get("text")]


def _tag(row: dict[str, str]) -> str:
    return (row.get("tag") or "").lower()


def read_stocktwits(path: Path) -> list[tuple[str, str]]:
    """Tagged posts ``(text, label)`` from before the hold-out (:data:`HOLDOUT_FROM`)."""
    return [
        (row["text"], TAG_LABELS[_tag(row)])
        for row in stocktwits_before_holdout(path)
        if _tag(row) in TAG_LABELS
    ]


def read_untagged(data: Path) -> list[str]:
    """In-domain posts without a label: untagged StockTwits posts from before the hold-out
    and the 2021 crypto tweets (self-training texts for ``--pseudo``)."""
    posts = stocktwits_before_holdout(data / "social" / STOCKTWITS_FILE)
    return [row["text"] for row in posts if _tag(row) not in TAG_LABELS] + read_crypto_tweets(data)


def swap_cashtags(text: str, rng: random.Random) -> str:
    """Replace ``$BTC.X``/``$ETH.X`` with other coins' cashtags, so the model learns the
    stance, not the two tickers of the stream."""
    return _CASHTAG_RE.sub(lambda _: f"${rng.choice(SWAP_TO)}.X", text)


def drop_cashtags(text: str) -> str:
    """``text`` without its cashtags (the text itself when nothing else is left).

    Every StockTwits post carries its stream's cashtags and every tagged one takes a side,
    so a model learns the tags as a prior: v3 read "$ETH.X I just entered shorts Friday"
    as 0.96 bullish and the same words without the tag as neutral. Posts seen without them
    must be read by what they say.
    """
    bare = _ANY_CASHTAG_RE.sub("", text).strip()
    return bare if bare else text


def build_training_set(args: argparse.Namespace, suite_texts: list[str]) -> tuple[list, dict]:
    """The mixed ``(text, label)`` rows and a count of each source (and of dropped rows)."""
    rng = random.Random(args.seed)
    data = Path(args.data)
    fin = [
        (r["text"], r["label"].lower())
        for r in read_labelled(data / "sentiment" / "fin_train.tsv")
        if r.get("source") == "tfns-train"
    ]
    st_train = read_stocktwits(data / "social" / STOCKTWITS_FILE)
    st = [(swap_cashtags(t, rng) if rng.random() < args.swap else t, lab) for t, lab in st_train]
    if args.cashtag_drop > 0:
        # Its own generator, so the rest of the mix is drawn exactly as without it.
        drop_rng = random.Random(args.seed + 1)
        st = [
            (drop_cashtags(t) if drop_rng.random() < args.cashtag_drop else t, lab) for t, lab in st
        ]
    st += [row for row in st if row[1] == "negative"] * max(0, args.bearish_repeat - 1)
    st = st * max(1, args.st_repeat)
    general = [
        (r["text"], r["label"].lower()) for r in read_labelled(data / "sentiment" / "train.tsv")
    ]
    rng.shuffle(general)
    general = general[: args.general]
    templates = (
        generate(seed=args.seed, n=args.templates, stance_words=args.stance_words)
        if args.templates
        else []
    )
    # TFNS is 65 % neutral; seeing its bearish and bullish rows more often is class balancing
    # by repetition (the targets are soft, so the loss takes no class weights).
    fin += [row for row in fin if row[1] != "neutral"] * max(0, args.fin_polar_repeat - 1)
    fin = fin * max(1, args.fin_repeat)
    untagged = read_untagged(data) if args.pseudo else []
    rng.shuffle(untagged)
    pseudo = [(t, "") for t in untagged[: args.pseudo]]  # targets come from the teacher
    sources = {
        "tfns": fin,
        "stocktwits": st,
        "general": general,
        "templates": templates,
        "pseudo": pseudo,
    }
    index = NearDuplicateIndex(suite_texts)
    rows, counts = [], {}
    for name, part in sources.items():
        kept, dropped = index.filter(part)
        counts[name] = len(kept)
        counts[f"{name}_dropped_near_suite"] = dropped
        rows += [(t, lab, name) for t, lab in kept]
    rng.shuffle(rows)
    if args.limit:
        rows = rows[: args.limit]
        counts["limit"] = args.limit
    return rows, counts


def stance_targets(
    rows: list[tuple[str, str, str]], label_smoothing: float, st_polar: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Soft targets for ``(text, label, source)`` rows (label smoothing; an empty label,
    a pseudo-labelled row, stays uniform until its teacher fills it in) and, with
    ``st_polar``, the class mask that leaves neutral out of the StockTwits rows' loss.

    An author's Bullish/Bearish tag says which way, not that the text takes a view: many
    tagged posts are a bare chart link or a question. With ``st_polar`` their rows teach the
    direction, P(bullish) against P(bearish) (what the hold-out measures), without pulling
    posts that say nothing away from neutral.
    """
    eps = label_smoothing
    targets = torch.full((len(rows), len(LABELS)), eps / len(LABELS))
    for i, (_, lab, _) in enumerate(rows):
        if lab:
            targets[i, LABEL_TO_ID[lab]] += 1 - eps
    if not st_polar:
        return targets, None
    polar = torch.tensor([source == "stocktwits" for _, _, source in rows], dtype=torch.bool)
    class_mask = torch.ones(len(rows), len(LABELS), dtype=torch.bool)
    class_mask[polar, LABEL_TO_ID["neutral"]] = False
    targets[polar, LABEL_TO_ID["neutral"]] = 0.0
    targets[polar] /= targets[polar].sum(-1, keepdim=True)
    return targets, class_mask


def evaluate(
    model: torch.nn.Module,
    tok: PreTrainedTokenizerBase,
    device: torch.device,
    data: Path,
    max_length: int,
    tail: int = 0,
) -> dict:
    """Dev figures on the fp32 torch path: tfns-valid, StockTwits hold-out, val.tsv, the suite
    (long texts cut to ``max_length`` tokens, keeping the last ``tail``)."""

    def logits(texts: list[str]) -> torch.Tensor:
        return predict_logits(
            model, tok, [model_text(t) for t in texts], device, max_length, tail=tail
        )

    out: dict = {}
    fin = [
        r
        for r in read_labelled(data / "sentiment" / "fin_train.tsv")
        if r["source"] == "tfns-valid"
    ]
    fl = logits([r["text"] for r in fin])
    fg = [LABEL_TO_ID[r["label"].lower()] for r in fin]
    out["tfns_valid_macro_recall"] = round(macro_recall(fg, fl.argmax(-1).tolist()), 4)
    val = read_labelled(data / "sentiment" / "val.tsv")
    vl = logits([r["text"] for r in val])
    vg = [LABEL_TO_ID[r["label"].lower()] for r in val]
    out["val_macro_recall"] = round(macro_recall(vg, vl.argmax(-1).tolist()), 4)
    texts, gold = read_tagged_csv(data / "social" / STOCKTWITS_FILE, HOLDOUT_FROM)
    hl = logits(texts)
    polar, balanced = polar_accuracies(
        (hl[:, 2] > hl[:, 0]).tolist(), [g == LABEL_TO_ID["positive"] for g in gold]
    )
    out["stocktwits_polar_accuracy"] = round(polar, 4)
    out["stocktwits_balanced_polar_accuracy"] = round(balanced, 4)
    suite = run_suite(lambda texts: [LABELS[i] for i in logits(texts).argmax(-1).tolist()])
    out["suite_pass_rate"] = suite["pass_rate"]
    out["suite_pass_rate_required"] = suite["pass_rate_required"]
    out["suite"] = {c: e["pass_rate"] for c, e in suite["capabilities"].items()}
    # Calibrate on the general and finance dev sets together (argmax is unchanged).
    out["temperature"] = round(fit_temperature(torch.cat([fl, vl]), torch.tensor(fg + vg)), 4)
    return out


def run(args: argparse.Namespace) -> dict:
    """Build the data, fine-tune, evaluate and (with ``--save``) save the model."""
    t0 = time.monotonic()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    init = Path(args.init)
    tok = load_tokenizer(init)
    suite_texts = [c.text for c in load_suite()]
    rows, counts = build_training_set(args, suite_texts)
    report: dict = {"args": vars(args), "counts": counts, "n_train": len(rows)}

    def note(key: str, value: object) -> None:
        report[key] = value
        report["elapsed_s"] = round(time.monotonic() - t0, 1)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        log.info("%s: %s", key, json.dumps(value))

    note("data", counts)
    targets, class_mask = stance_targets(rows, args.label_smoothing, args.st_polar)
    if class_mask is not None:
        note("st_polar", {"rows": int((~class_mask).any(-1).sum())})
    pseudo = [i for i, row in enumerate(rows) if row[2] == "pseudo"]
    if args.general_soft > 0 or pseudo:
        from nlp.training import load_base_model

        teacher = load_base_model(Path(args.teacher or init)).to(device).eval()

        def teacher_logits(idx: list[int]) -> torch.Tensor:
            texts = [model_text(rows[i][0]) for i in idx]
            return predict_logits(teacher, tok, texts, device, args.max_length)

        if args.general_soft > 0:
            # Self-distillation on the general tweets: the starting model's own probabilities
            # (or --teacher's, when the start is an adapted encoder whose head has drifted),
            # mixed into their targets, anchor the general skill that finance data would erase.
            idx = [i for i, row in enumerate(rows) if row[2] == "general"]
            a = args.general_soft
            targets[idx] = (1 - a) * targets[idx] + a * teacher_logits(idx).softmax(-1)
            teacher_id = args.teacher or str(init)
            note("general_soft", {"rows": len(idx), "weight": a, "teacher": teacher_id})
        if pseudo:
            # Self-training: the teacher's reading of untagged in-domain posts, sharpened
            # (temperature < 1) so the student learns its confident calls, not its doubts.
            probs = (teacher_logits(pseudo) / args.pseudo_temp).softmax(-1)
            targets[pseudo] = probs
            spread = probs.argmax(-1).bincount(minlength=len(LABELS)).tolist()
            note("pseudo", {"rows": len(pseudo), "temp": args.pseudo_temp, "argmax": spread})
        del teacher
    cfg = TrainConfig(
        name="stance",
        lr=args.lr,
        epochs=args.epochs,
        batch_size=args.batch_size,
        layer_decay=args.layer_decay,
        max_length=args.max_length,
        seed=args.seed,
        freeze_word_embeddings=args.freeze_word_embeddings,
        length_buckets=True,
        log_every=50,
    )
    t = time.monotonic()
    texts = [model_text(t) for t, _, _ in rows]
    model = fine_tune(init, tok, texts, targets, cfg, device, class_mask=class_mask)
    note("train_seconds", round(time.monotonic() - t, 1))
    figures = evaluate(model, tok, device, data, RUN_TRUNCATE["max_length"], RUN_TRUNCATE["tail"])
    note("dev", figures)
    if args.save:
        save_model(
            model,
            tok,
            out / "model",
            {
                "temperature": figures["temperature"],
                "truncate": dict(RUN_TRUNCATE),
                "emoji_words": True,
                "config": asdict(cfg),
                "counts": counts,
                "suite_sha256": suite_sha256(),
            },
        )
    return report


def dev_sets(data: Path) -> list[tuple[str, list[str], list[int], str]]:
    """The three dev sets as ``(figure name, texts, gold class ids, metric)``: ``tfns-valid``,
    TweetEval ``val.tsv`` and the StockTwits hold-out (:mod:`nlp.calibration`'s metrics)."""
    from nlp.evaluate import read_labelled_tsv

    fin = read_labelled_tsv(data / "sentiment" / "fin_train.tsv", "tfns-valid")
    val = read_labelled_tsv(data / "sentiment" / "val.tsv")
    st = read_tagged_csv(data / "social" / STOCKTWITS_FILE, HOLDOUT_FROM)
    return [
        ("tfns_valid_macro_recall", *fin, "macro_recall"),
        ("val_macro_recall", *val, "macro_recall"),
        ("stocktwits_balanced_polar_accuracy", *st, "balanced_polar"),
    ]


def calibrate(model_dir: Path, data: Path) -> dict:
    """Fit the class-prior offsets of an installed model on the int8 path the product runs,
    from the three dev sets (:mod:`nlp.calibration`), and record them in its ``moodring.json``.

    Returns the offsets and each dev figure before and after.
    """
    import numpy as np

    from nlp.calibration import DevSet, fit_class_bias
    from nlp.onnx_backend import cpu_signature
    from nlp.scorer import Scorer

    meta_path = model_dir / "moodring.json"
    meta = json.loads(meta_path.read_text())
    scorer = Scorer(model_dir, cache_size=0, dedupe=False, backend="onnx")

    def dev(name: str, texts: list[str], gold: list[int], metric: str) -> DevSet:
        # One call per set, as `moodring eval` scores it (int8 scores move with batch-mates).
        logits = np.asarray(scorer.forward(scorer.preprocess(texts)), dtype=np.float64)
        return DevSet(name, logits / scorer.info.temperature, np.asarray(gold), metric)

    devs = [dev(name, texts, gold, metric) for name, texts, gold, metric in dev_sets(data)]
    bias, figures = fit_class_bias(devs)
    meta["class_bias"] = list(bias)
    meta["calibration"] = {"backend": scorer.backend, "cpu": cpu_signature(), "dev": figures}
    write_meta(model_dir, meta)
    return {"class_bias": list(bias), "dev": figures}


def smoothing_texts(data: Path, n: int = 1500, seed: int = 0) -> list[str]:
    """Training texts whose activations set the int8 smoothing scales: equal shares of
    ``tfns-train``, SemEval ``train.tsv`` and StockTwits before the hold-out (never a dev
    set or the suite), drawn with a fixed seed."""
    from nlp.evaluate import read_labelled_tsv

    rng = random.Random(seed)
    fin = read_labelled_tsv(data / "sentiment" / "fin_train.tsv", "tfns-train")[0]
    general = read_labelled_tsv(data / "sentiment" / "train.tsv")[0]
    posts = [r["text"] for r in stocktwits_before_holdout(data / "social" / STOCKTWITS_FILE)]
    return [t for pool in (fin, general, posts) for t in rng.sample(pool, min(n // 3, len(pool)))]


def fit_int8(
    model_dir: Path,
    data: Path,
    alpha: float = DEFAULT_ALPHA,
    fp32_layers: tuple[str, ...] = SHIP_FP32_LAYERS,
) -> dict:
    """Fit an installed model's int8 settings: smoothing scales from the fp32 model's
    activations on training texts (:mod:`nlp.smoothing`), and the layers kept in fp32;
    written beside the weights and recorded in ``moodring.json`` (``int8``), where the
    int8 build (:func:`nlp.onnx_backend.export_int8`) reads them."""
    from nlp.scorer import Scorer, sha256_of
    from nlp.smoothing import fit_scales, input_ranges, save_scales

    scorer = Scorer(model_dir, cache_size=0, dedupe=False, backend="torch")
    texts = smoothing_texts(data)
    encoded = sorted(scorer.preprocess(texts), key=len)  # batches as the scorer builds them
    size = scorer.batch_size
    batches = [encoded[i : i + size] for i in range(0, len(encoded), size)]
    scales = fit_scales(scorer.model, input_ranges(scorer.model, batches), alpha)
    save_scales(model_dir / SMOOTHING_FILE, scales, alpha)
    settings = {
        "smoothing": SMOOTHING_FILE,
        "smoothing_sha256": sha256_of(model_dir / SMOOTHING_FILE),
        "smoothing_alpha": alpha,
        "smoothing_texts": len(texts),
        "fp32_layers": list(fp32_layers),
    }
    meta = json.loads((model_dir / "moodring.json").read_text())
    meta["int8"] = settings
    write_meta(model_dir, meta)
    return settings


def ship(src: Path, dst: Path, model_id: str, data: Path | None = None) -> dict:
    """Install a trained model as the product's: copy it, name it, fit its class-prior offsets
    on the dev sets in ``data`` (when given), and record in its ``moodring.json`` the weights'
    sha256 and the suite's pass rates on the int8 path (``tests/test_suite.py`` checks them
    in every ``make test``)."""
    import shutil

    from nlp.onnx_backend import cpu_signature
    from nlp.scorer import Scorer, sha256_of

    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "report.json":
            shutil.copy(f, dst / f.name)
    meta = json.loads((dst / "moodring.json").read_text())
    meta.update(
        model_id=model_id,
        labels=list(LABELS),
        stance=["bearish", "neutral", "bullish"],
        weights_sha256=sha256_of(dst / "model.safetensors"),
    )
    write_meta(dst, meta)
    if data is not None:
        fit_int8(dst, data)
        calibrate(dst, data)
        meta = json.loads((dst / "moodring.json").read_text())
    scorer = Scorer(dst, cache_size=0, dedupe=False, backend="onnx")
    result = run_suite(lambda texts: [s.label for s in scorer.score(texts)])
    meta["suite"] = {
        "sha256": result["suite_sha256"],
        "backend": scorer.backend,
        "cpu": cpu_signature(),
        "passed": {c: e["passed"] for c, e in result["capabilities"].items()},
        "n": {c: e["n"] for c, e in result["capabilities"].items()},
        "meets_bars": result["meets_bars"],
    }
    write_meta(dst, meta)
    return meta


def soup(first: Path, second: Path, alpha: float, out: Path, model_id: str) -> dict:
    """Interpolate two fine-tunes of one lineage in weight space (WiSE-FT, Wortsman et al.
    2022): ``(1 - alpha) * first + alpha * second`` for every floating-point tensor, written
    as a model directory named ``model_id`` (fp16, with ``second``'s tokenizer and settings).
    Free at run time: one model, one pass.

    What described ``second``'s own weights (their sha256, class offsets, suite counts) is
    left out: ``ship --data`` records them for the new weights.

    Raises:
        ValueError: a bad ``alpha``, ``out`` being one of the two, or two models that do
            not have the same tensors (not one architecture).
    """
    import shutil

    from safetensors.torch import load_file, save_file

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be within 0..1, not {alpha}")
    if out.resolve() in (first.resolve(), second.resolve()):
        raise ValueError(f"{out} is one of the models being mixed; write the soup elsewhere")
    a = load_file(str(first / "model.safetensors"))
    b = load_file(str(second / "model.safetensors"))
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise ValueError(f"{first} and {second} are not the same architecture")
    mixed = {
        # Integer buffers (position ids) are not weights: kept as they are.
        k: ((1 - alpha) * a[k].float() + alpha * b[k].float()).to(b[k].dtype).contiguous()
        if b[k].is_floating_point()
        else b[k].contiguous()
        for k in sorted(a)
    }
    out.mkdir(parents=True, exist_ok=True)
    for f in second.iterdir():
        if f.is_file() and f.name not in ("model.safetensors", "report.json", SMOOTHING_FILE):
            shutil.copy(f, out / f.name)
    save_file(mixed, str(out / "model.safetensors"), metadata={"format": "pt"})
    meta = json.loads((out / "moodring.json").read_text())
    for key in ("weights_sha256", "class_bias", "calibration", "suite", "soup", "int8"):
        meta.pop(key, None)
    meta["model_id"] = model_id
    meta["soup"] = {"first": str(first), "second": str(second), "alpha": alpha}
    write_meta(out, meta)
    return meta["soup"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init", required=True, help="model directory to start from")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--lr", type=float, default=4e-5)
    p.add_argument("--epochs", type=float, default=3.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--layer-decay", type=float, default=0.9)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--general", type=int, default=15000, help="SemEval tweets to mix in")
    p.add_argument("--templates", type=int, default=4000, help="template sentences (0 = none)")
    p.add_argument(
        "--general-soft", type=float, default=0.0,
        help="weight of the starting model's own probabilities in the general tweets' targets",
    )  # fmt: skip
    p.add_argument(
        "--teacher", default=None,
        help="model directory whose probabilities --general-soft mixes in (default: --init)",
    )  # fmt: skip
    p.add_argument("--bearish-repeat", type=int, default=2)
    p.add_argument("--fin-repeat", type=int, default=1, help="times each TFNS row is seen")
    p.add_argument(
        "--fin-polar-repeat", type=int, default=1,
        help="times each bearish or bullish TFNS row is seen per neutral one",
    )  # fmt: skip
    p.add_argument("--st-repeat", type=int, default=1, help="times each StockTwits row is seen")
    p.add_argument(
        "--st-polar", action=argparse.BooleanOptionalAction, default=False,
        help="StockTwits rows teach bullish against bearish only (neutral left out of their loss)",
    )  # fmt: skip
    p.add_argument("--swap", type=float, default=0.3, help="share of posts with swapped cashtags")
    p.add_argument(
        "--cashtag-drop", type=float, default=0.0,
        help="share of StockTwits posts seen with every cashtag removed",
    )  # fmt: skip
    p.add_argument(
        "--stance-words", type=float, default=0.0,
        help="extra share of template sentences that say the stance alone (bullish af, ...)",
    )  # fmt: skip
    p.add_argument(
        "--pseudo", type=int, default=0,
        help="untagged in-domain posts to self-train on, targets from --teacher (0 = none)",
    )  # fmt: skip
    p.add_argument(
        "--pseudo-temp", type=float, default=0.5,
        help="temperature of the teacher's logits for --pseudo targets (< 1 sharpens)",
    )  # fmt: skip
    p.add_argument("--limit", type=int, default=0, help="train on the first N mixed rows only")
    p.add_argument("--freeze-word-embeddings", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--save", action=argparse.BooleanOptionalAction, default=True)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["ship"]:
        p = argparse.ArgumentParser(description="install a trained stance model")
        p.add_argument("src", type=Path)
        p.add_argument("--to", type=Path, default=Path("models/sentiment"))
        p.add_argument("--model-id", required=True)
        p.add_argument("--data", type=Path, default=None, help="fit class offsets on its dev sets")
        a = p.parse_args(argv[1:])
        sys.stdout.write(json.dumps(ship(a.src, a.to, a.model_id, a.data)) + "\n")
        return 0
    if argv[:1] == ["soup"]:
        p = argparse.ArgumentParser(description="interpolate two models in weight space")
        p.add_argument("first", type=Path)
        p.add_argument("second", type=Path)
        p.add_argument("--alpha", type=float, required=True, help="the second model's share")
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--model-id", required=True)
        a = p.parse_args(argv[1:])
        sys.stdout.write(json.dumps(soup(a.first, a.second, a.alpha, a.out, a.model_id)) + "\n")
        return 0
    if argv[:1] == ["calibrate"]:
        p = argparse.ArgumentParser(description="fit an installed model's class offsets")
        p.add_argument("model_dir", type=Path)
        p.add_argument("--data", type=Path, default=Path("../shared/data"))
        a = p.parse_args(argv[1:])
        sys.stdout.write(json.dumps(calibrate(a.model_dir, a.data)) + "\n")
        return 0
    report = run(build_parser().parse_args(argv))
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
