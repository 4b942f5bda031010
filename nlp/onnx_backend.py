"""ONNX Runtime int8 backend for the scorer: export once, quantize, cache by weights, run."""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

INT8_FILE = "model.int8.onnx"
SHA_FILE = "model.int8.onnx.sha256"
CACHE_ENV = "MOODRING_CACHE_DIR"
OPSET = 17
#: Bumped whenever export or quantization changes, so older cached builds are rebuilt.
RECIPE = 2


#: CPU features that pick ONNX Runtime's integer kernels, and so move the int8 scores.
INT8_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_signature(cpuinfo: str | None = None) -> str:
    """The CPU and its instruction sets that pick ONNX Runtime's integer kernels, e.g.
    ``"AMD EPYC (avx2 avx512f avx512_vnni)"``.

    The same int8 model gives slightly different scores on CPUs with and without VNNI
    (models/README.md), so every int8 figure is recorded with this. ``cpuinfo`` is the text
    of ``/proc/cpuinfo``, read when not given; elsewhere the platform's processor name.
    """
    import platform

    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            cpuinfo = ""
    name, flags = "", set[str]()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    name = name or platform.processor() or platform.machine() or "unknown CPU"
    found = [f for f in INT8_FEATURES if f in flags]
    return f"{name} ({' '.join(found)})" if found else name


def onnx_available() -> bool:
    """Whether onnxruntime can be imported (the ``auto`` backend's test)."""
    return importlib.util.find_spec("onnxruntime") is not None


def cache_root() -> Path:
    """``$MOODRING_CACHE_DIR`` if set, else ``~/.cache/moodring``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path.home() / ".cache" / "moodring"


def int8_path(weights_sha256: str, root: Path | None = None) -> Path:
    """Where the int8 model built from weights with this sha256 is cached."""
    return (root or cache_root()) / "onnx" / weights_sha256[:16] / INT8_FILE


def _sha256(path: Path) -> str:
    from nlp.scorer import sha256_of

    return sha256_of(path)


def is_cached(path: Path) -> bool:
    """Whether ``path`` exists, matches the sha256 recorded beside it at build time and was
    built by the current :data:`RECIPE`."""
    sha_path = path.with_name(SHA_FILE)
    if not (path.is_file() and sha_path.is_file()):
        return False
    return sha_path.read_text().split() == [_sha256(path), f"recipe={RECIPE}"]


def export_int8(model_dir: Path, out_path: Path) -> str:
    """Export ``model_dir`` to ONNX in fp32 and quantize it dynamically to int8.

    The export traces the eager-attention fp32 model with the legacy TorchScript exporter
    (dynamic batch and sequence axes); weights of the MatMul/Gemm nodes become per-channel
    QInt8 (but see :func:`_sensitive_nodes`), activations are quantized at run time, one
    scale per batch tensor, so a text's scores move slightly with its batch-mates. Both steps
    are deterministic, so the same weights give a byte-identical file.

    Args:
        model_dir: a transformers sequence-classification model directory.
        out_path: where to write the int8 model.

    Returns:
        The sha256 of the written file.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    ids = torch.tensor([[101, 2023, 2003, 102, 0, 0], [101, 2204, 2204, 2204, 2204, 102]])
    with tempfile.TemporaryDirectory(dir=out_path.parent) as tmp:
        fp32 = Path(tmp) / "model.fp32.onnx"
        with warnings.catch_warnings():
            # The TorchScript exporter warns that it is legacy; it traces this encoder exactly.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model,
                (ids, (ids != 0).long()),
                str(fp32),
                input_names=["input_ids", "attention_mask"],
                output_names=["logits"],
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "sequence"},
                    "attention_mask": {0: "batch", 1: "sequence"},
                    "logits": {0: "batch"},
                },
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        # Per-channel weights; the FFN output projections of the first two layers stay fp32.
        # Measured on val.tsv (fp32: 0.7510 macro recall): all-int8 per-tensor 0.734, all-int8
        # per-channel 0.739 to 0.747 depending on batch size, these two layers in fp32 0.749
        # to 0.755 at about the same speed; static (calibrated) int8 was slower and worse.
        logging.disable(logging.INFO)  # the quantizer logs one INFO line per tensor to root
        try:
            quantize_dynamic(
                str(fp32),
                str(out_path),
                per_channel=True,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=_sensitive_nodes(fp32),
            )
        finally:
            logging.disable(logging.NOTSET)
    return _sha256(out_path)


def _sensitive_nodes(fp32: Path) -> list[str]:
    """MatMul nodes left in fp32: the FFN output projection of encoder layers 0 and 1."""
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and any(node.name.startswith(f"/bert/encoder/layer.{k}/output/dense/") for k in (0, 1))
    ]


def ensure_int8(model_dir: Path, weights_sha256: str, root: Path | None = None) -> Path:
    """The cached int8 model for these weights, built (about 10 s) if absent or corrupt.

    Args:
        model_dir: the model directory the weights live in.
        weights_sha256: sha256 of its weights file; names the cache entry.
        root: cache root; defaults to :func:`cache_root`.

    Returns:
        The path of a verified ``model.int8.onnx``.
    """
    path = int8_path(weights_sha256, root)
    if is_cached(path):
        return path
    log.warning(
        "building the ONNX int8 model for %s in %s (first use, under a minute)",
        model_dir,
        path.parent,
    )
    t0 = time.monotonic()
    path.parent.mkdir(parents=True, exist_ok=True)
    # Build under a temporary name and rename: a concurrent reader never sees half a file.
    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        staged = Path(tmp) / INT8_FILE
        digest = export_int8(model_dir, staged)
        (Path(tmp) / SHA_FILE).write_text(f"{digest}  recipe={RECIPE}\n")
        os.replace(staged, path)
        os.replace(Path(tmp) / SHA_FILE, path.with_name(SHA_FILE))
    log.warning("built %s in %.1f s", path, time.monotonic() - t0)
    return path


class OnnxModel:
    """An int8 ONNX sequence classifier run by onnxruntime on the CPU."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        # One model, one request at a time: all cores inside each op, none across ops.
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        # Shapes change with every batch, so cached memory patterns never get reused: they
        # only grew RSS (630 MB vs 460 MB after 2,000 texts) without a speed gain.
        options.enable_mem_pattern = False
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """``[batch, labels]`` float32 logits for int64 ``[batch, seq]`` ids and mask."""
        return self.session.run(
            ["logits"], {"input_ids": input_ids, "attention_mask": attention_mask}
        )[0]


def clear(weights_sha256: str, root: Path | None = None) -> None:
    """Remove the cached int8 model for these weights (used to force a rebuild)."""
    shutil.rmtree(int8_path(weights_sha256, root).parent, ignore_errors=True)
