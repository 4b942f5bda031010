"""Throughput and latency measurement of one scorer over a list of texts (one process)."""

from __future__ import annotations

import argparse
import csv
import json
import resource
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def distinct_texts(path: Path, n: int, column: str = "text") -> list[str]:
    """The first ``n`` distinct non-empty texts of a CSV file, in file order."""
    seen: dict[str, None] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            text = (row.get(column) or "").strip()
            if text and text not in seen:
                seen[text] = None
                if len(seen) >= n:
                    break
    return list(seen)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100) by linear interpolation."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def measure(
    score_batch: Callable[[Sequence[str]], object],
    texts: Sequence[str],
    batch_size: int,
    whole: Callable[[Sequence[str]], object] | None = None,
) -> dict[str, float]:
    """Time ``score_batch`` over ``texts`` in batches of ``batch_size``.

    Throughput comes from ``whole(texts)`` when given (a scorer that forms its own
    batches, e.g. sorted by length), else from the batched pass. Latency percentiles are
    per batch of ``batch_size`` texts in file order.
    """
    score_batch(texts[: min(len(texts), batch_size)])  # warm-up: lazy inits, kernels
    latencies = []
    t0 = time.perf_counter()
    for start in range(0, len(texts), batch_size):
        t = time.perf_counter()
        score_batch(texts[start : start + batch_size])
        latencies.append((time.perf_counter() - t) * 1000)
    batched_s = time.perf_counter() - t0
    total_s = batched_s
    if whole is not None:
        t0 = time.perf_counter()
        whole(texts)
        total_s = time.perf_counter() - t0
    return {
        "n": len(texts),
        "msgs_per_s": round(len(texts) / total_s, 1),
        "batched_msgs_per_s": round(len(texts) / batched_s, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure moodring's scorer alone (used for the GPU run, where the CLI is absent)."""
    from nlp.scorer import Scorer

    p = argparse.ArgumentParser(description="measure the moodring scorer")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--texts", required=True, type=Path)
    p.add_argument("--n", type=int, default=2000, help="distinct texts, then repeated to --total")
    p.add_argument("--total", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    texts = distinct_texts(args.texts, args.n)
    if args.total:
        texts = (texts * (args.total // len(texts) + 1))[: args.total]
    scorer = Scorer(args.model, device=args.device, batch_size=args.batch_size, cache_size=0)
    result = measure(scorer.score, texts, args.batch_size, whole=scorer.score)
    result["device"] = args.device
    if args.device.startswith("cuda"):
        import torch

        result["device"] = torch.cuda.get_device_name(0)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
