"""ONNX Runtime int8 backend for the scorer: export once, quantize, cache by weights, run."""

from __future__ import annotations

import importlib.util
import logging
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

INT8_FILE = "model.int8.onnx"
SHA_FILE = "model.int8.onnx.sha256"
CACHE_ENV = "MOODRING_CACHE_DIR"
OPSET = 17
#: Bumped whenever export or quantization changes, so older cached builds are rebuilt.
RECIPE = 3
#: Layers kept in fp32 for a model whose ``moodring.json`` names none (``int8.fp32_layers``).
DEFAULT_FP32_LAYERS = ("bert.encoder.layer.0.output.dense", "bert.encoder.layer.1.output.dense")


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


def int8_settings(model_dir: Path) -> dict:
    """The model's own int8 settings (``moodring.json``'s ``int8``): the layers kept in fp32
    and, where ``ship`` fitted them, the smoothing scales' file and sha256. ``{}`` if none."""
    import json

    from nlp.scorer import META_FILE

    try:
        meta = json.loads((Path(model_dir) / META_FILE).read_text())
    except (OSError, ValueError):
        return {}
    settings = meta.get("int8") or {}
    return dict(settings) if isinstance(settings, dict) else {}


def int8_key(model_dir: Path, weights_sha256: str) -> str:
    """Names the cached int8 build: the weights' sha256, or, for a model with its own int8
    settings, a sha256 over the weights' and those settings (a new smoothing file or a new
    choice of fp32 layers is a new build)."""
    import hashlib
    import json

    settings = int8_settings(model_dir)
    if not settings:
        return weights_sha256
    blob = json.dumps({"weights": weights_sha256, "int8": settings}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def int8_path(key: str, root: Path | None = None) -> Path:
    """Where the int8 model named ``key`` (:func:`int8_key`) is cached."""
    return (root or cache_root()) / "onnx" / key[:16] / INT8_FILE


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


def export_int8(model_dir: Path, out_path: Path, reduce_range: bool = True) -> str:
    """Export ``model_dir`` to ONNX in fp32 and quantize it dynamically to int8.

    The export traces the eager-attention fp32 model with the legacy TorchScript exporter
    (dynamic batch and sequence axes), after applying the model's smoothing scales if it has
    them (:mod:`nlp.smoothing`). Weights of the MatMul/Gemm nodes become per-channel QInt8
    with 7-bit range (but see :func:`_fp32_nodes`); activations are quantized at run time,
    one scale per batch tensor, so a text's scores move slightly with its batch-mates. Both
    steps are deterministic, so the same weights give a byte-identical file.

    Args:
        model_dir: a transformers sequence-classification model directory.
        out_path: where to write the int8 model.
        reduce_range: 7-bit weights (the product's); ``False`` builds the 8-bit file of
            recipe 2, which scores differently on CPUs without VNNI (kept to show that).

    Returns:
        The sha256 of the written file.

    Raises:
        ValueError: the smoothing file does not match the sha256 ``moodring.json`` records.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModelForSequenceClassification

    from nlp.smoothing import apply_scales, load_scales

    settings = int8_settings(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(
        str(model_dir), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    if settings.get("smoothing"):
        path = Path(model_dir) / settings["smoothing"]
        if _sha256(path) != settings.get("smoothing_sha256"):
            raise ValueError(f"{path} does not match the sha256 in moodring.json")
        apply_scales(model, load_scales(path))
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
        # 7-bit weights (reduce_range): CPUs without VNNI add u8 x s8 products in 16-bit
        # sums that saturate with 8-bit weights, so the same file scored differently there
        # (14 of 631 labels flipped between this machine and an emulated Haswell); with 7
        # bits no sum saturates and the two agree (models/README.md, "The CPU path").
        logging.disable(logging.INFO)  # the quantizer logs one INFO line per tensor to root
        try:
            quantize_dynamic(
                str(fp32),
                str(out_path),
                per_channel=True,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=_fp32_nodes(
                    fp32, settings.get("fp32_layers", DEFAULT_FP32_LAYERS)
                ),
            )
        finally:
            logging.disable(logging.NOTSET)
    return _sha256(out_path)


def _fp32_nodes(fp32: Path, layers: Sequence[str]) -> list[str]:
    """The MatMul nodes of these layers (module names, ``bert.encoder.layer.0.output.dense``),
    which stay fp32: the ones whose int8 error moved the most labels."""
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    wanted = set(layers)
    # The exporter names a Linear's MatMul after its module path: /bert/encoder/layer.0/...
    return [
        node.name
        for node in graph.node
        if node.op_type == "MatMul"
        and node.name.removeprefix("/").removesuffix("/MatMul").replace("/", ".") in wanted
    ]


def ensure_int8(model_dir: Path, weights_sha256: str, root: Path | None = None) -> Path:
    """The cached int8 model for these weights and int8 settings, built (about 10 s) if
    absent or corrupt.

    Args:
        model_dir: the model directory the weights live in.
        weights_sha256: sha256 of its weights file; with the settings, names the cache entry.
        root: cache root; defaults to :func:`cache_root`.

    Returns:
        The path of a verified ``model.int8.onnx``.
    """
    path = int8_path(int8_key(model_dir, weights_sha256), root)
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
