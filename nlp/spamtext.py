"""Pure text helpers for spam marking: canonical form, fingerprints, shingles and shill patterns."""

from __future__ import annotations

import hashlib
import re

# Texts are cut before any work: spam checks need the gist, and hostile input stays cheap.
_MAX_CHARS = 4000

# Links in raw form, and the bare "http" that nlp.normalize leaves in their place. A bare
# domain is tried only from the start of its run of word characters and hyphens (leading
# hyphens are cut with it: no token nor letter either): tried from every "\b" inside
# "a-a-a-…", it rescanned the run each time, quadratic in its length.
_URL_RE = re.compile(
    r"(?:https?://|www\.)\S+|(?<![\w-])-*+\b[\w-]++\.(?:com|net|io|me|gg|xyz|org)/\S*|"
    r"\bhttps?\b",
    re.I,
)
# Mentions, raw ("@satoshi") or normalised ("@user").
_MENTION_RE = re.compile(r"(?<![\w$])@\w{1,32}")
# Cashtags keep their "$" in the canonical form; StockTwits' ".X" suffix is dropped.
_CASHTAG_RE = re.compile(r"(?<!\w)\$([A-Za-z]{2,10})(?:\.[Xx])?(?![A-Za-z0-9_])")
# A canonical token: a kept cashtag, or a run of letters (any script; digits and "_" excluded).
_TOKEN_RE = re.compile(r"\$[a-z]{2,10}\b|[^\W\d_]+")
_LETTER_RE = re.compile(r"[^\W\d_]")


def _clip(text: str | None) -> str:
    return (text or "")[:_MAX_CHARS]


def _hash64(data: str) -> int:
    # blake2b, not hash(): Python salts str hashes per process, and marks must be reproducible.
    return int.from_bytes(hashlib.blake2b(data.encode("utf-8"), digest_size=8).digest(), "big")


def tokens(text: str | None) -> list[str]:
    """Return the canonical tokens of ``text`` (see :func:`canonical`)."""
    text = _URL_RE.sub(" ", _clip(text))
    text = _MENTION_RE.sub(" ", text)
    text = _CASHTAG_RE.sub(lambda m: f" ${m.group(1)} ", text)
    return _TOKEN_RE.findall(text.lower())


def canonical(text: str | None) -> str:
    """Return the form of ``text`` that duplicate checks compare.

    Lower-cased; links, mentions, digits, punctuation and emoji dropped; cashtags kept as
    ``$btc`` (without ``.X``); whitespace collapsed. ``"GM $BTC.X 🚀 http://x.co"`` and
    ``"gm  $btc"`` share one canonical form, ``"gm $btc"``.
    """
    return " ".join(tokens(text))


def _words(text: str | list[str] | None) -> list[str]:
    # Callers that already hold the tokens pass them, so a text is tokenised once.
    return text if isinstance(text, list) else tokens(text)


def fingerprint(text: str | list[str] | None) -> str:
    """Return a stable 16-hex-digit hash of the canonical form of ``text``.

    Posts that differ only in links, mentions, numbers, casing, punctuation or emoji share it.
    ``text`` may also be its :func:`tokens`.
    """
    joined = " ".join(_words(text))
    return hashlib.blake2b(joined.encode("utf-8"), digest_size=8).hexdigest()


def shingles(text: str | list[str] | None, k: int = 3) -> frozenset[int]:
    """Return the set of hashed ``k``-word shingles of the canonical form of ``text``.

    ``text`` may also be its :func:`tokens`. A text shorter than ``k`` words gives one
    shingle of all its words; an empty one gives the empty set. Hashes are stable across
    processes.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    words = _words(text)
    if not words:
        return frozenset()
    if len(words) <= k:
        return frozenset({_hash64(" ".join(words))})
    return frozenset(_hash64(" ".join(words[i : i + k])) for i in range(len(words) - k + 1))


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    """Return the Jaccard similarity of two shingle sets (shared / all), 0.0 when both are empty."""
    if not a and not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def is_link_only(text: str | None) -> bool:
    """Return whether ``text`` holds nothing but links, mentions, cashtags, numbers and emoji.

    Empty or blank text gives ``False``: there is nothing to judge.
    """
    text = _clip(text)
    if not text.strip():
        return False
    rest = _CASHTAG_RE.sub(" ", _MENTION_RE.sub(" ", _URL_RE.sub(" ", text)))
    return _LETTER_RE.search(rest) is None


def _both(first: str, second: str) -> str:
    # Both patterns anywhere in the text, in either order.
    return rf"\A(?=.*?(?:{first}))(?=.*?(?:{second}))"


# Calls to act that turn talk about an airdrop or giveaway into an advert for one. A bare
# link is not one: news headlines about airdrops carry links too.
_CTA = (
    r"\b(?:claim (?:now|here|your)|particip\w*|register|sign\s?up|grab|hurry|don'?t miss|"
    r"tag \d* ?friends?|retweet|rt|follow|winners?|tak(?:e|es|ing) part|"
    r"(?:is|now) live|live now)\b|"
    r"@\w+(?:\W+@\w+){2}"
)
_COINS = (
    r"#?(?:crypto|coins?|tokens?|bitcoins?|btc|eth|ethereum|doge|usdt|bnb|sats|nfts?|\$[a-z]{2,10})"
)
# Praise of a "project" followed by three tagged accounts: a bounty hunter's entry post. The
# first "project" is the only start tried (atomic group): tags after a later one come after
# it too, and scanning on from every "project" was quadratic.
_BOUNTY_ENTRY = r"\A(?>.*?\b(?:project|community)\b).*?@\w+(?:\W+@\w+){2}"

#: (reason, pattern) pairs tried in order on the lower-cased text with its links cut out; the
#: first that matches names the shill. Keywords inside a link ("/what-is-an-airdrop/") do not
#: count. Patterns are lower-case: matching lowered text is much faster than IGNORECASE.
SHILL_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.DOTALL))
    for reason, pattern in (
        ("airdrop", r"#airdrops?\b|#bount(?:y|ies)\b|" + _both(r"\bair\s?drops?\b", _CTA)),
        ("airdrop", _BOUNTY_ENTRY),
        ("giveaway", r"#\w*giveaway|" + _both(r"\bgive\s?-?aways?\b|\bgiving away\b", _CTA)),
        (
            "giveaway",
            r"\b(?:giving away|distribut\w+|send(?:ing)? out)\s+(?:\S+\s+){0,3}?"
            r"[\d,.o]+k?\s*" + _COINS + r"\b|"
            # A number runs to the end of its run of [\d,.o] (no coin starts with those), so
            # only the first "\b\d" of a run is tried: each one of "0.0.0.…" was quadratic.
            r"(?<![\d,.o])(?>[\d,.o]*?\b\d)[\d,.o]*+k?\s*"
            + _COINS
            + r"\b.{0,40}?\b(?:will be )?(?:distributed|given away)\b",
        ),
        (
            "referral",
            r"\breferr?al\s*(?:code|link|id|bonus)\b|\bref\s*(?:code|link)\b|\binvite\s*code\b|"
            r"\buse my (?:code|link|referral)\b|\bsign\s?up (?:with|using|through|via) my\b|"
            r"\b(?:welcome|sign\s?-?up) (?:bonus|gift)\b|\breferral:|"
            r"\b(?:with|via|tap|click|use) my (?:link|code|username)\b|\bwith this link\b|"
            r"\bjoin me playing\b|#affiliate\w*",
        ),
        (
            "pump_group",
            r"\bpump\s*(?:groups?|signals?|channels?|chats?|rooms?)\b|"
            r"#\w+pumps?\b|#pump(?:ed|group|signals?)\b|"
            r"\b(?:vip|premium|free|accurate)\s+(?:trading\s+)?signals?\b|"
            r"\bsignals?\s+(?:groups?|channels?)\b|\bwinning chat\b|"
            r"\bjoin\b.{0,60}?\b(?:telegram|discord|whatsapp|chat room|trading (?:group|chat))\b",
        ),
        (
            "dm_me",
            r"\b(?:dm|pm|inbox|message|whatsapp|telegram)\s+me\b|\bdm\s+(?:for|now|us)\b|"
            r"\bsend (?:me )?an? \W{0,4}(?:dm|pm|message)\b|\binterested,?\s+(?:dm|pm)\b",
        ),
        (
            "free_crypto",
            r"#free(?:bitcoin|crypto|btc|eth|nft|doge|mining)\w*|"
            r"\bfree\s+(?:cloud\s+)?mining\b|"
            # "carbon free bitcoin", "fee-free crypto": free of something, not free coins.
            r"\bfree(?<!carbon free)(?<!-free)(?<!fee free)(?<!tax free)(?<!risk free)\s+"
            r"(?:\$[a-z]{2,10}\s+|[\d,.]+k?\s*)?" + _COINS + r"\b|"
            r"\bdouble your\s+" + _COINS + r"|\bguaranteed\s+(?:profits?|returns?|income|roi)\b|"
            r"\broi\s*\d+.{0,20}\b(?:daily|weekly)\b|"
            # Possessive spaces: "\s*(?:…)?\s*" split a long run of spaces every way there is.
            r"\bearn\s+\$?[\d,.]+k?\+?\s*+(?:(?:\$|usd|usdt|" + _COINS + r")\s*+)?"
            r"(?:daily|per day|a day|every day|weekly)\b",
        ),
        (
            "claim",
            r"\bclaim\s+(?:free|daily|every\s+\d*|code)\b|"
            r"\bclaim\s+your\s+(?:free\s+)?(?:rewards?|bonus|prize|airdrop|" + _COINS + r")\b",
        ),
        (
            "wallet_connect",
            r"\b(?:connect|sync|validate|verify|rectify|unlock)\s+your\s+(?:\w+\s+)?wallets?\b|"
            # "never enter your seed phrase" is the warning, not the phish.
            r"\b(?:enter|import|submit)(?<!never enter)(?<!not enter)(?<!n't enter)\s+your\s+"
            r"(?:seed|recovery|secret)\s+phrase\b",
        ),
        (
            "presale",
            r"#presale\b|" + _both(r"\bpre-?sale\b", r"\b(?:live|now|whitelist|join|launch\w*)\b"),
        ),
    )
)

#: (reason, pattern) pairs tried on each link of the text, before :data:`SHILL_PATTERNS`.
LINK_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (reason, re.compile(pattern, re.IGNORECASE))
    for reason, pattern in (
        ("referral", r"[?&](?:ref|referral|ref_?id|ref_?code|invite_?code|inviter_?id)=|/ref/"),
        ("invite_link", r"\b(?:t\.me|telegram\.me|chat\.whatsapp\.com|discord\.gg)/"),
    )
)


def shill_reason(text: str | None) -> str | None:
    """Return why ``text`` reads as a shill ("airdrop", "referral", ...), or ``None``.

    Links are checked first against :data:`LINK_PATTERNS` (referral parameters, Telegram
    and Discord invites), then the text with its links cut out against
    :data:`SHILL_PATTERNS`; the first match names the reason. Raw text gives the most:
    normalisation masks links, so the link checks find nothing in it.
    """
    text = _clip(text)
    if not text:
        return None
    links = _URL_RE.findall(text)
    for reason, pattern in LINK_PATTERNS:
        if any(pattern.search(link) for link in links):
            return reason
    rest = _URL_RE.sub(" http ", text).lower()
    for reason, pattern in SHILL_PATTERNS:
        if pattern.search(rest):
            return reason
    return None


def text_reason(raw: str | None, norm: str) -> str | None:
    """The spam reason the text alone gives: a shill pattern in ``raw`` (links intact, else
    ``norm``), or "link_only" when the normalised ``norm`` is nothing but links and tags."""
    return shill_reason(raw or norm) or ("link_only" if is_link_only(norm) else None)
