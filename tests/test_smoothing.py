"""Per-channel smoothing of the int8 path (nlp/smoothing.py) and the model's own int8 settings."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from nlp.onnx_backend import INT8_FILE, ensure_int8, int8_key, int8_path
from nlp.scorer import ModelLoadError, Scorer, sha256_of
from nlp.smoothing import (
    SMOOTHING_FILE,
    apply_scales,
    fit_scales,
    input_ranges,
    load_scales,
    save_scales,
)


def batches(n: int = 6, seed: int = 3) -> list[list[list[int]]]:
    rng = random.Random(seed)
    return [
        [[101, *(rng.randrange(1000, 5000) for _ in range(rng.randrange(3, 20))), 102]
         for _ in range(8)]
        for _ in range(n)
    ]  # fmt: skip


def load(model_dir: Path):
    return AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), dtype=torch.float32, attn_implementation="eager"
    ).eval()


def logits(model, batch: list[list[int]]) -> torch.Tensor:
    longest = max(map(len, batch))
    ids = torch.tensor([b + [0] * (longest - len(b)) for b in batch])
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(ids != 0).long()).logits


def test_smoothing_keeps_the_function_and_balances_the_ranges(tiny_model_dir: Path) -> None:
    model = load(tiny_model_dir)
    data = batches()
    before = [logits(model, b) for b in data]
    ranges = input_ranges(model, data)
    # Every encoder projection is measured: 2 layers x (q, k, v, attention out, FFN in, out).
    assert len(ranges) == 12
    scales = fit_scales(model, ranges, alpha=0.5)
    apply_scales(model, scales)
    after = [logits(model, b) for b in data]
    for a, b in zip(before, after, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    # With alpha 0.5 each input channel's range, divided by its scale, equals the range of
    # the weights it meets, multiplied by it (where the clamp on the scales allowed it).
    for name, s in scales.items():
        inside = (s > 0.011) & (s < 99)
        weights = model.get_submodule(name).weight.detach().abs().amax(dim=0)
        torch.testing.assert_close((ranges[name] / s)[inside], weights[inside])


def test_alpha_zero_leaves_the_activations_alone(tiny_model_dir: Path) -> None:
    model = load(tiny_model_dir)
    ranges = input_ranges(model, batches())
    scales = fit_scales(model, ranges, alpha=0.0)
    for name, s in scales.items():
        weight = model.get_submodule(name).weight.abs().amax(dim=0)
        torch.testing.assert_close(s, (1 / weight).clamp(0.01, 100.0))
    with pytest.raises(ValueError, match="alpha"):
        fit_scales(model, ranges, alpha=1.5)


def test_scales_that_do_not_fit_the_model_are_refused(tiny_model_dir: Path) -> None:
    model = load(tiny_model_dir)
    with pytest.raises(ValueError, match="names no layer"):
        apply_scales(model, {"bert.encoder.layer.9.output.dense": torch.ones(64)})
    with pytest.raises(ValueError, match="does not fit"):
        apply_scales(model, {"bert.encoder.layer.0.output.dense": torch.ones(5)})


@pytest.fixture
def smoothed_model(tiny_model_dir: Path, tmp_path: Path) -> Path:
    """The tiny model with its own int8 settings, as ``ship`` writes them."""
    out = tmp_path / "smoothed"
    shutil.copytree(tiny_model_dir, out)
    model = load(out)
    save_scales(out / SMOOTHING_FILE, fit_scales(model, input_ranges(model, batches()), 0.8), 0.8)
    meta = json.loads((out / "moodring.json").read_text())
    meta["weights_sha256"] = sha256_of(out / "model.safetensors")
    meta["int8"] = {
        "smoothing": SMOOTHING_FILE,
        "smoothing_sha256": sha256_of(out / SMOOTHING_FILE),
        "smoothing_alpha": 0.8,
        "fp32_layers": ["bert.encoder.layer.0.intermediate.dense"],
    }
    (out / "moodring.json").write_text(json.dumps(meta))
    return out


def test_an_int8_build_with_settings_follows_them(smoothed_model: Path, tmp_path: Path) -> None:
    import onnx

    weights = json.loads((smoothed_model / "moodring.json").read_text())["weights_sha256"]
    key = int8_key(smoothed_model, weights)
    assert key != weights  # settings are part of the build's name: a new setting, a new build
    path = ensure_int8(smoothed_model, weights, tmp_path / "cache")
    assert path == int8_path(key, tmp_path / "cache") and path.name == INT8_FILE
    graph = onnx.load(str(path)).graph
    fp32 = [n.name for n in graph.node if n.op_type == "MatMul" and "dense" in n.name]
    assert fp32 == ["/bert/encoder/layer.0/intermediate/dense/MatMul"]
    # The other 11 projections and the pooler and classifier run in int8.
    assert sum(n.op_type == "MatMulInteger" for n in graph.node) == 13
    # The smoothing is in the graph (a Mul in front of each smoothed projection), and the
    # int8 model still reads the texts as the fp32 weights do.
    ends = ("/query/Mul", "/key/Mul", "/value/Mul", "/dense/Mul")
    smoothing = [n.name for n in graph.node if n.op_type == "Mul" and n.name.endswith(ends)]
    assert len(smoothing) == 12
    texts = [f"$BTC {word} today" for word in ("pumping", "dumping", "flat", "up", "down")] * 4
    fast = Scorer(smoothed_model, backend="onnx", cache_size=0, dedupe=False)
    exact = Scorer(smoothed_model, backend="torch", cache_size=0, dedupe=False)
    a = np.array([[s.p_neg, s.p_neu, s.p_pos] for s in fast.score(texts)])
    b = np.array([[s.p_neg, s.p_neu, s.p_pos] for s in exact.score(texts)])
    assert np.abs(a - b).max() < 0.05


def test_a_smoothing_file_that_does_not_match_its_sha256_is_refused(
    smoothed_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scales = load_scales(smoothed_model / SMOOTHING_FILE)
    scales = {k: v * 2 for k, v in scales.items()}
    save_scales(smoothed_model / SMOOTHING_FILE, scales, 0.8)
    monkeypatch.setenv("MOODRING_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match="does not match the sha256"):
        Scorer(smoothed_model, backend="onnx")


def test_fit_int8_writes_the_settings_that_the_int8_build_follows(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ship --data`` fits the scales on training texts only and records them; the scorer's
    int8 build then applies them and still reads texts as the fp32 weights do."""
    from nlp.stance_training import fit_int8, smoothing_texts

    data = tmp_path / "data"
    (data / "sentiment").mkdir(parents=True)
    (data / "social").mkdir()
    rng = random.Random(5)
    words = ["pump", "dump", "moon", "rekt", "hodl", "fud", "bullish", "bearish", "flat"]

    def text() -> str:
        return " ".join(rng.choice(words) for _ in range(rng.randrange(2, 9)))

    rows = [("tfns-train", "train text"), ("tfns-valid", "a DEV text, never used")] * 30
    (data / "sentiment" / "fin_train.tsv").write_text(
        "label\ttext\tsource\n"
        + "".join(f"neutral\t{text() if s == 'tfns-train' else t}\t{s}\n" for s, t in rows)
    )
    (data / "sentiment" / "train.tsv").write_text(
        "label\ttext\n" + "".join(f"positive\t{text()}\n" for _ in range(40))
    )
    (data / "social" / "stocktwits_btc_eth_2022.csv").write_text(
        "id,created_at,author,tag,likes,text\n"
        + "".join(f"{i},2022-07-01T00:00:00Z,a,Bullish,0,{text()}\n" for i in range(40))
        + "99,2022-07-20T00:00:00Z,a,Bearish,0,a HOLD-OUT post\n"
    )
    texts = smoothing_texts(data)
    assert len(texts) == 30 + 40 + 40
    assert not any("DEV" in t or "HOLD-OUT" in t for t in texts)

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    settings = fit_int8(model, data, alpha=0.8, fp32_layers=())
    meta = json.loads((model / "moodring.json").read_text())
    assert meta["int8"] == settings and settings["smoothing_texts"] == 110
    assert settings["smoothing_sha256"] == sha256_of(model / SMOOTHING_FILE)
    assert len(load_scales(model / SMOOTHING_FILE)) == 12
    monkeypatch.setenv("MOODRING_CACHE_DIR", str(tmp_path / "cache"))
    sample = [text() for _ in range(20)]
    fast = Scorer(model, backend="onnx", cache_size=0, dedupe=False).score(sample)
    exact = Scorer(model, backend="torch", cache_size=0, dedupe=False).score(sample)
    gaps = [
        abs(a.p_pos - b.p_pos) + abs(a.p_neg - b.p_neg) for a, b in zip(fast, exact, strict=True)
    ]
    assert max(gaps) < 0.05
