"""Erasure on request: one person's texts, quotes and raw updates go; they are not stored again."""

from __future__ import annotations

import bisect
import functools
import hashlib
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.store.base import Database, StoreBase, locked
from bot.store.rows import iso
from bot.store.sql import insert_new
from connectors.types import Message

log = logging.getLogger(__name__)

#: The checkpoint counting erasures: a process holding messages in memory (the index engine)
#: can tell that some were erased since it loaded them.
ERASURES_CHECKPOINT = "erasures"
#: The error a chat inbox row carries when its post was not kept (its author is forgotten).
WITHHELD = "withheld: its author asked to be forgotten"
#: Pseudonyms that replace an erased author start with this.
PSEUDONYM_PREFIX = "erased:"
#: Where, in a raw chat update, a key ``id`` names a person (Telegram's Bot API objects).
_PERSON_KEYS = ("from", "sender_chat", "sender_user", "forward_from", "user")
#: Parts of someone else's post that repeat the erased person's message (a reply's quote).
_QUOTING_KEYS = ("reply_to_message", "external_reply", "quote")


@dataclass(frozen=True, slots=True)
class Erasure:
    """What erasing one person's data did."""

    messages: int  # stored messages whose text and author details went (scores kept)
    quotes: int  # alert quotes of those messages removed
    updates: int  # raw chat updates cleared (or cut, where someone else's quoted them)
    subscriptions: int  # their alert subscriptions removed (platform-wide erasures only)
    pseudonym: str  # the author their kept scores now carry


@functools.lru_cache(maxsize=65_536)
def author_digest(salt: str, platform: str, author: str) -> str:
    """A slow salted hash of one author id (scrypt, about 10 ms): the do-not-store table names
    nobody, and trying every small numeric id against it costs that much per try, not
    nanoseconds. Cached, as intake asks about the same authors again and again."""
    return hashlib.scrypt(
        f"{platform}\x00{author}".encode(), salt=bytes.fromhex(salt), n=2**12, r=8, p=1, dklen=32
    ).hex()


def _flat(text: str) -> str:
    """Text as ``bot.render.quote`` flattens it (one line, single spaces)."""
    return " ".join(text.split())


class _Quotes:
    """Recognises the alert quotes (``bot.render.quote``: whole, or cut with "…") of a set
    of texts."""

    def __init__(self, texts: Sequence[str]) -> None:
        self._whole = {_flat(t) for t in texts if t.strip()}
        self._sorted = sorted(self._whole)

    def __contains__(self, quote: object) -> bool:
        if not isinstance(quote, str) or not quote:
            return False
        if quote in self._whole:
            return True
        head = quote[:-1]
        if not quote.endswith("…") or not head:
            return False
        i = bisect.bisect_left(self._sorted, head)
        return i < len(self._sorted) and self._sorted[i].startswith(head)


class PrivacyMixin(StoreBase):
    """Erasing one person's data on request, and the do-not-store list intake checks."""

    @locked
    def _salt(self) -> str:
        row = self.db.execute("SELECT value FROM privacy WHERE name = 'salt'").fetchone()
        return str(row[0])

    @locked
    def _do_not_store(self, platforms: Sequence[str]) -> dict[str, dict[str, set[str]]]:
        """platform → digest → the communities it applies to ("" for all of them)."""
        out: dict[str, dict[str, set[str]]] = {}
        for platform in platforms:
            for digest, community in self.db.execute(
                "SELECT digest, community FROM do_not_store WHERE platform = ?", [platform]
            ).fetchall():
                out.setdefault(platform, {}).setdefault(digest, set()).add(community)
        return out

    def withheld(self, messages: Sequence[Message]) -> set[tuple[str, str, str]]:
        """The keys of ``messages`` whose authors asked not to be stored (for all of their
        platform, or for the message's community)."""
        blocked = self._do_not_store(sorted({m.platform for m in messages}))
        if not blocked:
            return set()
        salt = self._salt()
        out = set()
        for m in messages:
            digests = blocked.get(m.platform)
            if not digests:
                continue
            # Hashed outside the store's lock: scrypt is slow on purpose.
            scopes = digests.get(author_digest(salt, m.platform, m.author), set())
            if "" in scopes or m.community in scopes:
                out.add((m.platform, m.channel, m.message_id))
        return out

    def withheld_updates(self, platform: str, updates: Sequence[tuple[int, str]]) -> set[int]:
        """The raw chat updates (Telegram's) that are posts of people who asked not to be
        stored: the inbox keeps them without their payload, already handled. Commands are
        kept, so a forgotten person can still ask the bot things."""
        digests = self._do_not_store([platform]).get(platform)
        if not digests:
            return set()
        salt = self._salt()
        out = set()
        for update_id, payload in updates:
            post = _post_of(payload)
            body = post.get("text", post.get("caption"))
            if not isinstance(body, str) or body.startswith("/"):
                continue  # not a post moodring would store, or a command to answer
            author = _sender_of(post)
            chat = str((post.get("chat") or {}).get("id"))
            if author is None:
                continue
            scopes = digests.get(author_digest(salt, platform, author), set())
            if "" in scopes or chat in scopes:
                out.add(update_id)
        return out

    @locked
    def forget_author(
        self,
        platform: str,
        author: str,
        now: datetime,
        community: str | None = None,
        requested_by: str = "the operator",
    ) -> Erasure:
        """Erase what moodring keeps of one person, in ``community`` or (None) everywhere on
        ``platform``, and keep them from being stored again there.

        In one transaction: their messages lose text and author details and carry one new
        random pseudonym instead of their id (scores, model ids and assets stay, so readings
        and distinct-author counts do not change); alert quotes of those messages go; their
        raw chat updates are cleared, and other people's pending ones lose the quote of
        theirs; a salted-hash do-not-store entry is added. A platform-wide erasure also
        removes their alert subscriptions and the name on levels they added. Logged without
        any text or the id.

        Args:
            platform: e.g. "telegram".
            author: their id on the platform, as messages carry it.
            now: wall-clock time of the request.
            community: only this community (a moderator's request), or None for all.
            requested_by: who asked, for the log line.
        """
        pseudonym = PSEUDONYM_PREFIX + secrets.token_hex(8)
        where = " WHERE platform = ? AND author = ?"
        params: list[Any] = [platform, author]
        if community is not None:
            where += " AND community = ?"
            params.append(community)
        with self.transaction() as db:
            rows = db.execute(
                "SELECT text, norm_text, created_at FROM messages" + where, params
            ).fetchall()
            texts = [t for r in rows for t in r[:2] if t]
            quotes = self._erase_quotes(db, texts, min((r[2] for r in rows), default=None))
            n = db.execute(
                "UPDATE messages SET author = ?, text = NULL, norm_text = NULL,"
                " author_followers = NULL, author_created_at = NULL, author_verified = NULL"
                + where,
                [pseudonym, *params],
            ).rowcount
            updates = self._erase_updates(db, platform, author, community, now)
            subs = 0
            if community is None:
                subs = db.execute(
                    "DELETE FROM subscriptions WHERE platform = ? AND user = ?", [platform, author]
                ).rowcount
                db.execute(
                    "UPDATE manual_levels SET added_by = ? WHERE platform = ? AND added_by = ?",
                    [pseudonym, platform, author],
                )
                db.execute(
                    "DELETE FROM private_chats WHERE platform = ? AND user = ?",
                    [platform, author],
                )
            db.execute(
                insert_new("do_not_store", ("platform", "digest", "community", "added_at")),
                [
                    platform,
                    author_digest(self._salt(), platform, author),
                    community or "",
                    iso(now),
                ],
            )
            row = db.execute(
                "SELECT value FROM checkpoints WHERE name = ?", [ERASURES_CHECKPOINT]
            ).fetchone()
            self._set_checkpoint(db, ERASURES_CHECKPOINT, str(int(row[0]) + 1 if row else 1), now)
        erasure = Erasure(n, quotes, updates, subs, pseudonym)
        log.info(
            "erased on request of %s: %d messages (now %s), %d alert quotes, %d chat updates,"
            " %d subscriptions on %s%s; not stored again there",
            requested_by,
            n,
            pseudonym,
            quotes,
            updates,
            subs,
            platform,
            "" if community is None else f" in community {community}",
        )
        return erasure

    @staticmethod
    def _erase_quotes(db: Database, texts: Sequence[str], since: str | None) -> int:
        """Drop alert quotes of ``texts`` (messages created from ``since``); how many."""
        if since is None or not texts:
            return 0
        theirs = _Quotes(texts)
        removed = 0
        for table in ("alerts", "alerts_superseded"):  # table names are ours
            for key, evidence in db.execute(
                f"SELECT key, evidence FROM {table} WHERE at >= ? AND evidence IS NOT NULL",
                [since],
            ).fetchall():
                quotes = json.loads(evidence or "[]")
                kept = [q for q in quotes if q not in theirs]
                if len(kept) < len(quotes):
                    removed += len(quotes) - len(kept)
                    db.execute(
                        f"UPDATE {table} SET evidence = ? WHERE key = ?", [json.dumps(kept), key]
                    )
        return removed

    @staticmethod
    def _erase_updates(
        db: Database, platform: str, author: str, community: str | None, now: datetime
    ) -> int:
        """Clear the raw chat updates that carry the person (sent by them, or quoting them);
        how many. Their own pending ones are marked done (not to be read); someone else's
        pending one loses only the part that quotes them."""
        escaped = author.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = db.execute(
            "SELECT update_id, payload, done_at IS NULL FROM chat_inbox"
            " WHERE platform = ? AND payload LIKE ? ESCAPE '\\'",
            [platform, f"%{escaped}%"],
        ).fetchall()
        changed = 0
        for update_id, payload, pending in rows:
            try:
                update = json.loads(payload)
            except ValueError:
                continue  # never readable, so never handed on either
            if not isinstance(update, dict) or not _names(update, author):
                continue  # the digits were a date, a message id, someone else's id …
            post = next(
                (v for k, v in update.items() if k != "update_id" and isinstance(v, dict)), {}
            )
            chat = post.get("chat")
            if community is not None and str((chat or {}).get("id")) != community:
                continue  # a moderator erases in their own community only
            if not pending:
                sql, params = "UPDATE chat_inbox SET payload = NULL", []
            elif _sent_by(post, author):
                sql, params = (
                    "UPDATE chat_inbox SET payload = NULL, done_at = ?, error = ?",
                    [
                        iso(now),
                        "erased on request",
                    ],
                )
            elif [post.pop(key) for key in _QUOTING_KEYS if key in post]:
                # Someone else's pending post: it is still to be read, without the quote.
                sql, params = "UPDATE chat_inbox SET payload = ?", [json.dumps(update)]
            else:
                continue  # pending and only mentioning them: processed, then purged soon
            db.execute(
                sql + " WHERE platform = ? AND update_id = ?", [*params, platform, update_id]
            )
            changed += 1
        return changed

    @locked
    def purge_inbox(self, done_before: datetime) -> int:
        """Retention: clear the raw payload of chat updates processed before ``done_before``
        (the row stays, so the update is still known as handled); how many."""
        with self.transaction() as db:
            return db.execute(
                "UPDATE chat_inbox SET payload = NULL WHERE done_at IS NOT NULL"
                " AND done_at < ? AND payload IS NOT NULL",
                [iso(done_before)],
            ).rowcount


def _names(node: object, author: str) -> bool:
    """Whether a raw update names ``author`` as a person anywhere (sender, the sender of the
    message it replies to or forwards, a mention)."""
    if isinstance(node, list):
        return any(_names(item, author) for item in node)
    if not isinstance(node, dict):
        return False
    for key, value in node.items():
        if key in _PERSON_KEYS and isinstance(value, dict) and str(value.get("id")) == author:
            return True
        if _names(value, author):
            return True
    return False


def _post_of(payload: str) -> dict:
    """The post a raw Telegram update carries (its message, edit or channel post), or {}."""
    try:
        update = json.loads(payload)
    except ValueError:
        return {}
    if not isinstance(update, dict):
        return {}
    post = next((v for k, v in update.items() if k != "update_id" and isinstance(v, dict)), {})
    return post if isinstance(post.get("chat"), dict) else {}


def _sender_of(post: dict) -> str | None:
    """The author moodring stores for ``post``: the chat it was sent as, else the user
    (``connectors.telegram._sender``)."""
    for key in ("sender_chat", "from"):
        sender = post.get(key)
        if isinstance(sender, dict) and isinstance(sender.get("id"), int):
            return str(sender["id"])
    return None


def _sent_by(post: dict, author: str) -> bool:
    """Whether ``author`` sent ``post`` (as themselves, or as the chat they post as)."""
    for key in ("sender_chat", "from"):
        sender = post.get(key)
        if isinstance(sender, dict) and str(sender.get("id")) == author:
            return True
    return False
