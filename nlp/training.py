"""Fine-tuning, ensembling, distillation and calibration of the sentiment classifier.

This module is the whole recipe behind ``models/sentiment``. It depends only on torch,
transformers, safetensors and the standard library (plus :mod:`nlp.normalize`), so the
same file runs under ``moodring train`` and, self-contained, on a GPU machine.

Recipe (``run_recipe``):
  A. hold out ``source == 2016test`` of train.tsv; fine-tune each candidate config on the
     rest; rank them on that slice (and report validation); fit a temperature on the slice.
  B. fine-tune ``seeds`` teachers with the best config on all of train.tsv.
  C. distil the teachers' averaged probabilities into one student (same small encoder) over
     train.tsv plus unlabelled in-domain crypto posts, and save it in fp16 with the
     temperature from A.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import random
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nlp.metrics import expected_calibration_error, macro_recall
from nlp.normalize import normalize
from nlp.scorer import head_and_tail
from nlp.types import LABELS

if TYPE_CHECKING:  # imported lazily at run time: transformers is slow to import
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

log = logging.getLogger(__name__)

LABEL_TO_ID = {name: i for i, name in enumerate(LABELS)}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)


@dataclass(frozen=True, slots=True)
class TrainConfig:
    """Hyper-parameters of one fine-tuning run."""

    name: str = "plain"
    lr: float = 5e-5
    epochs: float = 3.0
    batch_size: int = 32
    warmup: float = 0.06
    weight_decay: float = 0.01
    label_smoothing: float = 0.0
    class_balanced: bool = False
    layer_decay: float = 1.0  # 1.0 = the same learning rate for every layer
    max_length: int = 128
    seed: int = 13
    # Frozen word embeddings train about 1.4x faster on the CPU (AdamW then skips 11.7M of
    # the 22.7M parameters); fine-tuning from an already fine-tuned model needs no new words.
    freeze_word_embeddings: bool = False
    # Batches of similar lengths: a random batch pads to its longest post, which on mixed
    # headlines, tweets and long StockTwits posts costs about 3x the compute. Batches are
    # cut from length-sorted pools of 50 batches, then shuffled.
    length_buckets: bool = False
    log_every: int = 500


CANDIDATES = (
    TrainConfig(name="plain", lr=5e-5, epochs=3),
    TrainConfig(
        name="tuned",
        lr=8e-5,
        epochs=4,
        label_smoothing=0.1,
        class_balanced=True,
        layer_decay=0.9,
    ),
)


# --------------------------------------------------------------------------- data


def read_labelled(path: Path) -> list[dict[str, str]]:
    """Read a tab-separated file with a header naming at least ``label`` and ``text``."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_MINIMAL)
        if not reader.fieldnames or not {"label", "text"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: header must name 'label' and 'text'")
        rows = []
        for row in reader:
            label = (row.get("label") or "").strip().lower()
            if label in LABEL_TO_ID and row.get("text") is not None:
                rows.append(row)
        return rows


TAG_TO_ID = {"bullish": LABEL_TO_ID["positive"], "bearish": LABEL_TO_ID["negative"]}


def read_unlabelled_posts(path: Path, before: str | None = None) -> list[tuple[str, int]]:
    """``(text, label id or -1)`` of a social CSV, optionally only posts older than ``before``.

    A StockTwits ``tag`` column (the author's own Bullish/Bearish) becomes a weak label.
    """
    with open(path, newline="", encoding="utf-8") as fh:
        return [
            (row["text"], TAG_TO_ID.get((row.get("tag") or "").strip().lower(), -1))
            for row in csv.DictReader(fh)
            if row.get("text") and (before is None or row.get("created_at", "") < before)
        ]


# --------------------------------------------------------------------------- metrics


def fit_temperature(logits: torch.Tensor, gold: torch.Tensor) -> float:
    """Temperature that minimises the negative log-likelihood of ``gold`` (LBFGS on log T)."""
    # Clones: the logits usually come from inference mode, whose tensors autograd refuses.
    logits, gold = logits.float().clone(), gold.long().clone()
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(logits / log_t.exp(), gold)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return float(log_t.detach().exp().clamp(0.05, 20.0))


# --------------------------------------------------------------------------- model


def load_tokenizer(path: Path) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def load_base_model(base_dir: Path) -> PreTrainedModel:
    """A 3-class ``BertForSequenceClassification`` on top of the base encoder's weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    config = AutoConfig.from_pretrained(
        str(base_dir),
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id=LABEL_TO_ID,
    )
    return AutoModelForSequenceClassification.from_pretrained(
        str(base_dir), config=config, dtype=torch.float32
    )


def _param_groups(model: PreTrainedModel, cfg: TrainConfig) -> list[dict]:
    """AdamW groups with layer-wise learning-rate decay and no decay on biases/norms."""
    n_layers = model.config.num_hidden_layers
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if ".layer." in name:
            depth = int(name.split(".layer.")[1].split(".")[0]) + 1
        elif "embeddings" in name:
            depth = 0
        else:  # pooler and classifier head
            depth = n_layers + 1
        lr = cfg.lr * cfg.layer_decay ** (n_layers + 1 - depth)
        wd = 0.0 if name.endswith("bias") or "LayerNorm" in name else cfg.weight_decay
        groups.setdefault((lr, wd), []).append(param)
    return [{"params": p, "lr": lr, "weight_decay": wd} for (lr, wd), p in groups.items()]


def epoch_batches(
    enc: list[list[int]], batch_size: int, rng: random.Random, length_buckets: bool
) -> list[list[int]]:
    """One epoch's batches of indices into ``enc``, in a random order drawn from ``rng``.

    With ``length_buckets`` the shuffled indices are sorted by length within pools of 50
    batches and the batches shuffled again: each batch pads to about its own length (on the
    CPU, random batches padded every one to its longest post and ran at a third of the speed).
    """
    n = len(enc)
    order = list(range(n))
    rng.shuffle(order)
    if not length_buckets:
        return [order[s : s + batch_size] for s in range(0, n, batch_size)]
    pool = batch_size * 50
    batches = []
    for p in range(0, n, pool):
        chunk = sorted(order[p : p + pool], key=lambda i: len(enc[i]))
        batches += [chunk[s : s + batch_size] for s in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def pad_batch(enc: list[list[int]], idx: list[int], pad: int) -> torch.Tensor:
    """The token ids of ``idx`` as one ``[len(idx), longest]`` tensor, right-padded."""
    width = max(len(enc[i]) for i in idx)
    ids = torch.full((len(idx), width), pad, dtype=torch.long)
    for row, i in enumerate(idx):
        ids[row, : len(enc[i])] = torch.tensor(enc[i])
    return ids


def _autocast(device: torch.device) -> torch.autocast:
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def soft_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, class_mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy against soft ``targets``; where ``class_mask`` is ``False`` the
    class is left out of that row's softmax, so the row says nothing about it (its target
    must be 0)."""
    if class_mask is not None:
        # A large finite value, not -inf: 0 * log_softmax must stay 0, not NaN.
        logits = logits.masked_fill(~class_mask, -1e4)
    return -(targets * logits.log_softmax(-1)).sum(-1).mean()


def fine_tune(
    base_dir: Path,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    targets: torch.Tensor,
    cfg: TrainConfig,
    device: torch.device,
    hard_labels: torch.Tensor | None = None,
    hard_weight: float = 0.0,
    class_mask: torch.Tensor | None = None,
) -> PreTrainedModel:
    """Fine-tune the base encoder end to end.

    ``targets`` is either class ids (shape ``[n]``) or soft targets (``[n, 3]``, used for
    distillation). With soft targets, ``hard_labels`` (``-1`` where unknown) mixes in the
    gold labels at ``hard_weight``, and ``class_mask`` (``[n, 3]`` bool) leaves the classes
    marked ``False`` out of a row's softmax (their targets must be 0).
    """
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    model = load_base_model(base_dir).to(device)
    if cfg.freeze_word_embeddings:
        model.base_model.embeddings.word_embeddings.weight.requires_grad_(False)
    model.train()
    enc = tokenizer([normalize(t) for t in texts], truncation=True, max_length=cfg.max_length)[
        "input_ids"
    ]
    n = len(enc)
    soft = targets.dim() == 2
    weight = None
    if cfg.class_balanced and not soft:
        counts = torch.bincount(targets, minlength=len(LABELS)).float()
        weight = (counts.sum() / (len(LABELS) * counts.clamp(min=1))).to(device)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = max(1, int(steps_per_epoch * cfg.epochs))
    opt = torch.optim.AdamW(_param_groups(model, cfg), lr=cfg.lr)
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    warm = max(1, int(total * cfg.warmup))
    rng = random.Random(cfg.seed)
    step = 0
    pad = tokenizer.pad_token_id
    while step < total:
        for idx in epoch_batches(enc, cfg.batch_size, rng, cfg.length_buckets):
            if step >= total:
                break
            ids = pad_batch(enc, idx, pad).to(device)
            mask = (ids != pad).long()
            scale = step / warm if step < warm else max(0.0, (total - step) / (total - warm))
            for g in opt.param_groups:
                g["lr"] = g["initial_lr"] * scale
            with _autocast(device):
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
            if soft:
                tgt = targets[idx].to(device)
                allowed = None if class_mask is None else class_mask[idx].to(device)
                loss = soft_cross_entropy(logits, tgt, allowed)
                if hard_labels is not None and hard_weight > 0:
                    hl = hard_labels[idx].to(device)
                    known = hl >= 0
                    if known.any():
                        ce = nn.functional.cross_entropy(logits[known], hl[known])
                        loss = (1 - hard_weight) * loss + hard_weight * ce
            else:
                loss = nn.functional.cross_entropy(
                    logits,
                    targets[idx].to(device),
                    weight=weight,
                    label_smoothing=cfg.label_smoothing,
                )
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            if step % cfg.log_every == 0:
                log.info(
                    "%s seed %d: step %d/%d loss %.4f", cfg.name, cfg.seed, step, total, float(loss)
                )
    model.eval()
    return model


@torch.inference_mode()
def predict_logits(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    device: torch.device,
    max_length: int = 128,
    batch_size: int = 256,
    tail: int = 0,
) -> torch.Tensor:
    """Logits for ``texts`` in their original order (batches sorted by length). A text
    longer than ``max_length`` keeps its head, and with ``tail`` its last ``tail`` tokens too,
    as the product's scorer cuts it (:func:`nlp.scorer.head_and_tail`)."""
    clean = [normalize(t) for t in texts]
    enc = [head_and_tail(ids, max_length, tail) for ids in tokenizer(clean)["input_ids"]]
    order = sorted(range(len(enc)), key=lambda i: len(enc[i]))
    out = torch.empty(len(enc), len(LABELS))
    pad = tokenizer.pad_token_id
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids = pad_batch(enc, idx, pad).to(device)
        with _autocast(device):
            logits = model(input_ids=ids, attention_mask=(ids != pad).long()).logits
        out[idx] = logits.float().cpu()
    return out


def save_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    meta: dict,
    tokenizer_src: Path | None = None,
) -> None:
    """Write config, fp16 safetensors, tokenizer files and ``moodring.json`` to ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.to("cpu").half()
    model.save_pretrained(str(out_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(out_dir))
    write_meta(out_dir, meta)


def write_meta(model_dir: Path, meta: dict) -> None:
    """Write a model's ``moodring.json`` (sorted keys, so diffs between models stay small)."""
    (model_dir / "moodring.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- recipe


def _evaluate(logits: torch.Tensor, gold: list[int]) -> dict[str, float]:
    pred = logits.argmax(-1).tolist()
    return {
        "macro_recall": round(macro_recall(gold, pred), 4),
        "accuracy": round(sum(p == g for p, g in zip(pred, gold, strict=True)) / len(gold), 4),
    }


def run_recipe(args: argparse.Namespace) -> dict:
    """Run steps A–C (see the module docstring) and return a report dict."""
    t0 = time.monotonic()
    deadline = t0 + args.budget_s if args.budget_s else None
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    base = Path(args.base)
    tok = load_tokenizer(base)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    train = read_labelled(Path(args.train))
    if args.limit:
        train = train[: args.limit]
    val = read_labelled(Path(args.val))
    val_texts = [r["text"] for r in val]
    val_gold = [LABEL_TO_ID[r["label"].lower()] for r in val]
    report: dict = {"device": str(device), "n_train": len(train), "steps": []}

    def note(key: str, value: object) -> None:
        report[key] = value
        report["elapsed_s"] = round(time.monotonic() - t0, 1)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
        log.info("%s: %s", key, json.dumps(value))

    def time_left() -> float:
        return float("inf") if deadline is None else deadline - time.monotonic()

    configs = [c for c in CANDIDATES if c.name in args.configs.split(",")]
    configs = [
        replace(c, epochs=c.epochs * args.epoch_scale, batch_size=args.batch_size or c.batch_size)
        for c in configs
    ]

    # A. rank configs on the 2016test slice; fit the temperature there.
    hold = [r for r in train if r.get("source") == "2016test"]
    rest = [r for r in train if r.get("source") != "2016test"]
    hold_gold = [LABEL_TO_ID[r["label"].lower()] for r in hold]
    ranking = []
    temperature = args.temperature
    best = configs[0]
    if (hold and len(configs) > 1) or args.always_holdout:
        for cfg in configs:
            t = time.monotonic()
            model = fine_tune(
                base,
                tok,
                [r["text"] for r in rest],
                torch.tensor([LABEL_TO_ID[r["label"].lower()] for r in rest]),
                cfg,
                device,
            )
            hl = predict_logits(model, tok, [r["text"] for r in hold], device)
            vl = predict_logits(model, tok, val_texts, device)
            temp = fit_temperature(hl, torch.tensor(hold_gold))
            row: dict[str, Any] = {
                "config": asdict(cfg),
                "holdout_2016test": _evaluate(hl, hold_gold),
                "val": _evaluate(vl, val_gold),
                "temperature": round(temp, 4),
                "val_ece_raw": round(
                    expected_calibration_error(vl.softmax(-1), torch.tensor(val_gold)), 4
                ),
                "val_ece_calibrated": round(
                    expected_calibration_error((vl / temp).softmax(-1), torch.tensor(val_gold)), 4
                ),
                "seconds": round(time.monotonic() - t, 1),
            }
            ranking.append(row)
            note("holdout", ranking)
            del model
        top = max(ranking, key=lambda r: r["holdout_2016test"]["macro_recall"])
        best = next(c for c in configs if c.name == top["config"]["name"])
        temperature = top["temperature"]
    note("chosen", {"config": best.name, "temperature": temperature})

    # B. teachers on everything.
    texts = [r["text"] for r in train]
    gold = torch.tensor([LABEL_TO_ID[r["label"].lower()] for r in train])
    teachers = []
    teacher_s = args.teacher_s
    for k in range(args.seeds):
        # A student costs about what a teacher does, plus scoring the unlabelled posts.
        if k and time_left() < teacher_s * 2.4:
            log.warning("time budget: stopping at %d teachers", k)
            break
        t = time.monotonic()
        cfg = replace(best, seed=best.seed + args.seed_offset + k)
        model = fine_tune(base, tok, texts, gold, cfg, device)
        vl = predict_logits(model, tok, val_texts, device)
        teachers.append(model)
        teacher_s = time.monotonic() - t
        report["steps"].append(
            {
                "teacher": k,
                "val": _evaluate(vl, val_gold),
                "seconds": round(time.monotonic() - t, 1),
            }
        )
        note("steps", report["steps"])
        if k == 0:
            save_model(
                model,
                tok,
                out / "single",
                {"temperature": temperature, "max_length": best.max_length, "kind": "single"},
            )
            model.to(device).float()
    vl_ens = torch.stack(
        [predict_logits(m, tok, val_texts, device).softmax(-1) for m in teachers]
    ).mean(0)
    note("ensemble_val", _evaluate(vl_ens.log(), val_gold) | {"members": len(teachers)})
    if not args.distil or len(teachers) < 2 or time_left() < teacher_s * 1.2:
        return report

    # C. distil the ensemble into one student over labelled + in-domain unlabelled text.
    extra: list[tuple[str, int]] = []
    for path in args.unlabelled or []:
        extra += read_unlabelled_posts(Path(path), before=args.unlabelled_before)
    all_texts = texts + [t for t, _ in extra]
    probs = torch.stack(
        [
            predict_logits(m, tok, all_texts, device, max_length=best.max_length).softmax(-1)
            for m in teachers
        ]
    ).mean(0)
    hard = torch.cat([gold, torch.tensor([tag for _, tag in extra], dtype=torch.long)])
    t = time.monotonic()
    student_cfg = replace(best, name="student", seed=best.seed + 100, label_smoothing=0.0)
    student = fine_tune(
        base, tok, all_texts, probs, student_cfg, device, hard_labels=hard, hard_weight=0.5
    )
    vl = predict_logits(student, tok, val_texts, device)
    note(
        "student_val",
        _evaluate(vl, val_gold)
        | {
            "n_extra": len(extra),
            "seconds": round(time.monotonic() - t, 1),
            "ece_calibrated": round(
                expected_calibration_error((vl / temperature).softmax(-1), torch.tensor(val_gold)),
                4,
            ),
        },
    )
    save_model(
        student,
        tok,
        out / "student",
        {
            "temperature": temperature,
            "max_length": best.max_length,
            "kind": "student",
            "teachers": len(teachers),
            "config": asdict(best),
        },
    )
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", required=True, help="base encoder directory")
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--configs", default="plain,tuned")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--distil", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--unlabelled", nargs="*", help="CSV files of in-domain posts")
    p.add_argument("--unlabelled-before", default="2022-07-17", help="keep posts older than this")
    p.add_argument("--limit", type=int, default=0, help="use only the first N training rows")
    p.add_argument("--epoch-scale", type=float, default=1.0)
    p.add_argument("--seed-offset", type=int, default=0, help="first teacher's seed offset")
    p.add_argument("--temperature", type=float, default=1.0, help="used when A is skipped")
    p.add_argument("--batch-size", type=int, default=0, help="override the configs' batch size")
    p.add_argument("--always-holdout", action="store_true")
    p.add_argument("--budget-s", type=float, default=0.0, help="stop adding teachers past this")
    p.add_argument("--teacher-s", type=float, default=60.0, help="expected seconds per teacher")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = build_parser().parse_args(argv)
    report = run_recipe(args)
    sys.stdout.write(json.dumps(report) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
