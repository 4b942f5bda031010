"""Suite cases never reach training: the near-duplicate guard and the template generator."""

from __future__ import annotations

from pathlib import Path

import pytest

from nlp.neardup import NearDuplicateIndex, shingles
from nlp.stance_templates import BEARISH, BULLISH, NEUTRAL, generate
from nlp.suite import load_suite

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def suite_index() -> NearDuplicateIndex:
    return NearDuplicateIndex(c.text for c in load_suite())


def test_shingles_read_emoji_as_words_and_ignore_case_and_repeats() -> None:
    assert shingles("🚀🚀🚀") == shingles("🚀🚀") == {"rocket", "rocket rocket"}
    assert shingles("Bullish AF") == shingles("bullish af")
    assert shingles("") == set()


def test_near_copies_of_a_suite_case_are_caught(suite_index: NearDuplicateIndex) -> None:
    assert suite_index.match("bullish af") is not None
    assert suite_index.match("Bullish AF!") is not None
    assert suite_index.match("🚀🚀🚀") is not None  # the suite has "🚀🚀"
    assert suite_index.match("shorts liquidated 🔥🔥") is not None
    assert suite_index.match("quarterly earnings call moved to Tuesday afternoon") is None


def test_no_template_sentence_the_recipe_trains_on_is_near_a_suite_case(
    suite_index: NearDuplicateIndex,
) -> None:
    rows = generate()
    kept, dropped = suite_index.filter(rows)
    assert len(kept) > 3000 and dropped < 20
    assert all(suite_index.match(text) is None for text, _ in kept)
    assert {label for _, label in kept} == {BEARISH, NEUTRAL, BULLISH}


def test_the_template_generator_is_deterministic() -> None:
    assert generate(seed=3, n=500) == generate(seed=3, n=500)
    assert generate(seed=3, n=500) != generate(seed=4, n=500)


def test_stance_words_add_to_the_templates_and_leave_the_rest_as_it_was() -> None:
    """``stance_words`` appends the stance said alone; without it an older recipe's
    templates come out as they did."""
    plain = generate(seed=3, n=1000)
    more = generate(seed=3, n=1000, stance_words=0.2)
    assert more[: len(plain)] == plain
    extra = more[len(plain) :]
    assert 150 <= len(extra) <= 200
    assert {label for _, label in extra} == {BULLISH, BEARISH}
    for text, label in extra:
        side = "bullish" if label == BULLISH else "bearish"
        other = "bearish" if label == BULLISH else "bullish"
        assert other not in text.lower(), text
        if side[:4] in text.lower():
            assert side in text.lower(), text


@pytest.mark.skipif(not SHARED.is_dir(), reason="the training corpora live in ../shared/data")
def test_the_recipes_training_set_holds_no_near_duplicate_of_a_suite_case(
    suite_index: NearDuplicateIndex,
) -> None:
    import argparse

    from nlp.stance_training import build_training_set

    args = argparse.Namespace(
        seed=21, data=str(SHARED), swap=0.3, bearish_repeat=2, fin_repeat=1, st_repeat=1,
        fin_polar_repeat=2, general=100_000, templates=4000, limit=0, pseudo=100_000,
        stance_words=0.0, cashtag_drop=0.5,
    )  # fmt: skip
    rows, counts = build_training_set(args, [c.text for c in load_suite()])
    assert len(rows) > 40_000
    assert sum(v for k, v in counts.items() if k.endswith("_dropped_near_suite")) >= 1
    assert all(suite_index.match(text) is None for text, _, _ in rows)
    # The self-training posts are unlabelled: the teacher gives their targets.
    pseudo = [label for _, label, source in rows if source == "pseudo"]
    assert counts["pseudo"] == len(pseudo) > 8000
    assert set(pseudo) == {""}
