"""The model step of several int8 builds side by side, in one process (not a test).

    .venv/bin/python scripts/bench_int8_builds.py                       # the shipped build alone
    .venv/bin/python scripts/bench_int8_builds.py --variant shipped --variant b64:batch=64 \\
        --variant head128:max_length=128,tail=0 --variant other:onnx=/tmp/other.int8.onnx

Each variant is the shipped model's cached int8 build (or ``onnx=FILE``) scored by the
product's own :class:`nlp.scorer.Scorer` with settings changed (``batch=``, ``max_length=``,
``tail=``: text tokens kept from the end of a longer post, 0 for the head alone). All
variants score the same demo posts, in interleaved rounds, so a shared host's slow spells
fall on every variant alike. Prints for each the model step's best and median microseconds
per message, msgs/s at the best, and how many labels differ from the first variant's. The
figures in models/README.md ("The CPU path") come from this script.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np

from nlp.bench import distinct_texts
from nlp.onnx_backend import OnnxModel
from nlp.scorer import ModelInfo, Scorer, default_threads

ROOT = Path(__file__).resolve().parents[1]
POSTS = ROOT / "bot" / "demo_data" / "stocktwits_btc_eth_2022.csv"


@dataclasses.dataclass(frozen=True)
class Variant:
    name: str
    onnx: Path | None = None
    batch: int | None = None
    max_length: int | None = None
    tail: int | None = None

    @classmethod
    def parse(cls, spec: str) -> Variant:
        """``name[:key=value,...]`` with keys ``onnx``, ``batch``, ``max_length``, ``tail``."""
        name, _, rest = spec.partition(":")
        fields: dict[str, object] = {}
        for item in filter(None, rest.split(",")):
            key, sep, value = item.partition("=")
            if not sep or key not in ("onnx", "batch", "max_length", "tail"):
                raise SystemExit(
                    f"bad variant setting {item!r} (onnx=, batch=, max_length=, tail=)"
                )
            fields[key] = Path(value) if key == "onnx" else int(value)
        return cls(name=name, **fields)  # type: ignore[arg-type]


def scorer_for(model: Path, variant: Variant) -> Scorer:
    scorer = Scorer(model, backend="onnx", cache_size=0, dedupe=False)
    if variant.batch:
        scorer.batch_size = variant.batch
    if variant.max_length is not None or variant.tail is not None:
        # The cut is made when tokenising: the scorer gets a changed copy of the model's info.
        info = ModelInfo.read(model)
        scorer.info = dataclasses.replace(
            info,
            max_length=variant.max_length or info.max_length,
            tail_tokens=info.tail_tokens if variant.tail is None else variant.tail,
        )
        scorer._load_fast_tokenizer()
    if variant.onnx:
        scorer._onnx = OnnxModel(variant.onnx, default_threads())
    return scorer


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "sentiment")
    p.add_argument("--texts", type=Path, default=POSTS)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--variant", action="append", default=[], help="name[:key=value,...]")
    args = p.parse_args()
    variants = [Variant.parse(v) for v in args.variant] or [Variant("shipped")]
    texts = distinct_texts(args.texts, args.n)
    runs = []
    for v in variants:
        scorer = scorer_for(args.model, v)
        runs.append((v, scorer, scorer.preprocess(texts)))
    times: dict[str, list[float]] = {v.name: [] for v in variants}
    labels: dict[str, np.ndarray] = {}
    for _ in range(args.rounds):
        for v, scorer, encoded in runs:
            t0 = time.perf_counter()
            logits = scorer.forward(encoded)
            times[v.name].append((time.perf_counter() - t0) / len(encoded) * 1e6)
            # Labels as the product reads them: temperature and class offsets applied.
            labels[v.name] = np.array([score.label for score in scorer.postprocess(logits)])
    first = labels[variants[0].name]
    print(f"{len(texts)} posts, {args.rounds} interleaved rounds, model step per message")
    for v, _, encoded in runs:
        best, median = min(times[v.name]), statistics.median(times[v.name])
        tokens = sum(len(e) for e in encoded) / len(encoded)
        flips = int((labels[v.name] != first).sum())
        print(
            f"{v.name:<14} best {best:7.0f} us  median {median:7.0f} us  "
            f"{1e6 / best:6.0f} msgs/s  {tokens:5.1f} tokens/post  "
            f"labels differing from {variants[0].name}: {flips}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
