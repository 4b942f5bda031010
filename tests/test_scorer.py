"""The shipped sentiment scorer on edge cases, its quality, determinism and the ONNX backend."""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from nlp.bench import distinct_texts
from nlp.errors import ModelLoadError
from nlp.evaluate import evaluate_file
from nlp.onnx_backend import CACHE_ENV, SHA_FILE, int8_key, int8_path, is_cached
from nlp.scorer import LABELS, ModelInfo, Scorer, resolve_backend

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "sentiment"
SAMPLE = ROOT / "tests" / "data" / "sentiment_sample.tsv"
DEMO = ROOT / "bot" / "demo_data" / "stocktwits_btc_eth_2022.csv"


@pytest.fixture(scope="module")
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One ONNX cache for the whole session, never the user's ~/.cache."""
    root = tmp_path_factory.getbasetemp() / "moodring-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(CACHE_ENV, str(root))
        yield root


@pytest.fixture(scope="module")
def scorer(onnx_cache: Path) -> Scorer:
    return Scorer(MODEL)  # the default: auto, which is ONNX int8 on this CPU


@pytest.fixture(scope="module")
def torch_scorer() -> Iterator[Scorer]:
    import torch

    # One thread: two OpenMP threads on a busy 2-core box took 0.5 s per text instead of 16 ms.
    before = torch.get_num_threads()
    yield Scorer(MODEL, backend="torch", cache_size=0, threads=1)
    torch.set_num_threads(before)


def assert_valid(score) -> None:
    probs = (score.p_neg, score.p_neu, score.p_pos)
    assert all(0.0 <= p <= 1.0 for p in probs)
    assert math.isclose(sum(probs), 1.0, abs_tol=1e-6)
    assert score.label == LABELS[probs.index(max(probs))]
    assert score.model_id == "moodring-minilm-l6-stance-v3.2"


def test_auto_is_onnx_on_cpu(scorer: Scorer, onnx_cache: Path) -> None:
    assert scorer.backend == "onnx"
    assert is_cached(int8_path(int8_key(MODEL, ModelInfo.read(MODEL).weights_sha256), onnx_cache))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "🚀🚀🚀🌕",
        "https://example.com/a/very/long/path?query=1",
        "$BTC 暴涨 🚀 биткоин растёт، السوق صاعد to the moon",
        "Ω" * 10_000,
    ],
    ids=["empty", "emoji-only", "url-only", "mixed-scripts", "10k-chars"],
)
def test_edge_cases_give_valid_scores(scorer: Scorer, text: str) -> None:
    assert_valid(scorer.score_one(text))


def test_a_url_is_scored_as_the_masked_link(scorer: Scorer) -> None:
    assert scorer.score_one("https://example.com/x?y=1") == scorer.score_one("http")


def test_text_past_the_token_limit_keeps_its_head_and_tail(scorer: Scorer) -> None:
    """A long text is cut to the model's 64 tokens: its head and its last 24 tokens, so
    what it says in the middle is dropped and how it ends is read."""
    info = scorer.info
    assert (info.max_length, info.tail_tokens) == (64, 24)
    # ~2.5 kB, far past the limit, and under the normaliser's 4,000 characters.
    middle = "bitcoin is going to crash hard " * 80
    ending = " but honestly I love it, buying more"
    long = "gm all. " + middle + ending
    (ids,) = scorer.preprocess([long])
    (whole,) = scorer.preprocess(["gm all. " + middle])
    (end_ids,) = scorer.preprocess([ending])
    assert len(ids) == 64 and ids[:39] == whole[:39]
    assert ids[-(len(end_ids) - 1) :] == end_ids[1:]  # the ending, then [SEP]
    in_the_middle = "gm all. " + middle[:1000] + "wen moon " + middle[1000:] + ending
    assert scorer.score_one(long) == scorer.score_one(in_the_middle)
    assert scorer.score_one(long) != scorer.score_one("gm all. " + middle)
    # ~12 kB, past the normaliser's 4,000 characters too: it keeps the head and the ending.
    huge = "bitcoin is going to crash hard " * 400
    (huge_ids,) = scorer.preprocess([huge + ending])
    (huge_head,) = scorer.preprocess([huge])
    assert huge_ids[:39] == huge_head[:39] and huge_ids[-(len(end_ids) - 1) :] == end_ids[1:]
    assert scorer.score_one(huge + ending) == scorer.score_one(middle + ending)
    assert scorer.score_one(huge + ending) != scorer.score_one(huge)


def test_head_and_tail_cuts_only_long_texts() -> None:
    from nlp.scorer import head_and_tail

    ids = [101, *range(1, 100), 102]
    assert head_and_tail(ids[:64], 64, 24) == ids[:64]
    cut = head_and_tail(ids, 64, 24)
    assert len(cut) == 64 and cut[:39] == ids[:39] and cut[39:] == ids[-25:]
    assert head_and_tail(ids, 64, 0) == [*ids[:63], 102]


@pytest.mark.parametrize(
    ("truncate", "match"),
    [
        ({"max_length": 64, "tail": 60}, "tail must be"),  # no room for a head
        ({"max_length": 64, "tail": -1}, "tail must be"),
        ({"tail": 24}, "expected"),  # malformed
        ([64, 24], "expected"),
        ("64", "expected"),
    ],
)
def test_a_bad_truncation_is_refused_clearly(truncate: object, match: str, tmp_path: Path) -> None:
    import json

    model = tmp_path / "m"
    shutil.copytree(MODEL, model)
    meta = json.loads((model / "moodring.json").read_text())
    (model / "moodring.json").write_text(json.dumps(meta | {"truncate": truncate}))
    with pytest.raises(ModelLoadError, match=match):
        Scorer(model, verify=False)


def test_score_one_matches_score(scorer: Scorer) -> None:
    text = "ETH looks strong today, bullish"
    assert scorer.score_one(text) == scorer.score([text])[0]
    assert scorer.score_one(text).label == "positive"


def test_score_rejects_a_bare_string(scorer: Scorer) -> None:
    with pytest.raises(TypeError):
        scorer.score("one text")


def test_ten_thousand_texts_with_the_cache(scorer: Scorer) -> None:
    distinct = distinct_texts(DEMO, 50)
    texts = [distinct[(i * 7) % 50] for i in range(10_000)]
    scores = scorer.score(texts)
    assert len(scores) == 10_000
    first = {}
    for text, score in zip(texts, scores, strict=True):
        assert first.setdefault(text, score) == score
    assert len(first) == 50
    assert all(s == scorer.score_one(t) for t, s in first.items())


def test_torch_results_do_not_depend_on_batching(torch_scorer: Scorer) -> None:
    texts = distinct_texts(DEMO, 300)
    together = torch_scorer.score(texts)
    for text, score in zip(texts, together, strict=True):
        alone = torch_scorer.score_one(text)
        assert abs(alone.p_neg - score.p_neg) < 1e-4
        assert abs(alone.p_pos - score.p_pos) < 1e-4
        assert_valid(score)


def test_onnx_results_depend_on_batching_only_a_little(onnx_cache: Path) -> None:
    # Dynamic int8 quantises activations with one scale per batch tensor, so a text's
    # probabilities move slightly with its batch-mates (measured: mean 0.02, max 0.13).
    uncached = Scorer(MODEL, cache_size=0)
    texts = distinct_texts(DEMO, 300)
    together = uncached.score(texts)
    alone = [uncached.score_one(t) for t in texts]
    deltas = [
        abs(a.p_pos - b.p_pos) + abs(a.p_neg - b.p_neg)
        for a, b in zip(alone, together, strict=True)
    ]
    assert sum(deltas) / len(deltas) < 0.06
    assert sum(a.label == b.label for a, b in zip(alone, together, strict=True)) / len(texts) >= 0.9
    assert all(math.isclose(s.p_neg + s.p_neu + s.p_pos, 1.0) for s in together)


def test_scores_are_deterministic(scorer: Scorer) -> None:
    texts = distinct_texts(DEMO, 40)
    again = Scorer(MODEL, cache_size=0)
    assert again.score(texts) == again.score(texts) == Scorer(MODEL, cache_size=0).score(texts)


def test_quality_on_labelled_sample(scorer: Scorer, torch_scorer: Scorer) -> None:
    for s in (scorer, torch_scorer):
        result = evaluate_file(SAMPLE, s)
        assert result["n"] == 60
        assert result["macro_recall"] >= 0.6


def test_onnx_agrees_with_torch(scorer: Scorer, torch_scorer: Scorer) -> None:
    texts = distinct_texts(DEMO, 200)
    onnx_labels = [s.label for s in scorer.score(texts)]
    torch_labels = [s.label for s in torch_scorer.score(texts)]
    agree = sum(a == b for a, b in zip(onnx_labels, torch_labels, strict=True)) / len(texts)
    assert agree >= 0.95


def test_cache_check_detects_a_tampered_int8_file(scorer: Scorer, tmp_path: Path) -> None:
    cached = int8_path(int8_key(MODEL, ModelInfo.read(MODEL).weights_sha256))
    copy = tmp_path / cached.name
    shutil.copy(cached, copy)
    shutil.copy(cached.with_name(SHA_FILE), tmp_path / SHA_FILE)
    assert is_cached(copy)
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    assert not is_cached(copy)


def test_corrupt_weights_fail_the_sha256_check(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(MODEL, model)
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    for i in range(1000, 1010):
        data[-i] ^= 0x5A
    weights.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="sha256"):
        Scorer(model)


def test_missing_model_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError):
        Scorer(tmp_path / "nowhere")


def test_backend_choice() -> None:
    assert resolve_backend("torch", "cpu", MODEL) == "torch"
    assert resolve_backend("auto", "cuda", MODEL) == "torch"
    with pytest.raises(ValueError, match="CPU only"):
        resolve_backend("onnx", "cuda", MODEL)
    with pytest.raises(ValueError, match="backend"):
        resolve_backend("tensorrt", "cpu", MODEL)


def test_the_pipelines_scores_depend_only_on_their_own_call(onnx_cache: Path) -> None:
    """The pipeline's scorer keeps nothing across calls: with int8, a repeated text served
    from memory would score as in the chunk that first held it, so the same message could
    score differently with which worker took which chunk, or across a restart."""
    texts = distinct_texts(DEMO, 120)
    first, second = texts[:60], [*texts[:30], *texts[60:]]
    fresh = Scorer(MODEL, cache_size=0).score(second)
    worked = Scorer(MODEL, cache_size=0)
    worked.score(first)
    assert worked.score(second) == fresh
    assert worked.cached == 0
    # With a cache, the repeats come back as the first call scored them (with other
    # batch-mates): what the pipeline must not do.
    cached = Scorer(MODEL)
    cached.score(first)
    repeats = cached.score(second)[:30]
    assert repeats == Scorer(MODEL, cache_size=0).score(first)[:30] != fresh[:30]


def test_dedupe_off_means_every_repeat_goes_through_the_model(tiny_model_dir: Path) -> None:
    """A benchmark over a repeated corpus runs with dedupe and cache off: then nothing may be
    skipped, or msgs/s would count texts the model never saw."""

    class Counting(Scorer):
        computed = 0

        def forward(self, encoded):  # type: ignore[no-untyped-def]
            Counting.computed += len(encoded)
            return super().forward(encoded)

    texts = ["$BTC to the moon", "longs got rekt"] * 50
    off = Counting(tiny_model_dir, cache_size=0, dedupe=False, backend="torch")
    scores = off.score(texts)
    assert Counting.computed == 100 and len(scores) == 100
    assert scores[0].label == scores[2].label and scores[1].label == scores[3].label
    Counting.computed = 0
    on = Counting(tiny_model_dir, cache_size=16, backend="torch")
    cached = on.score(texts)
    assert Counting.computed == 2  # live: once per distinct text
    assert [c.p_pos for c in cached] == pytest.approx([s.p_pos for s in scores], abs=1e-5)


def test_the_bare_tokenizer_gives_the_ids_transformers_gives(torch_scorer: Scorer) -> None:
    """Both backends tokenise with the bare `tokenizers` library; the model was trained
    through transformers' tokenizer, so the ids must be the same, truncation included."""
    from transformers import AutoTokenizer

    from nlp.normalize import emoji_to_words, normalize
    from nlp.scorer import head_and_tail

    reference = AutoTokenizer.from_pretrained(str(MODEL))
    texts = [*distinct_texts(DEMO, 2000), "", "🚀🚀🚀", "Ω" * 10_000, "$BTC 暴涨 биткоин"]
    # The stance model reads emoji as words, in training and here alike.
    assert torch_scorer.info.emoji_words
    model_texts = [emoji_to_words(normalize(t)) for t in texts]
    # Long texts keep their head and tail (nlp.scorer.head_and_tail), the same cut as ONNX's.
    info = torch_scorer.info
    expected = [
        head_and_tail(ids, info.max_length, info.tail_tokens)
        for ids in reference(model_texts)["input_ids"]
    ]
    assert torch_scorer.preprocess(texts) == expected


def test_overlapped_chunks_give_the_same_scores_in_order(tiny_model_dir: Path) -> None:
    """On a GPU long lists are tokenised a chunk ahead of the model; chunking must change
    neither the scores nor their order (checked here with torch on the CPU, where batch
    composition does not change results)."""
    texts = [*distinct_texts(DEMO, 300), "", "🚀", "x" * 5000]
    plain = Scorer(tiny_model_dir, backend="torch", cache_size=0, overlap_chunk=0)
    chunked = Scorer(tiny_model_dir, backend="torch", cache_size=0, overlap_chunk=64)
    assert chunked.overlap_chunk == 64 and plain.overlap_chunk == 0
    a, b = plain.score(texts), chunked.score(texts)
    assert len(b) == len(texts)
    assert [s.label for s in a] == [s.label for s in b]
    assert [s.p_pos for s in a] == pytest.approx([s.p_pos for s in b], abs=1e-5)
    assert [s.p_neg for s in a] == pytest.approx([s.p_neg for s in b], abs=1e-5)
    # and with the cache on, the distinct texts go through the same chunked path
    cached = Scorer(tiny_model_dir, backend="torch", cache_size=4096, overlap_chunk=64)
    c = cached.score(texts + texts)
    assert [s.label for s in c] == [s.label for s in a] * 2


def test_overlap_is_on_by_default_only_off_the_cpu() -> None:
    assert Scorer(MODEL, backend="torch", verify=False).overlap_chunk == 0
