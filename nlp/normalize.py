"""Text normalisation for social posts, matching how the training tweets were masked."""

from __future__ import annotations

import re
import unicodedata

# The SemEval tweets we train on have every mention masked as "@user" and every link as
# "http"; scoring must see text in the same shape or the model meets unseen tokens.
_URL_RE = re.compile(r"(?:https?://|www\.)\S+", re.IGNORECASE)
_MENTION_RE = re.compile(r"(?<![\w$])@\w{1,32}")
# Control and format characters (zero-width joiners excepted: they glue emoji together).
_KEEP_FORMAT = {"\u200d", "\ufe0f"}
#: ASCII control characters (category Cc) to delete, newline and tab excepted.
_ASCII_CONTROLS = {c: None for c in [*range(0x20), 0x7F] if chr(c) not in "\n\t"}

#: Longest text, in characters, that is kept; a tweet is 280, a Discord post 4,000. The model
#: reads at most a few hundred tokens anyway, so cutting here bounds work on hostile input.
MAX_CHARS = 4000
#: Of a longer text, how many of its last characters are kept after its head. The scorer
#: reads a long post's head and its ending (``nlp.scorer.head_and_tail``), where a poster
#: often states their view, so the cut here must not drop the ending first.
TAIL_CHARS = 1000


def normalize(text: str | None, max_chars: int = MAX_CHARS) -> str:
    """Return ``text`` cleaned for the sentiment model.

    Mentions become ``@user``, links become ``http``; cashtags, emoji and casing are kept.
    Control characters are dropped, whitespace is collapsed, and a longer result keeps its
    head and its last ``TAIL_CHARS`` characters (a quarter of ``max_chars`` at most), joined
    by a space, within ``max_chars``. ``None`` and empty input give ``""``.
    """
    if not text:
        return ""
    if len(text) > max_chars * 2:
        text = text[:max_chars] + " " + text[-max_chars:]
    # Fast paths give the same result as the general one: printable text has no character
    # of category C at all, and ASCII text is already NFC with only ASCII controls to drop.
    # Scoring on a GPU is bound by this per-text work, so it matters.
    if text.isascii():
        if not text.isprintable():
            text = text.translate(_ASCII_CONTROLS)
    else:
        text = unicodedata.normalize("NFC", text)
        if not text.isprintable():
            text = "".join(
                ch
                for ch in text
                if ch in _KEEP_FORMAT or ch in "\n\t" or unicodedata.category(ch)[0] != "C"
            )
    text = _URL_RE.sub("http", text)
    if "@" in text:
        text = _MENTION_RE.sub("@user", text)
    # str.split() splits on exactly what ``\s`` matches (str.isspace), and is faster.
    text = " ".join(text.split())
    return _head_and_tail(text, max_chars)


def _head_and_tail(text: str, max_chars: int) -> str:
    """``text`` within ``max_chars``: its head, a space and its last characters."""
    if len(text) <= max_chars:
        return text
    tail = min(TAIL_CHARS, max_chars // 4)
    return text[: max_chars - tail - 1].rstrip() + " " + text[-tail:].lstrip()


def emoji_to_words(text: str) -> str:
    """Spell each emoji as its English name ("🚀" → "rocket"), for models that read them so.

    The MiniLM vocabulary has no emoji: every one becomes ``[UNK]``, and a run of them a single
    ``[UNK]``, so "🚀🚀" and "📉" would look alike. Their names are ordinary words the encoder
    knows. Models whose ``moodring.json`` asks for it (``"emoji_words": true``) get this step
    after :func:`normalize`, in training and at run time alike.
    """
    if text.isascii():
        return text
    import emoji  # imported here: scoring ASCII text never needs it

    spelled = emoji.replace_emoji(text, replace=_emoji_name)
    return " ".join(spelled.split())


def _emoji_name(chars: str, data: dict) -> str:
    name = data.get("en", "").strip(":").replace("_", " ").replace("-", " ")
    return f" {name} " if name else " "
