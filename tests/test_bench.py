"""run_bench end to end on a few texts, and its table and JSON line with canned workers."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from nlp import bench
from nlp.onnx_backend import CACHE_ENV

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "sentiment"
DEMO = ROOT / "bot" / "demo_data" / "stocktwits_btc_eth_2022.csv"
SAMPLE = ROOT / "tests" / "data" / "sentiment_sample.tsv"
KEYS = {
    "msgs_per_s",
    "pipeline_msgs_per_s",
    "speedup",
    "vader_msgs_per_s",
    "p50_ms",
    "p99_ms",
    "peak_rss_mb",
    "val_macro_recall",
    "device",
}


@pytest.fixture(autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    # The same session cache as tests/test_scorer.py, so the ONNX model is built once.
    monkeypatch.setenv(CACHE_ENV, str(tmp_path_factory.getbasetemp() / "moodring-cache"))


def test_run_bench_end_to_end() -> None:
    out = io.StringIO()
    result = bench.run_bench(
        MODEL, DEMO, n=40, val_path=SAMPLE, batch_size=16, baseline_n=24, passes=3, out=out
    )
    last = json.loads(out.getvalue().strip().splitlines()[-1])
    assert last == result
    assert set(last) >= KEYS
    assert last["backend"] == "onnx" and last["n"] == 40 and last["baseline_n"] == 24
    assert "the pipeline and VADER over the first 24 texts" in out.getvalue()
    assert last["msgs_per_s"] > 0 and last["pipeline_msgs_per_s"] > 0
    # msgs/s is the median of three passes, which lies within their slowest and fastest.
    assert last["passes"] == 3 and "median of 3 passes" in out.getvalue()
    for key in ("msgs_per_s", "pipeline_msgs_per_s"):
        low, high = last[f"{key}_range"]
        assert 0 < low <= last[key] <= high
    assert last["speedup"] == round(last["msgs_per_s"] / last["pipeline_msgs_per_s"], 2)
    assert 0 < last["peak_rss_mb"] < 700
    assert last["val_macro_recall"] >= 0.6
    assert "VADER" in out.getvalue()
    stages = last["stage_us_per_msg"]
    assert set(stages) == {"normalise_tokenise", "model", "postprocess"}
    assert all(v > 0 for v in stages.values())
    assert "normalise+tokenise" in out.getvalue()


def test_missing_validation_file_gives_null(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    canned = {"msgs_per_s": 100.0, "p50_ms": 1.0, "p99_ms": 2.0, "peak_rss_mb": 50.0}
    calls = []

    def fake_worker(kind: str, common: list[str]) -> dict:
        calls.append((kind, "--val" in common))
        return {
            **canned,
            "msgs_per_s": {"scorer": 400.0, "pipeline": 50.0}.get(kind, 9e3),
            "backend": "onnx",
        }

    monkeypatch.setattr(bench, "_run_worker", fake_worker)
    out = io.StringIO()
    texts = tmp_path / "t.csv"
    texts.write_text("text\nhello\nworld\nhello\n", encoding="utf-8")
    result = bench.run_bench(MODEL, texts, val_path=tmp_path / "absent.tsv", out=out)
    assert calls == [("scorer", False), ("pipeline", False), ("vader", False)]
    assert result["val_macro_recall"] is None and result["speedup"] == 8.0
    assert result["n"] == 2
    assert "no validation file" in out.getvalue()
    assert json.loads(out.getvalue().strip().splitlines()[-1]) == result


def test_measure_reports_the_median_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three whole passes that take 1, 3 and 2 units: msgs/s is the 2-unit pass's, the range
    the other two's; latency percentiles come from the first batched pass only."""
    clock = [0.0]
    durations = iter([1.0, 3.0, 2.0])
    batch_cost = iter([0.0, 0.25, 0.75])  # warm-up, then the batched pass's two batches

    def score_batch(batch: object) -> None:
        clock[0] += next(batch_cost)

    def whole(texts: object) -> None:
        clock[0] += next(durations)

    monkeypatch.setattr(bench.time, "perf_counter", lambda: clock[0])
    result = bench.measure(score_batch, ["a", "b", "c", "d"], 2, whole=whole, passes=3)
    assert result["passes"] == 3
    assert result["msgs_per_s"] == 2.0  # 4 texts in 2 units
    assert (result["msgs_per_s_min"], result["msgs_per_s_max"]) == (1.3, 4.0)
    assert result["batched_msgs_per_s"] == 4.0  # 4 texts in 0.25 + 0.75
    assert (result["p50_ms"], result["p99_ms"]) == (500.0, 745.0)
