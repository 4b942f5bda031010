"""The schema: migrations that create and change it, applied in order at every open."""

from __future__ import annotations

import secrets

import sqlite_utils
from sqlite_utils import Migrations

from bot.store.rows import MESSAGE_KEY
from nlp.assets import AssetTable

migrations = Migrations("moodring")


@migrations()
def m001_initial(db: sqlite_utils.Database) -> None:
    """The v0 schema."""
    db.table("messages").create(
        {
            "platform": str,
            "channel": str,
            "message_id": str,
            "community": str,
            "author": str,
            "text": str,  # as received; NULL once purged by retention
            "norm_text": str,  # normalised for the model
            "created_at": str,  # ISO 8601 UTC
            "likes": int,
            "replies": int,
            "reposts": int,
            "language": str,
            "public": int,
            "tag": str,
            "assets": str,  # JSON list of symbols
            "spam_reason": str,  # NULL when clean
            "set_aside": str,  # NULL, or why the index leaves it out (e.g. "lang:es")
            "status": str,  # new | scored | failed
            "error": str,
            "ingested_at": str,
        },
        pk=MESSAGE_KEY,
        not_null={"created_at", "status"},
    )
    db.table("messages").create_index(["created_at"])
    db.table("messages").create_index(["status", "created_at"])
    db.table("message_assets").create(
        {"platform": str, "channel": str, "message_id": str, "asset": str, "created_at": str},
        pk=(*MESSAGE_KEY, "asset"),
    )
    db.table("message_assets").create_index(["asset", "created_at"])
    db.table("scores").create(
        {
            "platform": str,
            "channel": str,
            "message_id": str,
            "p_neg": float,
            "p_neu": float,
            "p_pos": float,
            "label": str,
            "model_id": str,
            "scored_at": str,
        },
        pk=MESSAGE_KEY,
    )
    db.table("prices").create(
        {
            "asset": str,
            "interval": str,
            "ts": str,
            "open": float,
            "high": float,
            "low": float,
            "close": float,
            "volume": float,
            "source": str,
        },
        pk=("asset", "interval", "ts"),
    )
    db.table("readings").create(
        {
            "scope": str,
            "window": str,
            "at": str,
            "asset": str,
            "community": str,
            "platform": str,
            "value": float,
            "band": str,
            "components": str,
            "sample_size": int,
            "confidence": float,
            "spam_count": int,
            "set_aside": int,
        },
        pk=("scope", "window", "at"),
    )
    db.table("alerts").create(
        {
            "key": str,
            "kind": str,
            "scope": str,
            "at": str,
            "title": str,
            "detail": str,
            "value": float,
            "previous": float,
            "evidence": str,
            "created_at": str,
        },
        pk="key",
    )
    db.table("alerts").create_index(["at"])
    db.table("alert_state").create(
        {"scope": str, "window": str, "state": str}, pk=("scope", "window")
    )
    db.table("subscriptions").create(
        {
            "id": int,
            "platform": str,
            "community": str,
            "target": str,
            "user": str,
            "asset": str,
            "kinds": str,
            "created_at": str,
        },
        pk="id",
    )
    db.table("outbox").create(
        {
            "alert_key": str,
            "sink": str,
            "target": str,
            "created_at": str,
            "sent_at": str,
            "attempts": int,
            "last_error": str,
        },
        pk=("alert_key", "sink", "target"),
    )
    db.table("outbox").create_index(["sent_at"])
    db.table("checkpoints").create({"name": str, "value": str, "updated_at": str}, pk="name")


@migrations()
def m002_chat_inbox_and_subscriptions(db: sqlite_utils.Database) -> None:
    """Raw chat updates stored before the platform is told they arrived; richer subscriptions."""
    db.table("chat_inbox").create(
        {
            "platform": str,
            "update_id": int,
            "payload": str,  # the raw update, JSON
            "received_at": str,
            "done_at": str,  # NULL until processed
            "error": str,
        },
        pk=("platform", "update_id"),
    )
    db.table("chat_inbox").create_index(["platform", "done_at"])
    subs = db.table("subscriptions")
    subs.add_column("daily_cap", int)
    subs.add_column("quiet_start", int)  # hour of day, subscriber's time zone
    subs.add_column("quiet_end", int)
    subs.add_column("tz", str)
    subs.add_column("active", int)
    subs.create_index(["platform", "target"])


@migrations()
def m003_community_settings(db: sqlite_utils.Database) -> None:
    """Settings a community's moderators chose (one JSON document per community)."""
    db.table("community_settings").create(
        {"platform": str, "community": str, "settings": str, "updated_at": str},
        pk=("platform", "community"),
    )


@migrations()
def m004_author_metadata(db: sqlite_utils.Database) -> None:
    """What the platform says about a message's author (X: followers, account age)."""
    messages = db.table("messages")
    messages.add_column("author_followers", int)
    messages.add_column("author_created_at", str)
    messages.add_column("author_verified", int)
    messages.add_column("author_weight", float)  # bot.mood.spam.author_weight; NULL reads as 1


@migrations()
def m005_health_usage_levels(db: sqlite_utils.Database) -> None:
    """Connector health for ``moodring status``, paid API usage, moderators' manual levels."""
    db.table("connector_health").create(
        {
            "name": str,
            "health": str,
            "updated_at": str,
        },  # health: JSON of bot.pipeline.supervisor.Health
        pk="name",
    )
    db.table("api_usage").create({"name": str, "month": str, "reads": int}, pk=("name", "month"))
    db.table("manual_levels").create(
        {
            "platform": str,
            "community": str,
            "asset": str,
            "price": float,
            "added_by": str,
            "added_at": str,
        },
        pk=("platform", "community", "asset", "price"),
    )
    db.table("tickers").create(
        {
            "asset": str,
            "at": str,
            "last": float,
            "change_24h_pct": float,
            "volume_24h": float,
            "funding_rate": float,
            "open_interest": float,
            "source": str,
        },
        pk=("asset", "at"),
    )


@migrations()
def m006_asset_aliases(db: sqlite_utils.Database) -> None:
    """Subscriptions and manual levels saved under a coin's alias move to its symbol.

    Before commands resolved aliases, ``/subscribe bitcoin`` stored the asset "BITCOIN", but
    readings and alerts only ever carry the symbol (BTC), so such a subscription never fired
    and ``/levels bitcoin add`` set a level no chart showed.
    """
    for word, symbol in AssetTable.load().cashtags.items():
        legacy = word.upper()
        if legacy == symbol:
            continue
        # A user who also holds the symbol's subscription keeps that one (no double alerts).
        db.execute(
            "DELETE FROM subscriptions WHERE asset = ? AND EXISTS (SELECT 1 FROM subscriptions s"
            " WHERE s.platform = subscriptions.platform AND s.target = subscriptions.target"
            " AND s.user = subscriptions.user AND s.asset = ?)",
            [legacy, symbol],
        )
        db.execute("UPDATE subscriptions SET asset = ? WHERE asset = ?", [symbol, legacy])
        # A level already set under the symbol stays; the alias's copy is deleted below.
        db.execute(
            "UPDATE manual_levels SET asset = ? WHERE asset = ? AND NOT EXISTS (SELECT 1"
            " FROM manual_levels m WHERE m.platform = manual_levels.platform"
            " AND m.community = manual_levels.community AND m.asset = ?"
            " AND m.price = manual_levels.price)",
            [symbol, legacy, symbol],
        )
        db.execute("DELETE FROM manual_levels WHERE asset = ?", [legacy])  # already there


@migrations()
def m007_reading_models(db: sqlite_utils.Database) -> None:
    """Readings name the models that scored their messages, so history never silently mixes
    two models (``moodring rescore`` re-scores and rebuilds)."""
    db.table("readings").add_column(
        "models", str
    )  # JSON list of model ids; NULL before migration 7
    # Alerts a rebuild replaced, kept with their delivery records: what users were sent stays.
    db.table("alerts_superseded").create(
        {**db.table("alerts").columns_dict, "superseded_at": str}, pk="key"
    )


@migrations()
def m008_outbox_given_up(db: sqlite_utils.Database) -> None:
    """Outbox rows say why they will never be sent, instead of an attempt count standing in.

    Before, a row was dropped once ``attempts`` reached 8 (the old ``max_attempts``), so an
    outage longer than eight retries silently lost the alert; now rows expire by age
    (``alert_max_age_s``) and a given-up row is marked. Rows the old cap already dropped are
    marked given up with the reason they carry, or as too old when they simply kept failing.
    """
    outbox = db.table("outbox")
    outbox.add_column("given_up", str)  # NULL while it may still be sent; else why not
    outbox.add_column("given_up_at", str)
    db.execute(
        "UPDATE outbox SET given_up = CASE WHEN last_error IN (?, ?, ?, ?, ?) THEN last_error"
        " ELSE ? END, given_up_at = created_at WHERE sent_at IS NULL AND attempts >= 8",
        [
            "daily cap",
            "gone",
            "muted by moderators",
            "below the community's threshold",
            "community cooldown",
            "too old",  # bot.store.rows.TOO_OLD, frozen here as migrations are
        ],
    )


@migrations()
def m011_community_titles_and_private_chats(db: sqlite_utils.Database) -> None:
    """What chat replies need to be understood: each community's latest title, so a group is
    named rather than shown as "-1001234567890", and which users have a private chat with the
    bot (Telegram refuses a bot's DM to anyone who never pressed Start)."""
    db.table("community_titles").create(
        {"platform": str, "community": str, "title": str, "updated_at": str},
        pk=("platform", "community"),
    )
    db.table("private_chats").create(
        {"platform": str, "user": str, "first_at": str}, pk=("platform", "user")
    )


@migrations()
def m009_do_not_store(db: sqlite_utils.Database) -> None:
    """Erasure on request: people who asked not to be stored, by a salted hash of their id.

    ``digest`` is ``bot.store.privacy.author_digest`` (scrypt of platform and author id with
    this database's own random salt), so the table names nobody and small ids cannot be
    tried against it cheaply; ``community`` is "" for a whole platform.
    """
    db.table("do_not_store").create(
        {"platform": str, "digest": str, "community": str, "added_at": str},
        pk=("platform", "digest", "community"),
    )
    db.table("privacy").create({"name": str, "value": str}, pk="name")
    db.execute("INSERT INTO privacy VALUES ('salt', ?)", [secrets.token_hex(16)])
    # Inbox retention looks only at rows that still hold a payload (a partial index, so the
    # rows it already cleared cost nothing however many accumulate).
    db.execute(
        "CREATE INDEX chat_inbox_payload_done ON chat_inbox (done_at) WHERE payload IS NOT NULL"
    )


@migrations()
def m010_community_status_index(db: sqlite_utils.Database) -> None:
    """A community's messages by status and time, so a moderator's ``/status`` (any group
    admin may ask) counts its own community from an index instead of scanning every message."""
    db.table("messages").create_index(
        ["platform", "community", "status", "created_at"], if_not_exists=True
    )


@migrations()
def m012_outbox_claims(db: sqlite_utils.Database) -> None:
    """Several delivery workers on one database (PostgreSQL): an unsent outbox row is claimed
    by one worker until ``claimed_until`` (a lease, so a crashed worker's rows go to another),
    and only the claimant sends it. NULL: nobody holds it."""
    outbox = db.table("outbox")
    outbox.add_column("claimed_by", str)
    outbox.add_column("claimed_until", str)


@migrations()
def m013_liquidations_and_implied_volatility(db: sqlite_utils.Database) -> None:
    """Sampled liquidations from exchanges' public streams (each event once, by the
    exchange's id) with hourly totals by side; the streams' gaps, reported and never filled;
    and implied-volatility index bars (Deribit's DVOL)."""
    db.table("liquidations").create(
        {
            "exchange": str,
            "event_id": str,
            "asset": str,
            "symbol": str,
            "side": str,
            "price": float,
            "amount": float,
            "notional_usd": float,
            "at": str,
        },
        pk=("exchange", "event_id"),
    )
    db.table("liquidations").create_index(["asset", "at"], if_not_exists=True)
    db.table("liquidation_hours").create(
        {"asset": str, "hour": str, "side": str, "notional_usd": float, "events": int},
        pk=("asset", "hour", "side"),
    )
    db.table("stream_gaps").create(
        {"source": str, "since": str, "until": str, "reason": str}, pk=("source", "since")
    )
    db.table("implied_vol").create(
        {
            "asset": str,
            "interval": str,
            "ts": str,
            "open": float,
            "high": float,
            "low": float,
            "close": float,
            "source": str,
        },
        pk=("asset", "interval", "ts"),
    )


@migrations()
def m014_dashboard_revocations(db: sqlite_utils.Database) -> None:
    """When each moderator last revoked their dashboard links of a community: tokens issued
    up to then are refused. The signing secret itself is never stored here."""
    db.table("dashboard_revocations").create(
        {"platform": str, "community": str, "user": str, "revoked_at": str},
        pk=("platform", "community", "user"),
    )
