"""The text normaliser: its fast paths give exactly what the plain per-character rule gives."""

from __future__ import annotations

import csv
import re
import unicodedata
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from nlp.normalize import MAX_CHARS, TAIL_CHARS, normalize

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "bot" / "demo_data" / "stocktwits_btc_eth_2022.csv"

_URL = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION = re.compile(r"(?<![\w$])@\w{1,32}")


def reference(text: str | None, max_chars: int = MAX_CHARS) -> str:
    """The rule written plainly, one character at a time (the training data went through it)."""
    if not text:
        return ""
    if len(text) > max_chars * 2:
        text = text[:max_chars] + " " + text[-max_chars:]
    text = unicodedata.normalize("NFC", text)
    text = "".join(
        ch
        for ch in text
        if ch in {"\u200d", "\ufe0f"} or ch in "\n\t" or unicodedata.category(ch)[0] != "C"
    )
    text = _URL.sub("http", text)
    text = _MENTION.sub("@user", text)
    text = re.sub(r"\s+", " ", text).strip()
    if len(text) <= max_chars:
        return text
    tail = min(TAIL_CHARS, max_chars // 4)
    return text[: max_chars - tail - 1].rstrip() + " " + text[-tail:].lstrip()


# Characters that exercise every branch: ASCII controls, Unicode whitespace, format
# characters kept and dropped, combining marks (NFC), surrogates, private use, unassigned.
TRICKY = (
    "\x00\x07\x0b\x0c\r\n\t\x1f\x7f\x85\xa0\u1680\u2028\u2029\u3000"
    "\u200b\u200d\ufe0f\u202e\ufeff\u0301\ud800\ue000\U000e0001\u0378"
)
pieces = st.one_of(
    st.characters(),
    st.sampled_from(list(TRICKY)),
    st.sampled_from(["@", "$", "http://", "WWW.", "e", " ", "🚀", "@user_1"]),
)
texts = st.lists(pieces, max_size=40).map("".join)


@settings(max_examples=3000, deadline=None)
@given(texts)
def test_fast_paths_match_the_plain_rule(text: str) -> None:
    assert normalize(text) == reference(text)
    # A small limit exercises the head-and-tail cut on these texts too.
    assert normalize(text, max_chars=12) == reference(text, max_chars=12)


def test_every_demo_post_matches_the_plain_rule() -> None:
    with open(DEMO, newline="", encoding="utf-8") as fh:
        posts = [row["text"] for row in csv.DictReader(fh)]
    assert len(posts) > 10_000
    assert [normalize(p) for p in posts] == [reference(p) for p in posts]


def test_what_the_rule_does() -> None:
    assert normalize(None) == normalize("") == ""
    assert normalize("  hi\r\n\x00there  ") == "hi there"
    assert normalize("@Bob see https://x.co/a?b=1 $BTC") == "@user see http $BTC"
    assert normalize("mail a@b.c") == "mail a@b.c"  # not a mention
    assert normalize("cafe\u0301\u200b 👨\u200d👩\u200d👧") == "café 👨\u200d👩\u200d👧"
    assert normalize("a\u00a0\u3000b") == "a b"
    assert len(normalize("x" * 50_000)) == MAX_CHARS


def test_a_long_text_keeps_its_ending() -> None:
    # The scorer reads a long post's head and its ending; the cut here must keep both.
    for filler in (5_000, 50_000):
        text = "$BTC thread: " + "blah " * (filler // 5) + "Conclusion: very bearish, sold."
        out = normalize(text)
        assert len(out) <= MAX_CHARS
        assert out.startswith("$BTC thread: blah")
        assert out.endswith("Conclusion: very bearish, sold.")
    assert normalize("y" * 3_000, max_chars=100) == "y" * 74 + " " + "y" * 25


def test_emoji_are_spelled_as_words_for_models_that_ask() -> None:
    from nlp.normalize import emoji_to_words

    assert emoji_to_words("🚀🚀") == "rocket rocket"
    assert emoji_to_words("$BTC 📉") == "$BTC chart decreasing"
    assert emoji_to_words("💎🙌 holding") == "gem stone raising hands holding"
    assert emoji_to_words("plain ascii stays") == "plain ascii stays"
    assert emoji_to_words("👍🏽 ok") == "thumbs up medium skin tone ok"
    assert emoji_to_words("") == ""
