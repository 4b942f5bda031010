"""The int8 scores do not depend on the CPU's instruction set: checked against an emulated
Haswell (AVX2, no VNNI, no AVX-512) under qemu-user, where one is installed."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nlp.onnx_backend import OnnxModel, cpu_signature, ensure_int8, export_int8
from nlp.scorer import ModelInfo, Scorer

MODEL = Path(__file__).resolve().parents[1] / "models" / "sentiment"
QEMU = shutil.which("qemu-x86_64")
TEXTS = [
    "bullish af",
    "$BTC pumping hard",
    "capitulation, bear market confirmed",
    "rekt again, liquidated on my 50x long",
    "Bitcoin ETF outflows hit record",
    "Funding negative, shorts paying longs",
    "gm, what's BTC at?",
    "$ETH.X 9 months of sell offs behind us now. 9 months of relentless selling.",
    "Fed raises rates by 75 basis points, stocks slide",
    "I'm scared, sold everything at the bottom 😭",
    "wen moon? 🚀🚀🚀",
    "Binance to delist several tokens next week",
    "bears got wrecked lol, shorts liquidated 🔥",
    "not bullish at all on this chart, looks like a rug",
    "Coinbase shares jump after earnings beat estimates",
    "just another day in crypto",
]
# Run by the emulated CPU: the same ONNX Runtime session settings as the product's.
EMULATED = """
import sys, numpy as np
from pathlib import Path
from nlp.onnx_backend import OnnxModel
batch = np.load(sys.argv[1])
out = {}
for name in sys.argv[2:]:
    out[name] = OnnxModel(Path(name), 1).logits(batch["ids"], batch["mask"])
np.savez(sys.argv[1] + ".out.npz", **out)
"""

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64" or QEMU is None,
    reason="needs qemu-user on an x86_64 machine (`make test` installs it where it can)",
)


def test_int8_scores_agree_between_this_cpu_and_one_without_vnni(tmp_path: Path) -> None:
    info = ModelInfo.read(MODEL)
    shipped = ensure_int8(MODEL, info.weights_sha256)
    eight_bit = tmp_path / "model.8bit.onnx"
    export_int8(MODEL, eight_bit, reduce_range=False)
    scorer = Scorer(MODEL, cache_size=0, dedupe=False, backend="onnx")
    encoded = scorer.preprocess(TEXTS)
    longest = max(len(ids) for ids in encoded)
    ids = np.array([ids + [0] * (longest - len(ids)) for ids in encoded], dtype=np.int64)
    mask = (ids != 0).astype(np.int64)
    batch = tmp_path / "batch.npz"
    np.savez(batch, ids=ids, mask=mask)
    subprocess.run(
        [QEMU, "-cpu", "Haswell", sys.executable, "-c", EMULATED, str(batch), str(shipped),
         str(eight_bit)],
        check=True, capture_output=True, timeout=900, cwd=MODEL.parents[1],
    )  # fmt: skip
    emulated = np.load(str(batch) + ".out.npz")
    native = {p: OnnxModel(p, 1).logits(ids, mask) for p in (shipped, eight_bit)}
    bias = np.asarray(info.class_bias)

    # The product's file: the same labels and nearly the same logits on both CPUs (only
    # the fp32 kernels' summation order differs).
    ours, theirs = native[shipped], emulated[str(shipped)]
    assert np.abs(ours - theirs).max() < 0.1
    labels = [(x / info.temperature + bias).argmax(axis=1).tolist() for x in (ours, theirs)]
    assert labels[0] == labels[1]
    # The 8-bit file shows why: on a CPU with VNNI its integer sums differ from the
    # emulated AVX2 ones (which saturate at 16 bits). Without VNNI here, both saturate alike.
    if "avx512_vnni" in cpu_signature() or "avx_vnni" in cpu_signature():
        gap = np.abs(native[eight_bit] - emulated[str(eight_bit)]).max()
        assert gap > 10 * np.abs(ours - theirs).max(), json.dumps({"8-bit gap": float(gap)})
