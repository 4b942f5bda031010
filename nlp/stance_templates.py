"""Labelled trading-chat sentences built from a hand-written lexicon, for training only.

The labelled sets we have are finance headlines (TFNS), general tweets (SemEval) and
StockTwits posts tagged by their authors. None of them says, with labels, that "shorts
liquidated" is bullish or that "ngmi" is bearish. This module writes such sentences from
the stance lexicon of ``models/LABELLING.md``: phrases with an asset slot, crossed with
assets, prefixes and suffixes, under a fixed seed. It is weak supervision, kept small next
to the real data. The behaviour suite (``nlp/data/suite.tsv``) is a test and never an input:
the recipe drops every generated text that is a near-duplicate of a suite case
(:mod:`nlp.neardup`), and a test checks that none is left.
"""

from __future__ import annotations

import random

BEARISH, NEUTRAL, BULLISH = "negative", "neutral", "positive"

ASSETS = (
    "BTC", "$BTC", "bitcoin", "Bitcoin", "ETH", "$ETH", "ether", "ethereum", "SOL", "$SOL",
    "solana", "DOGE", "$DOGE", "XRP", "$XRP", "ADA", "$ADA", "LINK", "$LINK", "AVAX", "$AVAX",
    "MATIC", "DOT", "$DOT", "ATOM", "ARB", "OP", "$PEPE", "SHIB", "BNB", "$BNB", "LTC", "$TON",
    "$BTC.X", "$ETH.X", "$SOL.X", "INJ", "$SUI", "APT", "NEAR",
)  # fmt: skip

PREFIXES = ("", "", "", "", "lol ", "ngl ", "honestly ", "man ", "guys ", "yo ", "wow ", "ok ")
SUFFIXES = (
    "", "", "", "", "", " lol", " tbh", " imo", " right now", " today", " this week", " fr",
    " again", "!!", "...", " 😂",
)  # fmt: skip

# Phrases with {a} for an asset. Each line is what a trader in the channel would mean.
PHRASES: dict[str, tuple[str, ...]] = {
    BULLISH: (
        "{a} is pumping",
        "{a} ripping higher",
        "{a} is mooning",
        "{a} going to the moon",
        "lfg {a}",
        "LFG {a} 🚀",
        "super bullish on {a}",
        "{a} breaking out of the range",
        "{a} looks incredibly strong",
        "loading up on {a}",
        "{a} hit a new all time high",
        "{a} new ATH incoming",
        "buying more {a} on every dip",
        "{a} printing green candles",
        "{a} sending it",
        "{a} up 18% on the day",
        "{a} about to explode higher",
        "{a} holders eating good",
        "hodl your {a}",
        "diamond handing my {a}",
        "{a} bounced hard off support",
        "{a} reclaimed the key level",
        "{a} flying",
        "{a} chart looks beautiful",
        "wagmi {a} holders",
        "long {a}",
        "{a} squeezing higher",
        "{a} heading for price discovery",
        "{a} undervalued here",
        "accumulating {a} hand over fist",
        "{a} is the play this cycle",
        "bought a bag of {a}",
        "{a} shorts getting liquidated",
        "bears getting wrecked on {a}",
        "{a} face melter",
        "{a} parabolic move starting",
        "{a} massive green dildo",
        "{a} outperforming everything",
        "{a} strong bid under the market",
        "{a} trend reversal, up we go",
        "{a} will flip 100k",
        "{a} gigachad candle",
        "{a} bulls in charge",
        "{a} up only",
        "{a} breaking resistance",
        "so glad I bought {a}",
        "{a} is my best trade this year",
        "{a} on fire",
        "big inflows into {a}",
        "{a} demand is insane",
        "{a} rally has legs",
    ),
    BEARISH: (
        "{a} is dumping",
        "{a} crashing hard",
        "{a} tanking",
        "{a} bleeding out",
        "sold all my {a}",
        "very bearish on {a}",
        "{a} breaking down hard",
        "{a} just rugged",
        "{a} is a scam",
        "{a} heading to zero",
        "got rekt on {a}",
        "{a} down 25% on the day",
        "paper handed my {a} at the low",
        "{a} lost support",
        "get out of {a} now",
        "ngmi if you are still holding {a}",
        "{a} holders in pain",
        "{a} printing red candles",
        "{a} chart looks awful",
        "{a} capitulating",
        "{a} longs getting liquidated",
        "bulls getting wrecked on {a}",
        "short {a}",
        "shorting {a} into this bounce",
        "{a} rejected at resistance",
        "{a} lower lows again",
        "{a} is dead",
        "{a} bottom is still far away",
        "{a} overvalued garbage",
        "{a} falling knife",
        "{a} whales dumping",
        "{a} massive red candle",
        "{a} bagholders crying",
        "{a} bear market is not over",
        "{a} down only",
        "{a} lost the key level",
        "{a} dumped right after the listing",
        "{a} outflows keep growing",
        "{a} is crumbling",
        "{a} getting destroyed",
        "{a} fear is everywhere",
        "{a} sellers in full control",
        "terrible day for {a}",
        "regret buying {a}",
        "{a} wiped out my account",
        "{a} liquidation cascade",
        "{a} breaking below the range",
        "{a} sell-off accelerates",
        "{a} topped out",
        "{a} hack drained the treasury",
        "{a} delisted",
    ),
    NEUTRAL: (
        "what is {a} trading at",
        "where do I buy {a}",
        "how do I stake {a}",
        "anyone here holding {a}?",
        "when is the {a} upgrade?",
        "{a} chart for reference",
        "which wallet supports {a}",
        "how do I send {a} to my ledger",
        "{a} fees right now?",
        "what's the ticker for {a}",
        "does this exchange list {a}",
        "{a} price?",
        "is {a} proof of stake",
        "how many {a} are in circulation",
        "{a} AMA starts in an hour",
        "who made the {a} chart",
        "can I bridge {a} to base",
        "is the {a} network congested",
        "{a} sitting flat on the day",
        "{a} unchanged since yesterday",
        "{a} range bound",
        "thoughts on {a}?",
        "need a {a} explorer link",
        "any {a} news today?",
        "{a} weekly candle closes in two hours",
        "is {a} on kraken",
        "what's {a} market cap",
        "tracking {a} and a few others",
        "{a} docs are here",
        "{a} dev call notes posted",
    ),
}

# Stance said on its own, with no asset or a bare one, and with the intensifiers chat uses: a
# model that learned stance from sentences alone read "bullish" as neutral and "$SOL is pumping
# hard" as bearish. Used by ``generate(stance_words=...)``.
_STANCE_FORMS = (
    "{side}", "very {side}", "so {side}", "extremely {side}", "feeling {side}",
    "turning {side} here", "{side} as hell", "mega {side}", "{side} on {{a}}", "{{a}} {side}",
    "{pump}", "{{a}} {pump} hard", "{{a}} {pump} so hard", "{{a}} is {pump} like crazy",
    "{{a}} {rip} hard", "{way} only", "{{a}} {way} big", "{{a}} going {way} hard",
    "{{a}} {moon} hard", "{{a}} looking {side} af",
)  # fmt: skip
# Each side's words for the forms' slots: the two lists mirror each other by construction.
_STANCE_SIDES = {
    BULLISH: dict(side="bullish", pump="pumping", rip="ripping", way="up", moon="mooning"),
    BEARISH: dict(side="bearish", pump="dumping", rip="bleeding", way="down", moon="tanking"),
}
STANCE_WORDS: dict[str, tuple[str, ...]] = {
    label: tuple(form.format(**words) for form in _STANCE_FORMS)
    for label, words in _STANCE_SIDES.items()
}

# Sides of a leveraged market and what happens to them: the side that is hurt tells the move.
LONG_SIDE = ("longs", "bulls", "long positions", "leveraged longs", "dip buyers", "late longs")
SHORT_SIDE = (
    "shorts",
    "bears",
    "short positions",
    "leveraged shorts",
    "short sellers",
    "late shorts",
)
HURT = (
    "liquidated", "got liquidated", "rekt", "wiped out", "wrecked", "squeezed", "crushed",
    "in pain", "getting destroyed", "obliterated", "burned", "trapped", "blown out",
    "getting margin called", "crying", "in shambles", "nuked",
)  # fmt: skip
AMOUNTS = ("", "", " $120M", " $2B", " 300 million", " $45M", " over $1B")

NEGATED: dict[str, tuple[str, ...]] = {
    BEARISH: (
        "not bullish on {a} at all",
        "I'm not buying {a} here",
        "{a} isn't going to recover",
        "not holding {a} anymore",
        "{a} won't see new highs this year",
        "no bottom in sight for {a}",
        "{a} is not safe here",
        "can't find a reason to own {a}",
        "don't buy {a}, it's going lower",
        "{a} never recovered from the crash",
        "nobody wants {a} anymore",
        "not a dip in {a}, a collapse",
        "{a} isn't bouncing, it's dying",
        "no support left on {a}",
        "I don't see {a} surviving this",
    ),
    BULLISH: (
        "not bearish on {a} at all",
        "not selling my {a}",
        "{a} isn't going lower from here",
        "I don't think {a} breaks down",
        "{a} won't stay this cheap",
        "never selling my {a}",
        "{a} is not dead, it's coiling",
        "can't lose with {a} at this price",
        "don't sell {a} now",
        "{a} didn't even flinch at the bad news",
        "no reason to panic about {a}",
        "{a} isn't overbought yet, room to run",
        "nothing bearish about this {a} chart",
        "not worried about {a} at all",
        "{a} refuses to go down",
    ),
}

EMOJI: dict[str, tuple[str, ...]] = {
    BULLISH: (
        "🚀", "📈", "🟢", "💎", "🙌", "🌕", "🔥", "🐂", "🤑", "💰", "🥳", "🟩", "🆙", "💪",
        "🎯", "⬆️",
    ),
    BEARISH: (
        "📉", "🩸", "🔴", "🐻", "💀", "😭", "😱", "🪦", "🟥", "😰", "⬇️", "💩", "🤡", "🧻",
        "⚰️", "😵",
    ),
}  # fmt: skip

HEADLINES: dict[str, tuple[str, ...]] = {
    BULLISH: (
        "{A} ETFs record ${n}M of net inflows",
        "{A} rallies {p}% as buyers return",
        "{A} surges {p}% after upgrade",
        "{X} adds {A} trading, token jumps",
        "{A} climbs to a three-month high",
        "Fund managers pile into {A}",
        "{A} gains {p}% on strong demand",
        "{A} soars after court win",
        "Central bank cuts rates; {A} jumps {p}%",
        "{A} hits record high as inflows accelerate",
        "Treasury firm adds {n},000 {A} to balance sheet",
        "{A} futures open interest climbs as price rises",
        "Softer inflation print lifts {A}",
        "{A} rebounds {p}% from weekly low",
    ),
    BEARISH: (
        "{A} ETFs record ${n}M of net outflows",
        "{A} slides {p}% as sellers pile in",
        "{A} plunges {p}% after exploit",
        "{X} delists {A}, token sinks",
        "{A} drops to a three-month low",
        "Investors pull money from {A} funds",
        "{A} tumbles {p}% on weak demand",
        "{A} sinks after regulator lawsuit",
        "Central bank hikes rates; {A} falls {p}%",
        "{X} hacked, ${n}M in {A} stolen",
        "{A} miners sell holdings as profits vanish",
        "{A} liquidations top ${n}M as price slumps",
        "Hot inflation print hits {A}",
        "{X} pauses withdrawals, {A} slumps",
    ),
    NEUTRAL: (
        "{X} to publish quarterly report next week",
        "{A} developers set date for testnet",
        "{X} names new head of compliance",
        "{A} foundation hosts community call on Friday",
        "{X} updates its fee schedule",
        "Regulator opens consultation on {A} custody rules",
        "{A} conference announces speaker lineup",
        "{X} schedules maintenance window for Sunday",
    ),
}
EXCHANGES = ("Coinbase", "Binance", "Kraken", "OKX", "Bybit", "Bitstamp", "Gemini", "KuCoin")
HEADLINE_ASSETS = (
    "Bitcoin",
    "Ether",
    "Solana",
    "XRP",
    "Dogecoin",
    "Cardano",
    "Avalanche",
    "Chainlink",
)

SMALL_TALK = (
    "gm gm", "good morning fam", "gn frens, see you tomorrow", "hey all, first post here",
    "how's everyone doing today", "what are you all watching this weekend", "brb, coffee",
    "anyone from London here?", "is there a discord for this group", "welcome to the new members",
    "who's hosting the next spaces", "what timezone is everyone in",
    "back from vacation, what did I miss",
    "can an admin check my post", "rules are in the pinned message", "thanks for the explanation",
    "where is the FAQ", "which podcast do you listen to", "happy friday everyone",
    "testing the bot", "is the meetup still on", "how do I change my username",
)  # fmt: skip


def _asset_phrases(
    rng: random.Random, table: dict[str, tuple[str, ...]], n: int
) -> list[tuple[str, str]]:
    out = []
    labels = list(table)
    for _ in range(n):
        label = rng.choice(labels)
        text = rng.choice(table[label]).format(a=rng.choice(ASSETS))
        out.append((rng.choice(PREFIXES) + text + rng.choice(SUFFIXES), label))
    return out


def _direction(rng: random.Random, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        bull = rng.random() < 0.5
        side = rng.choice(SHORT_SIDE if bull else LONG_SIDE)
        asset = rng.choice(("", "", f"{rng.choice(ASSETS)} "))
        text = f"{asset}{side}{rng.choice(AMOUNTS)} {rng.choice(HURT)}"
        out.append(
            (rng.choice(PREFIXES) + text + rng.choice(SUFFIXES), BULLISH if bull else BEARISH)
        )
    return out


def _emoji(rng: random.Random, n: int) -> list[tuple[str, str]]:
    out = []
    for _ in range(n):
        label = rng.choice((BULLISH, BEARISH))
        picks = rng.sample(EMOJI[label], k=rng.randint(2, 4))
        text = "".join(p * rng.randint(1, 2) for p in picks)
        if rng.random() < 0.6:
            asset = rng.choice(ASSETS)
            text = f"{asset} {text}" if rng.random() < 0.5 else f"{text} {asset}"
        out.append((text, label))
    return out


def _headlines(rng: random.Random, n: int) -> list[tuple[str, str]]:
    out = []
    labels = list(HEADLINES)
    for _ in range(n):
        label = rng.choice(labels)
        text = rng.choice(HEADLINES[label]).format(
            A=rng.choice(HEADLINE_ASSETS),
            X=rng.choice(EXCHANGES),
            n=rng.choice((35, 120, 240, 410, 650, 880)),
            p=rng.choice((4, 7, 9, 12, 16, 22)),
        )
        out.append((text, label))
    return out


def generate(seed: int = 7, n: int = 4000, stance_words: float = 0.0) -> list[tuple[str, str]]:
    """About ``n`` distinct ``(text, label)`` pairs; labels are negative/neutral/positive.

    ``stance_words`` adds that share of ``n`` more pairs from :data:`STANCE_WORDS` (0 keeps
    the set the v2 and v3 recipes trained on)."""
    rng = random.Random(seed)
    parts = (
        _asset_phrases(rng, PHRASES, int(n * 0.40))
        + _direction(rng, int(n * 0.15))
        + _asset_phrases(rng, NEGATED, int(n * 0.15))
        + _emoji(rng, int(n * 0.12))
        + _headlines(rng, int(n * 0.13))
        + [(rng.choice(SMALL_TALK) + rng.choice(SUFFIXES[:6]), NEUTRAL) for _ in range(n // 20)]
    )
    if stance_words:
        # Drawn after the rest, so the other parts stay what they were without it.
        parts += _asset_phrases(rng, STANCE_WORDS, int(n * stance_words))
    seen: set[str] = set()
    out = []
    for text, label in parts:
        key = text.lower()
        if key not in seen:
            seen.add(key)
            out.append((text, label))
    return out
