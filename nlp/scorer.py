"""The transformer sentiment scorer: texts in, calibrated 3-class scores out, in batches."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nlp.errors import ModelLoadError
from nlp.normalize import emoji_to_words, normalize
from nlp.types import LABELS, Score

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
BACKENDS = ("torch", "onnx", "auto")
#: Rows per padded batch. Small batches pad less (each pads to its own longest text after
#: sorting). On 2 CPU cores with int8 ONNX over 2,000 posts, one run gave 441 msgs/s at 64 and
#: 529 to 555 at 8 to 32, with a third of the latency for a 64-message call; in back-to-back
#: runs 32 was a little ahead of 16.
DEFAULT_BATCH_SIZE = 32
META_FILE = "moodring.json"
#: Texts per chunk when tokenisation overlaps the model (GPU): large enough that length
#: sorting inside a chunk still pads little, small enough that the first chunk starts soon.
OVERLAP_CHUNK = 8192


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _class_bias(raw: object) -> tuple[float, float, float]:
    if raw is None:
        return (0.0, 0.0, 0.0)
    if not isinstance(raw, list) or len(raw) != len(LABELS):
        raise ValueError(f"class_bias must be a list of {len(LABELS)} numbers, not {raw!r}")
    neg, neu, pos = (float(x) for x in raw)
    return (neg, neu, pos)


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What ``moodring.json`` beside the weights says about a model."""

    model_id: str
    temperature: float
    max_length: int
    weights_sha256: str | None
    #: The model reads emoji as words (see :func:`nlp.normalize.emoji_to_words`).
    emoji_words: bool = False
    #: Offsets added to the temperature-scaled logits, one per class (:mod:`nlp.calibration`).
    class_bias: tuple[float, float, float] = (0.0, 0.0, 0.0)
    #: Text tokens kept from the end of a text longer than ``max_length`` (0: keep the head).
    tail_tokens: int = 0

    @classmethod
    def read(cls, model_dir: Path) -> ModelInfo:
        """The model's ``moodring.json``. Its ``truncate`` (``{"max_length": 64, "tail":
        24}``) says how to cut a long text: the head and the last ``tail`` tokens; without
        it, texts keep their first 128 tokens (or the model's larger ``max_length``).

        Raises:
            ValueError: ``truncate`` leaves no room for a head.
        """
        meta_path = model_dir / META_FILE
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else {}
        max_length, tail = max(128, int(meta.get("max_length", 128))), 0
        truncate = meta.get("truncate")
        if truncate is not None:
            if not isinstance(truncate, dict) or "max_length" not in truncate:
                raise ValueError(f"truncate {truncate!r}: expected {{'max_length': N, 'tail': M}}")
            max_length, tail = int(truncate["max_length"]), int(truncate.get("tail", 0))
            if not 0 <= tail <= max_length - 8:
                raise ValueError(f"truncate {truncate!r}: tail must be 0 to max_length - 8")
        return cls(
            model_id=str(meta.get("model_id", model_dir.name)),
            temperature=float(meta.get("temperature", 1.0)),
            max_length=max_length,
            weights_sha256=meta.get("weights_sha256"),
            emoji_words=bool(meta.get("emoji_words", False)),
            class_bias=_class_bias(meta.get("class_bias")),
            tail_tokens=tail,
        )


def head_and_tail(ids: list[int], max_length: int, tail: int) -> list[int]:
    """``ids`` (``[CLS] … [SEP]``) cut to ``max_length``: the head, then the last ``tail``
    text tokens and ``[SEP]`` (``tail`` 0: the head and ``[SEP]``, as a tokenizer truncates).
    A long post's view often comes at its end ("… back to 1400's next week"); with the tail
    kept, 64 tokens read the StockTwits hold-out as 128 did (models/README.md, "The CPU
    path"), and batches of long posts cost half."""
    if len(ids) <= max_length:
        return ids
    return ids[: max_length - tail - 1] + ids[len(ids) - tail - 1 :]


class Scorer:
    """Scores texts with a fine-tuned sequence classifier.

    The three steps mirror a transformers pipeline: :meth:`preprocess` normalises and
    tokenises, :meth:`forward` runs length-sorted, dynamically padded batches,
    :meth:`postprocess` applies the calibration temperature. ``backend`` picks the engine:
    ``"torch"`` (fp32 on the CPU, bf16 on a GPU), ``"onnx"`` (ONNX Runtime int8, CPU only,
    built once into a cache, see :mod:`nlp.onnx_backend`) or ``"auto"`` (ONNX on the CPU
    when onnxruntime is installed, torch otherwise).
    With torch, results do not depend on how texts are grouped into calls (batches are formed
    per call after sorting, and padding is masked); with int8 ONNX they move slightly with a
    text's batch-mates (activations get one quantization scale per batch: mean |dp| 0.02 on
    StockTwits posts, ~2% of labels flip between one-by-one and batched scoring), while the
    same calls always give the same results. Repeated texts are scored once per call
    (``dedupe``; off, every text is computed: a benchmark over a repeated corpus must not
    count texts the model never saw) and served across calls from a small LRU cache
    (``cache_size``; 0 = off, so a text's score depends only on its own call).
    ``overlap_chunk`` (default: 8,192 on a GPU, 0 = off on the CPU) splits a long call into
    chunks and tokenises the next chunk in a worker thread while the model runs this one.
    """

    def __init__(
        self,
        model_dir: Path,
        device: str = "cpu",
        batch_size: int = DEFAULT_BATCH_SIZE,
        cache_size: int = 4096,
        threads: int | None = None,
        verify: bool = True,
        backend: str = "auto",
        overlap_chunk: int | None = None,
        dedupe: bool = True,
    ) -> None:
        self.model_dir = Path(model_dir)
        weights = self.model_dir / WEIGHTS_FILE
        if not weights.is_file():
            raise ModelLoadError(f"no model weights at {weights}")
        try:
            self.info = ModelInfo.read(self.model_dir)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"unreadable {META_FILE} in {self.model_dir}: {exc}") from exc
        weights_sha = self.info.weights_sha256
        if verify and weights_sha:
            actual = sha256_of(weights)
            if actual != weights_sha:
                raise ModelLoadError(
                    f"{weights} has sha256 {actual[:12]}…, expected "
                    f"{weights_sha[:12]}… (corrupt or replaced weights)"
                )
        self.backend = resolve_backend(backend, device, self.model_dir)
        self.device = device
        self.batch_size = batch_size
        self.cache_size = cache_size
        self.dedupe = dedupe
        # Overlapping tokenisation with the model pays only where the model runs elsewhere:
        # on 2 CPU cores both stages want the same cores.
        if overlap_chunk is None:
            overlap_chunk = OVERLAP_CHUNK if device.split(":")[0] != "cpu" else 0
        self.overlap_chunk = overlap_chunk
        self._cache: OrderedDict[str, Score] = OrderedDict()
        self.model_id = self.info.model_id
        try:
            if self.backend == "onnx":
                self._load_onnx(weights_sha or sha256_of(weights), threads)
            else:
                self._load_torch(device, threads)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelLoadError(f"cannot load the model in {self.model_dir}: {exc}") from exc

    def _load_torch(self, device: str, threads: int | None) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self._device = torch.device(device)
        # bf16 on a GPU is the fast path; on the CPU fp32 is both faster and exact.
        dtype = torch.bfloat16 if self._device.type == "cuda" else torch.float32
        self.model = AutoModelForSequenceClassification.from_pretrained(
            str(self.model_dir), dtype=dtype
        )
        self.model.to(self._device).eval()
        if (self.model_dir / TOKENIZER_FILE).is_file():
            self._load_fast_tokenizer()
        else:  # a model saved without tokenizer.json: transformers builds one
            self.tokenizer = AutoTokenizer.from_pretrained(str(self.model_dir))
            limit, tail = self.info.max_length, self.info.tail_tokens
            self._encode = lambda clean: [
                head_and_tail(ids, limit, tail) for ids in self.tokenizer(clean)["input_ids"]
            ]
            self._pad_id = self.tokenizer.pad_token_id

    def _load_onnx(self, weights_sha: str, threads: int | None) -> None:
        from nlp.onnx_backend import OnnxModel, ensure_int8

        self._load_fast_tokenizer()
        self._onnx = OnnxModel(
            ensure_int8(self.model_dir, weights_sha), threads or default_threads()
        )

    def _load_fast_tokenizer(self) -> None:
        # The tokenizers library alone, not transformers' wrapper: the ONNX path never
        # imports torch (a scoring process stays a few hundred MB smaller), and the bare
        # tokenizer is faster (same ids: checked on 120,000 posts). It encodes a batch on
        # all cores with the GIL released, which the overlapped GPU path relies on.
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(self.model_dir / TOKENIZER_FILE))
        # The saved file pads to a fixed length, and says with which id; batches pad themselves.
        saved_pad = (tokenizer.padding or {}).get("pad_id")
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        # encode_batch_fast (tokenizers >= 0.21) skips character offsets, which we never read.
        encode = getattr(tokenizer, "encode_batch_fast", tokenizer.encode_batch)
        # The cut is ours (head_and_tail), not the tokenizer's: with tail 0 it gives the ids
        # the tokenizer's own truncation gives (checked on 5,000 demo posts).
        tokenizer.no_truncation()
        limit, tail = self.info.max_length, self.info.tail_tokens
        self._encode = lambda clean: [head_and_tail(e.ids, limit, tail) for e in encode(clean)]
        pad = saved_pad if saved_pad is not None else tokenizer.token_to_id("[PAD]")
        self._pad_id = pad if pad is not None else 0  # masked out either way

    # ------------------------------------------------------------------ steps

    def preprocess(self, texts: Sequence[str]) -> list[list[int]]:
        """Normalise and tokenise (the fast tokenizer's batch mode, no padding yet)."""
        if self.info.emoji_words:
            return self._encode([emoji_to_words(normalize(t)) for t in texts])
        return self._encode([normalize(t) for t in texts])

    def forward(self, encoded: Sequence[Sequence[int]]) -> np.ndarray:
        """Logits (float32 array ``[n, 3]``) for token id lists, in input order.

        Texts are sorted by length so each batch pads only to its own longest text; the
        ids are laid out once in one flat array, so building a batch is a single masked
        copy rather than a Python loop over rows.
        """
        n = len(encoded)
        out = np.empty((n, len(LABELS)), dtype=np.float32)
        if n == 0:
            return out
        lengths = np.fromiter((len(e) for e in encoded), dtype=np.int64, count=n)
        order = np.argsort(lengths, kind="stable")
        sorted_lengths = lengths[order]
        flat = np.fromiter(
            itertools.chain.from_iterable(encoded[i] for i in order),
            dtype=np.int64,
            count=int(lengths.sum()),
        )
        starts = np.concatenate(([0], np.cumsum(sorted_lengths)))
        parts = []
        for lo in range(0, n, self.batch_size):
            hi = min(n, lo + self.batch_size)
            lens = sorted_lengths[lo:hi]
            width = int(lens[-1])
            mask = np.arange(width)[None, :] < lens[:, None]
            ids = np.full((hi - lo, width), self._pad_id, dtype=np.int64)
            ids[mask] = flat[starts[lo] : starts[hi]]
            parts.append(self._logits(ids, mask.astype(np.int64)))
        # The batches cover ``order`` front to back. Torch logits stay on the device until
        # every batch is queued: one copy back, and a GPU never waits for the host between
        # batches.
        if self.backend == "onnx":
            out[order] = np.concatenate(parts)
        else:
            out[order] = self._torch.cat(parts).float().cpu().numpy()
        return out

    def _logits(self, ids: np.ndarray, mask: np.ndarray) -> Any:  # ndarray (onnx) or Tensor
        if self.backend == "onnx":
            return self._onnx.logits(ids, mask)
        torch = self._torch
        with torch.inference_mode():
            return self.model(
                input_ids=torch.from_numpy(ids).to(self._device, non_blocking=True),
                attention_mask=torch.from_numpy(mask).to(self._device, non_blocking=True),
            ).logits

    def postprocess(self, logits: np.ndarray) -> list[Score]:
        """Temperature-scaled, prior-corrected softmax into :class:`Score` objects."""
        z = np.asarray(logits, dtype=np.float64) / self.info.temperature
        z = z + np.asarray(self.info.class_bias, dtype=np.float64)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        probs = z / z.sum(axis=1, keepdims=True)
        labels = probs.argmax(axis=1).tolist()
        return [
            Score(p_neg=p[0], p_neu=p[1], p_pos=p[2], label=LABELS[k], model_id=self.model_id)
            for p, k in zip(probs.tolist(), labels, strict=True)
        ]

    # ------------------------------------------------------------------ API

    @property
    def cached(self) -> int:
        """Texts whose scores the cache holds now (at most ``cache_size`` between calls)."""
        return len(self._cache)

    def score(self, texts: Sequence[str]) -> list[Score]:
        """Score many texts; the scorer forms its own batches."""
        if isinstance(texts, str):
            raise TypeError("score() takes a sequence of texts; use score_one() for one")
        if not self.dedupe:
            return self._compute([t if t is not None else "" for t in texts])
        results: list[Score | None] = [None] * len(texts)
        todo: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            key = text if text is not None else ""
            hit = self._cache.get(key) if self.cache_size else None
            if hit is not None:
                self._cache.move_to_end(key)
                results[i] = hit
            else:
                todo.setdefault(key, []).append(i)
        if todo:
            uniques = list(todo)
            scores = self._compute(uniques)
            for text, score in zip(uniques, scores, strict=True):
                for i in todo[text]:
                    results[i] = score
                if self.cache_size:
                    self._cache[text] = score
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return [r for r in results if r is not None]

    def _compute(self, texts: Sequence[str]) -> list[Score]:
        """Scores of ``texts``, each run through the model.

        With ``overlap_chunk`` set (on a GPU by default) a long list goes in chunks, and a
        worker thread normalises and tokenises the next chunk while the model runs this
        one: on a GPU the host-side work per text costs as much as the model's.
        """
        chunk = self.overlap_chunk
        if not chunk or len(texts) <= chunk:
            return self.postprocess(self.forward(self.preprocess(texts)))
        scores: list[Score] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="moodring-tokenize") as pool:
            pending = pool.submit(self.preprocess, texts[:chunk])
            for lo in range(0, len(texts), chunk):
                encoded = pending.result()
                if lo + chunk < len(texts):
                    pending = pool.submit(self.preprocess, texts[lo + chunk : lo + 2 * chunk])
                scores.extend(self.postprocess(self.forward(encoded)))
        return scores

    def score_one(self, text: str) -> Score:
        """Score one text."""
        return self.score([text])[0]


def default_threads() -> int:
    """Intra-op threads: every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_backend(backend: str, device: str, model_dir: Path) -> str:
    """The backend that ``backend`` means on ``device``: ``"torch"`` or ``"onnx"``.

    ``auto`` picks ONNX Runtime int8 on the CPU when onnxruntime is installed and the model
    ships a fast-tokenizer file, torch otherwise; a GPU always runs torch.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
    on_cpu = device.split(":")[0] == "cpu"
    if backend == "onnx" and not on_cpu:
        raise ValueError(f"the onnx backend runs on the CPU only, not on {device!r}")
    if backend != "auto":
        return backend
    from nlp.onnx_backend import onnx_available

    if on_cpu and onnx_available() and (model_dir / TOKENIZER_FILE).is_file():
        return "onnx"
    return "torch"
