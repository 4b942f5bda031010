"""End to end on Discord (discord.py's real client under simcord): members post in a guild,
messages are stored and scored once, slash commands are answered from the store without
pinging anyone, and a deleted message leaves the store."""

from __future__ import annotations

import asyncio
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import discord
import simcord

from bot.chat.inbox import discord_front
from bot.store import Store
from bot.types import Alert, Scope
from connectors.discord import DiscordSink
from nlp.scorer import Scorer
from tests.conftest import synthetic_text
from tests.test_pipeline_e2e import make_pipeline


async def wait_for(check, timeout: float = 60.0) -> None:
    # A bound on waiting, not a timing assertion: scoring 40 posts took 10.7 s alone and
    # passed 15 s once under a loaded CI run.
    deadline = time.monotonic() + timeout
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert check()


def test_guild_end_to_end(tmp_path: Path, tiny_model_dir: Path) -> None:
    store = Store(tmp_path / "dc.db")
    pipeline = make_pipeline(store, Scorer(tiny_model_dir, cache_size=0), {}, flush_s=0.1)
    connector, source = discord_front(store, pipeline.stopping)
    pipeline.sinks["discord"] = DiscordSink(connector.client)
    rng = random.Random(11)

    async def main() -> None:
        async with simcord.run(connector.client) as env:
            guild = env.create_guild()
            channel = guild.create_text_channel("general")
            members = [guild.add_member(env.create_user(f"m{i}")) for i in range(8)]
            run = asyncio.create_task(pipeline.run([source], live=True))
            sent = []
            for k in range(40):
                mood = "negative" if k % 2 else "neutral"
                author = rng.choice(members)
                sent.append((author, await author.send(channel, synthetic_text(rng, mood))))
            await wait_for(lambda: store.query("SELECT COUNT(*) FROM scores")[0][0] == 40)

            result = await members[0].slash(channel, "mood")
            reply = result.response.message.content
            assert reply.startswith("Mood as of") and f"in {guild.name}" in reply  # not its id

            nasty = await members[1].send(channel, "@everyone $BTC <@123> **dump** now")
            await wait_for(lambda: store.query("SELECT COUNT(*) FROM scores")[0][0] == 41)
            why = (await members[2].slash(channel, "why")).response.message
            assert not why.mention_everyone

            author, first = sent[0]
            await author.delete(first)
            await wait_for(
                lambda: (
                    store.query(
                        "SELECT COUNT(*) FROM messages WHERE message_id = ?", [str(first.id)]
                    )
                    == [(0,)]
                )
            )
            assert store.query("SELECT COUNT(*) FROM scores") == [(40,)]
            assert store.last_message_id("discord", str(channel.id)) == nasty.id

            # A member's /summary is refused; a Manage Server member subscribes the channel.
            managers = guild.create_role(
                "Managers", permissions=discord.Permissions(manage_guild=True)
            )
            boss = guild.add_member(env.create_user("boss"), roles=[managers])
            refused = (await members[4].slash(channel, "summary")).response.message.content
            assert "moderators only" in refused
            subscribed = (await boss.slash(channel, "subscribe")).response.message.content
            assert subscribed.startswith("Subscribed here")
            # An alert raised for the channel's subscription arrives once, pinging nobody.
            now = datetime.now(UTC)
            alert = Alert(
                "extreme-fear:*|*|*:24h:9",
                "extreme-fear",
                Scope(),
                now,
                "all sources mood entered Extreme Fear: 12/100 @everyone",
                value=12.0,
            )
            subs = store.subscriptions("discord")
            store.save_tick(
                [],
                [alert],
                {},
                lambda a: [(s.platform, s.target) for s in subs],
                ("index_tick", now.isoformat()),
                now,
            )
            assert await pipeline.deliver() == 1
            assert await pipeline.deliver() == 0
            simcord.assert_sent(channel, contains="entered Extreme Fear: 12/100")
            posts = [
                e
                for e in env.http_requests
                if e.method == "POST" and e.path.endswith(f"/channels/{channel.id}/messages")
            ]
            assert len(posts) == 1 and posts[0].json["allowed_mentions"] == {"parse": []}
            pipeline.stop()
            await run

    asyncio.run(main())
    assert store.query("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM messages") == [(40, 40)]
    store.close()


def test_a_sharded_client_reads_every_shard_and_backfills_a_reconnected_one(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """With ``shards`` the connector runs ``discord.AutoShardedClient``: the servers of both
    shards are read, and a shard that drops and comes back backfills what its own servers
    got meanwhile (the gateway does not replay it), once."""
    store = Store(tmp_path / "shards.db")
    pipeline = make_pipeline(store, Scorer(tiny_model_dir, cache_size=0), {}, flush_s=0.1)
    connector, source = discord_front(store, pipeline.stopping, shards=2)
    assert isinstance(connector.client, discord.AutoShardedClient)
    rng = random.Random(5)

    def stored() -> int:
        return store.query("SELECT COUNT(*) FROM messages")[0][0]

    async def main() -> None:
        async with simcord.run(connector.client) as env:
            guilds = [env.create_guild(f"g{shard}", shard_id=shard) for shard in (0, 1)]
            channels = [guild.create_text_channel("general") for guild in guilds]
            members = [g.add_member(env.create_user(f"m{g.id}")) for g in guilds]
            run = asyncio.create_task(pipeline.run([source], live=True))
            for member, channel in zip(members, channels, strict=True):
                await member.send(channel, synthetic_text(rng, "neutral"))
            await wait_for(lambda: stored() == 2)
            assert {c.guild.shard_id for c in connector.backfill_channels()} == {0, 1}
            assert [c.id for c in connector.backfill_channels(1)] == [channels[1].id]

            shard = connector.client.get_shard(1)
            assert shard is not None
            await shard.disconnect()
            await members[1].send(channels[1], synthetic_text(rng, "negative"))
            await members[0].send(channels[0], synthetic_text(rng, "neutral"))  # shard 0 is up
            await wait_for(lambda: stored() == 3)
            sessions = connector.sessions
            await shard.reconnect()
            await wait_for(lambda: stored() == 4)
            assert connector.sessions == sessions + 1  # only shard 1 started a new session
            pipeline.stop()
            await run

    asyncio.run(main())
    assert store.query("SELECT COUNT(*), COUNT(DISTINCT message_id) FROM messages") == [(4, 4)]
    communities = {c for (c,) in store.query("SELECT DISTINCT community FROM messages")}
    assert len(communities) == 2
    store.close()
