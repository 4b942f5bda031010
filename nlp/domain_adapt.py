"""Domain-adaptive pre-training: masked-LM on unlabelled trading chat, under a classifier's head.

Gururangan et al. (2020), "Don't Stop Pretraining": continuing the masked-LM objective on text
from the target domain, before fine-tuning, lets the encoder learn that domain's words in
context (here: "rekt", "ngmi", "bull trap", cashtags, ticker talk) that no labelled set covers.

The encoder of an installed classifier (``--init``, e.g. ``models/sentiment``) is trained under
a masked-LM head on:

- StockTwits ``$BTC.X``/``$ETH.X`` posts older than the 7-day hold-out, tagged or not (the tags
  are not used; the hold-out's texts are not read at all);
- the 2021 crypto tweets (unlabelled, spam included: it is what chat looks like);
- the ``tfns-train`` finance tweets' texts (their labels are not used).

Every text that is a near-duplicate of a behaviour-suite case is dropped first. The classifier
head and pooler are kept as they were, so the output is again a 3-class model directory that
``python -m nlp.stance_training --init`` fine-tunes. The masked-LM head is new: it is warmed up
alone with the encoder frozen, so its first random gradients do not reach the encoder. Word
embeddings stay frozen (the decoder is tied to them; the stance recipe freezes them too).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import sys
import time
from pathlib import Path

import torch
from torch import nn

from nlp.neardup import NearDuplicateIndex
from nlp.stance_training import (
    STOCKTWITS_FILE,
    model_text,
    read_crypto_tweets,
    stocktwits_before_holdout,
)
from nlp.suite import load_suite
from nlp.training import (
    epoch_batches,
    load_base_model,
    load_tokenizer,
    pad_batch,
    read_labelled,
    save_model,
)

log = logging.getLogger(__name__)


def unlabelled_texts(data: Path) -> dict[str, list[str]]:
    """The in-domain texts by source (raw; :func:`model_text` is applied later)."""
    stocktwits = stocktwits_before_holdout(data / "social" / STOCKTWITS_FILE)
    fin = [
        r["text"]
        for r in read_labelled(data / "sentiment" / "fin_train.tsv")
        if r.get("source") == "tfns-train"
    ]
    return {
        "stocktwits": [row["text"] for row in stocktwits],
        "crypto_tweets": read_crypto_tweets(data),
        "tfns_train": fin,
    }


def corpus(data: Path) -> tuple[list[str], dict[str, int]]:
    """Deduplicated model texts, none near a suite case, and a count per source."""
    index = NearDuplicateIndex([c.text for c in load_suite()])
    seen: set[str] = set()
    texts: list[str] = []
    counts: dict[str, int] = {}
    for name, part in unlabelled_texts(data).items():
        kept, dropped = index.filter([(t, "") for t in part])
        fresh = 0
        for text, _ in kept:
            mt = model_text(text)
            if mt.strip() and mt not in seen:
                seen.add(mt)
                texts.append(mt)
                fresh += 1
        counts[name] = fresh
        counts[f"{name}_dropped_near_suite"] = dropped
    return texts, counts


def mask_tokens(
    ids: torch.Tensor, special: torch.Tensor, mask_id: int, vocab: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking: 15 % of the real tokens are chosen; 80 % of those become ``[MASK]``,
    10 % a random token, 10 % stay. Returns the corrupted ids and the chosen positions."""
    chosen = (torch.rand(ids.shape, generator=gen) < 0.15) & ~special
    # Every row predicts at least one token, so no batch is empty of targets.
    for row in range(ids.shape[0]):
        if not chosen[row].any():
            real = (~special[row]).nonzero().flatten()
            if len(real):
                pick = real[torch.randint(len(real), (1,), generator=gen)]
                chosen[row, pick] = True
    out = ids.clone()
    roll = torch.rand(ids.shape, generator=gen)
    out[chosen & (roll < 0.8)] = mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    out[swap] = torch.randint(vocab, (int(swap.sum()),), generator=gen)
    return out, chosen


def adapt(args: argparse.Namespace) -> dict:
    """Train the encoder of ``args.init`` under a masked-LM head and save the classifier."""
    from transformers import BertForMaskedLM

    t0 = time.monotonic()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    init, out, data = Path(args.init), Path(args.out), Path(args.data)
    out.mkdir(parents=True, exist_ok=True)
    tok = load_tokenizer(init)
    texts, counts = corpus(data)
    report: dict = {"args": vars(args), "counts": counts, "n_texts": len(texts), "loss": []}

    def note() -> None:
        report["elapsed_s"] = round(time.monotonic() - t0, 1)
        (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")

    note()
    log.info("corpus: %s", json.dumps(counts))
    classifier = load_base_model(init)
    mlm = BertForMaskedLM(classifier.config)
    missing = mlm.bert.load_state_dict(classifier.bert.state_dict(), strict=False)
    # The classifier's pooler has no place in the masked-LM model; nothing else may differ.
    assert not missing.missing_keys, missing.missing_keys
    mlm.tie_weights()
    mlm.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    head = [
        p for n, p in mlm.cls.named_parameters() if p.requires_grad and "decoder.weight" not in n
    ]
    encoder = [p for p in mlm.bert.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(
        [
            {"params": head, "lr": args.head_lr, "weight_decay": 0.0},
            {"params": encoder, "lr": args.lr, "weight_decay": 0.01},
        ]
    )
    for g in opt.param_groups:
        g["initial_lr"] = g["lr"]
    enc = tok(texts, truncation=True, max_length=args.max_length)["input_ids"]
    n = len(enc)
    total = max(1, int(math.ceil(n / args.batch_size) * args.epochs))
    warm = max(1, int(total * 0.06))
    rng = random.Random(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    pad, mask_id = tok.pad_token_id, tok.mask_token_id
    special_ids = torch.tensor(sorted(set(tok.all_special_ids)))
    mlm.train()
    step = 0
    window: list[float] = []
    while step < total:
        # Length buckets, as the stance recipe: little padding.
        for idx in epoch_batches(enc, args.batch_size, rng, length_buckets=True):
            if step >= total:
                break
            ids = pad_batch(enc, idx, pad)
            attention = (ids != pad).long()
            special = torch.isin(ids, special_ids)
            inputs, chosen = mask_tokens(ids, special, mask_id, mlm.config.vocab_size, gen)
            head_only = step < args.head_warmup
            for p in encoder:
                p.requires_grad_(not head_only)
            scale = step / warm if step < warm else max(0.0, (total - step) / (total - warm))
            opt.param_groups[0]["lr"] = args.head_lr * (1.0 if head_only else scale)
            opt.param_groups[1]["lr"] = 0.0 if head_only else args.lr * scale
            hidden = mlm.bert(input_ids=inputs, attention_mask=attention).last_hidden_state
            # The vocabulary projection only at the chosen positions: at every position it
            # would cost as much as the encoder itself.
            logits = mlm.cls(hidden[chosen])
            loss = nn.functional.cross_entropy(logits.float(), ids[chosen])
            loss.backward()
            nn.utils.clip_grad_norm_([p for p in mlm.parameters() if p.requires_grad], 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            window.append(loss.item())
            if step % args.log_every == 0 or step == total:
                mean = sum(window) / len(window)
                window.clear()
                report["loss"].append({"step": step, "mlm_loss": round(mean, 4)})
                note()
                log.info("adapt: step %d/%d mlm loss %.4f", step, total, mean)
    # Back into the classifier: the adapted encoder under the init's own pooler and head.
    result = classifier.bert.load_state_dict(mlm.bert.state_dict(), strict=False)
    assert result.missing_keys == [k for k in result.missing_keys if k.startswith("pooler.")]
    classifier.eval()
    meta = json.loads((init / "moodring.json").read_text())
    for key in ("weights_sha256", "class_bias", "calibration", "suite"):
        meta.pop(key, None)
    meta["domain_adapt"] = {
        "init": str(init),
        "counts": counts,
        "steps": total,
        "lr": args.lr,
        "final_mlm_loss": report["loss"][-1]["mlm_loss"] if report["loss"] else None,
    }
    save_model(classifier, tok, out / "model", meta)
    if args.eval:
        from nlp.stance_training import evaluate

        report["dev"] = evaluate(classifier.float(), tok, torch.device("cpu"), data, 128)
        log.info("dev: %s", json.dumps(report["dev"]))
    note()
    return report


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--init", required=True, help="classifier model directory to adapt")
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--out", required=True)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=21)
    p.add_argument("--lr", type=float, default=5e-5, help="encoder learning rate (peak)")
    p.add_argument("--head-lr", type=float, default=5e-4, help="masked-LM head learning rate")
    p.add_argument("--head-warmup", type=int, default=150, help="steps with the encoder frozen")
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--log-every", type=int, default=50)
    p.add_argument("--eval", action=argparse.BooleanOptionalAction, default=True)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    report = adapt(build_parser().parse_args(argv))
    sys.stdout.write(json.dumps({k: v for k, v in report.items() if k != "loss"}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
