"""Throughput, latency and memory of moodring's scorer against a plain pipeline and VADER."""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from nlp.scorer import Scorer

log = logging.getLogger(__name__)

DEFAULT_VAL = Path("/work/shared/data/sentiment/val.tsv")
#: Texts the baselines score on a GPU (see ``run_bench``).
GPU_BASELINE_N = 10_000
KINDS = ("scorer", "pipeline", "vader")


def peak_rss_mb() -> float:
    """Peak resident set size of this process, in MiB.

    Read from ``VmHWM`` on Linux: ``ru_maxrss`` survives fork and exec, so a worker started
    by a large parent would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


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
    """The ``q``-th percentile (0 to 100) by linear interpolation."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def measure(
    score_batch: Callable[[Sequence[str]], object],
    texts: Sequence[str],
    batch_size: int,
    whole: Callable[[Sequence[str]], object] | None = None,
    passes: int = 1,
) -> dict[str, float]:
    """Time ``score_batch`` over ``texts`` in batches of ``batch_size``.

    Throughput comes from ``whole(texts)`` when given (a scorer that forms its own
    batches, e.g. sorted by length), else from the batched pass. With ``passes`` > 1 that
    pass runs that many times and ``msgs_per_s`` is the median, with the slowest and fastest
    beside it: on a shared 2-core host one pass moved by a fifth between runs of the same
    build (models/README.md). Latency percentiles are per batch of ``batch_size`` texts in
    file order, from the first batched pass.
    """
    score_batch(texts[: min(len(texts), batch_size)])  # warm-up: lazy inits, kernels

    def batched() -> tuple[float, list[float]]:
        """Seconds for one batched pass, and each batch's milliseconds."""
        latencies = []
        t0 = time.perf_counter()
        for start in range(0, len(texts), batch_size):
            t = time.perf_counter()
            score_batch(texts[start : start + batch_size])
            latencies.append((time.perf_counter() - t) * 1000)
        return time.perf_counter() - t0, latencies

    def timed(run: Callable[[Sequence[str]], object]) -> float:
        t0 = time.perf_counter()
        run(texts)
        return time.perf_counter() - t0

    batched_s, latencies = batched()
    if whole is not None:
        rates = [len(texts) / timed(whole) for _ in range(max(1, passes))]
    else:
        rates = [len(texts) / batched_s]
        rates += [len(texts) / batched()[0] for _ in range(max(1, passes) - 1)]
    return {
        "n": len(texts),
        "msgs_per_s": round(statistics.median(rates), 1),
        "msgs_per_s_min": round(min(rates), 1),
        "msgs_per_s_max": round(max(rates), 1),
        "passes": len(rates),
        "batched_msgs_per_s": round(len(texts) / batched_s, 1),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def stage_times(scorer: Scorer, texts: Sequence[str]) -> dict[str, float]:
    """Microseconds per text in each step of the scorer, run one after the other over all
    ``texts`` without overlap: where the time goes (on a GPU, the host-side steps bound
    msgs/s as much as the model)."""
    t0 = time.perf_counter()
    encoded = scorer.preprocess(texts)
    t1 = time.perf_counter()
    logits = scorer.forward(encoded)  # returns host memory, so a GPU has finished
    t2 = time.perf_counter()
    scorer.postprocess(logits)
    t3 = time.perf_counter()
    n = max(1, len(texts))
    return {
        "normalise_tokenise": round((t1 - t0) / n * 1e6, 2),
        "model": round((t2 - t1) / n * 1e6, 2),
        "postprocess": round((t3 - t2) / n * 1e6, 2),
    }


def _scorer_worker(args: argparse.Namespace, texts: list[str]) -> dict:
    from nlp.scorer import Scorer

    scorer = Scorer(
        args.model,
        device=args.device,
        batch_size=args.batch_size,
        cache_size=0,
        dedupe=False,
        backend=args.backend,
    )
    result: dict[str, object] = dict(
        measure(scorer.score, texts, args.batch_size, whole=scorer.score, passes=args.passes)
    )
    result["backend"] = scorer.backend
    result["stage_us_per_msg"] = stage_times(scorer, texts)
    if args.val is not None:
        from nlp.evaluate import evaluate_file

        result["val_macro_recall"] = evaluate_file(args.val, scorer)["macro_recall"]
    return result


def _pipeline_worker(args: argparse.Namespace, texts: list[str]) -> dict:
    import torch
    from transformers import pipeline

    extra = {} if args.device == "cpu" else {"device": args.device}
    clf = pipeline("text-classification", model=str(args.model), dtype=torch.float32, **extra)
    # Default settings on purpose: the list goes in whole, no batch_size, no truncation.
    return measure(lambda batch: clf(list(batch)), texts, args.batch_size, passes=args.passes)


def _vader_worker(args: argparse.Namespace, texts: list[str]) -> dict:
    try:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer
    except ImportError:  # a bare GPU machine without the project installed
        return {"missing": "vaderSentiment is not installed"}

    analyzer = SentimentIntensityAnalyzer()
    return measure(
        lambda batch: [analyzer.polarity_scores(t) for t in batch],
        texts,
        args.batch_size,
        passes=args.passes,
    )


def worker(argv: list[str]) -> int:
    """``python -m nlp.bench worker --kind K ...``: measure one engine, print one JSON line."""
    p = argparse.ArgumentParser(prog="python -m nlp.bench worker")
    p.add_argument("--kind", required=True, choices=KINDS)
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--texts-json", required=True, type=Path)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--backend", default="auto")
    p.add_argument("--val", type=Path, default=None)
    p.add_argument("--passes", type=int, default=1)
    args = p.parse_args(argv)
    texts = json.loads(args.texts_json.read_text(encoding="utf-8"))
    run = {"scorer": _scorer_worker, "pipeline": _pipeline_worker, "vader": _vader_worker}
    result = run[args.kind](args, texts)
    result["kind"] = args.kind
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


def _run_worker(kind: str, common: list[str]) -> dict:
    cmd = [sys.executable, "-m", "nlp.bench", "worker", "--kind", kind, *common]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"bench worker {kind!r} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def device_label(device: str) -> str:
    """A readable name of the device the numbers come from."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.get_device_name(0)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return f"cpu ({cores} cores)"


def run_bench(
    model_dir: Path,
    texts_path: Path,
    *,
    n: int = 2000,
    val_path: Path | None = DEFAULT_VAL,
    device: str = "cpu",
    batch_size: int = 32,
    total: int = 0,
    baseline_n: int | None = None,
    passes: int = 3,
    out: TextIO = sys.stdout,
) -> dict:
    """Compare moodring's scorer, a default transformers pipeline and VADER on the same texts.

    Each engine runs in its own subprocess, so each peak RSS is its own. The ONNX model
    cache is built here first, so the scorer's process measures scoring, not the build.

    Args:
        model_dir: the sentiment model directory.
        texts_path: CSV file with a ``text`` column; its first ``n`` distinct texts are used.
        n: how many distinct texts.
        val_path: labelled TSV for the scorer's validation macro recall (None or missing:
            reported as null).
        device: ``cpu`` or ``cuda``.
        batch_size: the scorer's batch size, also the batch of the latency percentiles.
        total: repeat the texts up to this many (0: no repetition).
        baseline_n: the pipeline and VADER score only the first this many texts (None: all
            on the CPU, 10,000 on a GPU, where the default pipeline's one-text-at-a-time
            pass over 100,000+ texts would take longer than the rest together).
        passes: timed passes per engine; msgs/s is their median (one pass on a shared host
            moved by a fifth between runs), the slowest and fastest beside it.
        out: where the table and the final JSON line are written.

    Returns:
        The dict printed as the last line: ``msgs_per_s``, ``pipeline_msgs_per_s``,
        ``speedup``, ``vader_msgs_per_s``, ``p50_ms``, ``p99_ms``, ``peak_rss_mb``,
        ``val_macro_recall``, ``device`` (plus ``backend`` and ``n``).
    """
    from nlp.scorer import ModelInfo, resolve_backend, sha256_of

    model_dir = Path(model_dir)
    texts = distinct_texts(Path(texts_path), n)
    if total:
        texts = (texts * (total // max(1, len(texts)) + 1))[:total]
    if not texts:
        raise ValueError(f"{texts_path}: no texts")
    if baseline_n is None:
        baseline_n = len(texts) if device.split(":")[0] == "cpu" else GPU_BASELINE_N
    baseline_n = max(1, min(baseline_n, len(texts)))
    if val_path is not None and not Path(val_path).is_file():
        out.write(f"note: no validation file at {val_path}; val_macro_recall is null\n")
        val_path = None
    backend = resolve_backend("auto", device, model_dir)
    if backend == "onnx":
        from nlp.onnx_backend import ensure_int8

        info = ModelInfo.read(model_dir)
        ensure_int8(model_dir, info.weights_sha256 or sha256_of(model_dir / "model.safetensors"))
    with tempfile.TemporaryDirectory() as tmp:
        texts_json = Path(tmp) / "texts.json"
        texts_json.write_text(json.dumps(texts), encoding="utf-8")
        baseline_json = Path(tmp) / "baseline.json"
        baseline_json.write_text(json.dumps(texts[:baseline_n]), encoding="utf-8")

        def common(path: Path) -> list[str]:
            return [
                "--model",
                str(model_dir),
                "--texts-json",
                str(path),
                "--device",
                device,
                "--batch-size",
                str(batch_size),
                "--passes",
                str(passes),
            ]

        val = ["--val", str(val_path)] if val_path else []
        a = _run_worker("scorer", [*common(texts_json), *val])
        b = _run_worker("pipeline", common(baseline_json))
        c = _run_worker("vader", common(baseline_json))
    if "missing" in c:
        out.write(f"note: {c['missing']}; vader_msgs_per_s is null\n")
    result = {
        "msgs_per_s": a["msgs_per_s"],
        "msgs_per_s_range": [a.get("msgs_per_s_min"), a.get("msgs_per_s_max")],
        "pipeline_msgs_per_s": b["msgs_per_s"],
        "pipeline_msgs_per_s_range": [b.get("msgs_per_s_min"), b.get("msgs_per_s_max")],
        "passes": passes,
        "speedup": round(a["msgs_per_s"] / b["msgs_per_s"], 2),
        "vader_msgs_per_s": c.get("msgs_per_s"),
        "p50_ms": a["p50_ms"],
        "p99_ms": a["p99_ms"],
        "peak_rss_mb": a["peak_rss_mb"],
        "val_macro_recall": a.get("val_macro_recall"),
        "device": device_label(device),
        "backend": a["backend"],
        "stage_us_per_msg": a.get("stage_us_per_msg"),
        "n": len(texts),
        "baseline_n": baseline_n,
    }
    out.write(_table(result, a, b, c, batch_size))
    out.write(json.dumps(result) + "\n")
    return result


def _table(result: dict, a: dict, b: dict, c: dict, batch_size: int) -> str:
    rows = [
        (f"moodring scorer ({a['backend']})", a),
        ("transformers pipeline (defaults)", b),
        ("VADER", c),
    ]
    rows = [(name, r) for name, r in rows if "msgs_per_s" in r]
    lines = [
        f"{result['n']} texts on {result['device']}; latency per batch of {batch_size}; "
        f"msgs/s is the median of {result['passes']} passes (slowest-fastest)",
    ]
    if result["baseline_n"] < result["n"]:
        lines.append(f"(the pipeline and VADER over the first {result['baseline_n']} texts)")
    lines += [
        f"{'engine':<36}{'msgs/s':>10}{'(range)':>20}{'p50 ms':>10}{'p99 ms':>10}"
        f"{'peak RSS MB':>13}",
    ]
    for name, r in rows:
        spread = f"({r.get('msgs_per_s_min', r['msgs_per_s']):.1f}-"
        spread += f"{r.get('msgs_per_s_max', r['msgs_per_s']):.1f})"
        lines.append(
            f"{name:<36}{r['msgs_per_s']:>10.1f}{spread:>20}{r['p50_ms']:>10.2f}"
            f"{r['p99_ms']:>10.2f}{r['peak_rss_mb']:>13.1f}"
        )
    stages = a.get("stage_us_per_msg")
    if stages:
        lines.append(
            "scorer steps, us per message (run in turn): normalise+tokenise "
            f"{stages['normalise_tokenise']:.1f}, model {stages['model']:.1f}, "
            f"postprocess {stages['postprocess']:.1f}"
        )
    recall = result["val_macro_recall"]
    lines.append(f"speed-up scorer / pipeline: {result['speedup']:.2f}x")
    lines.append(
        "scorer validation macro recall: "
        + ("n/a (no validation file)" if recall is None else f"{recall:.4f}")
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Measure moodring's scorer alone, or with ``--compare`` beside the baselines (as
    ``moodring bench`` does, but with this parser's defaults: give ``--n``, ``--total`` and
    ``--batch-size`` for a GPU): for a GPU machine where the project is not installed.

    ``python -m nlp.bench worker ...`` runs one engine of :func:`run_bench` instead.
    """
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["worker"]:
        return worker(argv[1:])

    p = argparse.ArgumentParser(description="measure the moodring scorer")
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--texts", required=True, type=Path)
    p.add_argument("--n", type=int, default=2000, help="distinct texts, then repeated to --total")
    p.add_argument("--total", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "torch", "onnx"),
        help="the scorer's engine (with --compare always auto, as moodring bench runs it)",
    )
    p.add_argument("--passes", type=int, default=3, help="timed passes; msgs/s is their median")
    p.add_argument("--compare", action="store_true", help="also the pipeline and VADER")
    p.add_argument("--val", type=Path, default=None, help="with --compare: validation TSV")
    args = p.parse_args(argv)
    if args.compare:
        run_bench(
            args.model,
            args.texts,
            n=args.n,
            val_path=args.val,
            device=args.device,
            batch_size=args.batch_size,
            total=args.total,
            passes=args.passes,
        )
        return 0
    texts = distinct_texts(args.texts, args.n)
    if args.total:
        texts = (texts * (args.total // len(texts) + 1))[: args.total]
    args.val = None  # speed only; validation is ``run_bench``'s job
    result = _scorer_worker(args, texts)
    result["device"] = device_label(args.device)
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
