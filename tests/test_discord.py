"""The Discord connector against simcord's in-memory Discord, running discord.py's own client,
gateway parsers, cache and slash-command tree (only the REST transport and websocket are fake)."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import discord
import pytest
import simcord

from bot.chat.commands import COMMANDS
from connectors.discord import (
    DiscordConnector,
    DiscordSink,
    delivery_error,
    message_to_event,
    split_text,
)
from connectors.errors import DeliveryError, RecipientGone, SourceUnavailable
from connectors.types import Command, Message, Reply

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


class Recorder:
    """The bot layer's side: collects what the connector hands over."""

    def __init__(self, reply: Reply | None = None) -> None:
        self.reply = reply or Reply(text="ok")
        self.commands: list[Command] = []
        self.messages: list[Message] = []
        self.deleted: list[tuple[str, str, str]] = []
        self.last: dict[str, int] = {}

    async def answer(self, command: Command) -> Reply:
        self.commands.append(command)
        return self.reply

    async def on_message(self, message: Message) -> None:
        self.messages.append(message)

    async def on_delete(self, platform: str, channel: str, message_id: str) -> None:
        self.deleted.append((platform, channel, message_id))

    def last_seen(self, channel: str) -> int | None:
        return self.last.get(channel)


def connector_for(rec: Recorder, **kwargs: Any) -> DiscordConnector:
    # The bot's real slash commands, as bot.chat.inbox.discord_front hands them over.
    kwargs.setdefault("commands", COMMANDS.slash_specs())
    return DiscordConnector(
        answer=rec.answer,
        on_message=rec.on_message,
        on_delete=rec.on_delete,
        last_seen=rec.last_seen,
        **kwargs,
    )


def simulate(
    rec: Recorder, scenario: Callable[[simcord.Env, DiscordConnector], Awaitable[None]], **kw: Any
) -> None:
    """Run ``scenario`` with the connector's real client logged in to a simulated Discord."""
    connector = connector_for(rec, **kw)

    async def main() -> None:
        async with simcord.run(connector.client) as env:
            await scenario(env, connector)

    asyncio.run(main())


def world(env: simcord.Env) -> tuple[Any, Any, Any]:
    guild = env.create_guild()
    channel = guild.create_text_channel("general")
    alice = guild.add_member(env.create_user("alice"))
    return guild, channel, alice


def mentions_disabled(env: simcord.Env) -> list[Any]:
    """The allowed_mentions of every message-sending request the bot made."""
    found = []
    for request in env.http_requests:
        body = request.json if isinstance(request.json, dict) else {}
        body = body.get("data", body)  # interaction callbacks wrap the message in "data"
        if isinstance(body, dict) and ("content" in body or "attachments" in body):
            found.append(body.get("allowed_mentions"))
    return found


# ---------------------------------------------------------------------- messages in


def test_guild_message_becomes_message_and_bots_are_ignored() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        guild, channel, alice = world(env)
        other_bot = guild.add_member(env.create_user("otherbot", bot=True))
        sent = await alice.send(channel, "BTC looks strong, buying more")
        await other_bot.send(channel, "BTC price alert: 70k")
        await alice.send(channel, "", attachments=[("chart.png", PNG)])  # no text

        assert len(rec.messages) == 1
        m = rec.messages[0]
        assert (m.platform, m.community, m.channel) == ("discord", str(guild.id), str(channel.id))
        assert (m.message_id, m.author) == (str(sent.id), str(alice.id))
        assert m.text == "BTC looks strong, buying more"
        assert m.created_at.utcoffset() == timedelta(0) and m.created_at == sent.created_at
        assert m.public is False
        assert m.community_title == guild.name  # so replies can name the server

    simulate(rec, scenario)


def test_only_configured_channels_are_read() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        guild, channel, alice = world(env)
        offtopic = guild.create_text_channel("offtopic")
        connector.channel_ids = frozenset({channel.id})
        await alice.send(offtopic, "ETH to zero")
        await alice.send(channel, "ETH to the moon")
        assert [m.text for m in rec.messages] == ["ETH to the moon"]

    simulate(rec, scenario)


def test_thread_message_is_read_under_its_configured_parent() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        guild, channel, alice = world(env)
        connector.channel_ids = frozenset({channel.id})
        parent = connector.client.get_channel(channel.id)
        assert isinstance(parent, discord.TextChannel)
        thread = await parent.create_thread(name="btc", type=discord.ChannelType.public_thread)
        await env.settle()
        await alice.send(channel.threads[0], "BTC thread: bullish")
        (m,) = rec.messages
        assert (m.community, m.channel) == (str(guild.id), str(thread.id))
        assert m.text == "BTC thread: bullish"

    simulate(rec, scenario)


def test_dm_is_not_a_community_message() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        _, _, alice = world(env)
        dm = await alice.send_dm("hello bot, BTC?")
        assert message_to_event(dm) is None
        assert rec.messages == []

    simulate(rec, scenario)


def test_edit_and_delete_reach_their_callbacks() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        _, channel, alice = world(env)
        sent = await alice.send(channel, "SOL is fine")
        await alice.edit(sent, "SOL is dead")
        await alice.delete(sent)

        first, edited = rec.messages
        assert edited.text == "SOL is dead"
        assert (edited.channel, edited.message_id) == (first.channel, first.message_id)
        assert edited.created_at == first.created_at
        assert rec.deleted == [("discord", str(channel.id), str(sent.id))]

    simulate(rec, scenario)


def test_new_session_backfills_after_last_seen_but_resume_does_not() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        _, channel, alice = world(env)
        seen = await alice.send(channel, "before the outage")
        assert connector.sessions == 1
        rec.last[str(channel.id)] = seen.id

        # The connection drops: what is posted now never reaches the client.
        await connector.client.ws.close()
        await alice.send(channel, "during the outage 1")
        await alice.send(channel, "during the outage 2")
        assert [m.text for m in rec.messages] == ["before the outage"]

        connector.client.dispatch("resumed")  # a RESUME replays itself: no backfill
        await env.settle()
        assert len(rec.messages) == 1

        # A fresh session (IDENTIFY → READY, as after an invalidated session).
        await env.restart_bot()
        assert connector.sessions == 2
        assert [m.text for m in rec.messages] == [
            "before the outage",
            "during the outage 1",
            "during the outage 2",
        ]

    simulate(rec, scenario)


def test_backfill_skips_channels_never_seen() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        _, channel, alice = world(env)
        await alice.send(channel, "old news")
        assert await connector.backfill() == 0
        rec.last[str(channel.id)] = 0
        assert await connector.backfill() == 1

    simulate(rec, scenario)


# ---------------------------------------------------------------------- slash commands


def test_slash_mood_reaches_answer_and_reply_cannot_ping() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        guild, channel, alice = world(env)
        rec.reply = Reply(text=f"BTC mood 62 @everyone <@{alice.id}> @here")
        result = await alice.slash(channel, "mood", asset="BTC")

        assert rec.commands == [
            Command(
                platform="discord",
                community=str(guild.id),
                channel=str(channel.id),
                user=str(alice.id),
                name="mood",
                args=("BTC",),
                community_title=guild.name,  # so replies can name the server
            )
        ]
        assert result.response is not None
        sent = result.response.message
        assert sent.content == rec.reply.text
        # Discord still lists <@id> in ``mentions``; allowed_mentions decides who is pinged.
        assert not sent.mention_everyone and not sent.role_mentions
        assert mentions_disabled(env) == [{"parse": []}]

    simulate(rec, scenario)


def test_args_follow_declared_order_and_kinds_split() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        _, channel, alice = world(env)
        await alice.slash(channel, "mood", window="24h", asset="ETH")
        await alice.slash(channel, "subscribe", kinds="extreme swing", asset="BTC")
        await alice.slash(channel, "subscribe", kinds="levels,divergence", asset="BTC")
        await alice.slash(channel, "levels", asset="BTC", action="add", price="60,000")
        await alice.slash(channel, "settings", change="quiet 22-7 Europe/Berlin")
        await alice.slash(channel, "help")
        assert [(c.name, c.args) for c in rec.commands] == [
            ("mood", ("ETH", "24h")),
            ("subscribe", ("BTC", "extreme", "swing")),
            ("subscribe", ("BTC", "levels", "divergence")),
            ("levels", ("BTC", "add", "60,000")),  # a thousands separator is not a split
            ("settings", ("quiet", "22-7", "Europe/Berlin")),
            ("help", ()),
        ]

    simulate(rec, scenario)


def test_manage_server_or_configured_role_is_admin() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        guild, channel, alice = world(env)
        managers = guild.create_role("Managers", permissions=discord.Permissions(manage_guild=True))
        mods = guild.create_role("Mods")
        boss = guild.add_member(env.create_user("boss"), roles=[managers])
        mod = guild.add_member(env.create_user("mod"), roles=[mods])
        for member in (boss, mod, alice):
            await member.slash(channel, "summary", span="7d")
        assert [c.roles for c in rec.commands] == [
            frozenset({"admin"}),
            frozenset({"admin"}),  # "mods" matches "Mods": names compare case-insensitively
            frozenset(),
        ]
        assert all(not c.is_private and c.args == ("7d",) for c in rec.commands)

    simulate(rec, scenario, admin_roles=("mods",))


def test_dm_slash_command_is_private() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        _, _, alice = world(env)
        result = await alice.user.slash("alerts")
        (command,) = rec.commands
        assert command.is_private and command.roles == frozenset()
        assert command.community == command.channel
        assert result.response is not None and result.response.content == "ok"

    simulate(rec, scenario)


def test_image_reply_is_an_attachment() -> None:
    rec = Recorder(Reply(text="BTC 30d", image=PNG, image_name="btc.png"))

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        _, channel, alice = world(env)
        result = await alice.slash(channel, "chart", asset="BTC", span="30d")
        assert rec.commands[0].args == ("BTC", "30d")
        assert result.response is not None
        assert result.response.content == "BTC 30d"
        (attachment,) = result.response.attachments
        assert attachment.filename == "btc.png"
        assert await attachment.read() == PNG

    simulate(rec, scenario)


def test_long_reply_continues_as_followups() -> None:
    text = "\n".join(f"line {i:04d} " + "x" * 40 for i in range(100))  # ~5000 chars
    rec = Recorder(Reply(text=text))

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        _, channel, alice = world(env)
        result = await alice.slash(channel, "trending")
        assert result.response is not None
        parts = [result.response.content] + [f.content for f in result.followups]
        assert len(parts) == 3 and all(len(p) <= 2000 for p in parts)
        assert "\n".join(parts) == text
        assert mentions_disabled(env) == [{"parse": []}] * 3

    simulate(rec, scenario)


def test_slow_answer_defers_then_edits_the_reply_in() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        def acknowledged() -> bool:
            return any(r.path.endswith("/callback") for r in env.http_requests)

        async def slow(command: Command) -> Reply:
            # Busy until the connector has acknowledged: slower than defer_after, whatever
            # the clock (simcord runs sleeps on virtual time, the defer timer on real time).
            while not acknowledged():
                await asyncio.sleep(0.01)
            return Reply(text="late but here @everyone")

        connector.answer = slow
        _, channel, alice = world(env)
        result = await alice.slash(channel, "fear")
        callbacks = [r for r in env.http_requests if r.path.endswith("/callback")]
        assert [c.json["type"] for c in callbacks] == [5]  # deferred: "moodring is thinking…"
        assert env.http_requests[-1].method == "PATCH"  # then the original is edited in
        assert env.http_requests[-1].path.endswith("/messages/@original")
        assert result.response is not None and result.response.content.startswith("late but")
        assert not result.response.message.mention_everyone
        assert mentions_disabled(env) == [{"parse": []}]

    simulate(rec, scenario, defer_after=0.02)


def test_failing_answer_still_replies() -> None:
    rec = Recorder()

    async def broken(command: Command) -> Reply:
        raise RuntimeError("bug")

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        connector.answer = broken
        _, channel, alice = world(env)
        result = await alice.slash(channel, "fear")
        assert result.response is not None and "failed on our side" in result.response.content

    simulate(rec, scenario)


def test_all_commands_are_registered() -> None:
    connector = connector_for(Recorder())
    names = {c.name for c in connector.tree.get_commands()}
    assert names == {
        "mood",
        "fear",
        "why",
        "trending",
        "chart",
        "price",
        "liquidations",
        "levels",
        "corr",
        "status",
        "dashboard",
        "subscribe",
        "unsubscribe",
        "alerts",
        "quiet",
        "forget",
        "summary",
        "digest",
        "settings",
        "help",
    }
    assert connector.client.allowed_mentions is not None
    assert connector.client.allowed_mentions.everyone is False
    intents = connector.client.intents
    assert intents.message_content and intents.guild_messages and intents.dm_messages
    assert not intents.members and not intents.presences


# ---------------------------------------------------------------------- sending


def test_sink_sends_without_mentions_and_with_image() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        _, channel, alice = world(env)
        sink = DiscordSink(connector.client)
        await sink.send(Reply(text="Alert @everyone", target=str(channel.id), image=PNG))
        await sink.send(Reply(text="your alert", target=f"user:{alice.id}"))

        sent = channel.last_message
        assert sent.content == "Alert @everyone" and not sent.mention_everyone
        assert [a.filename for a in sent.attachments] == ["chart.png"]
        dm = alice.user.dm_channel.last_message
        assert dm.content == "your alert"
        assert mentions_disabled(env) == [{"parse": []}, {"parse": []}]

    simulate(rec, scenario)


def test_sink_missing_channel_is_recipient_gone() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        world(env)
        sink = DiscordSink(connector.client)
        with pytest.raises(RecipientGone):
            await sink.send(Reply(text="hi", target="123456789012345678"))
        with pytest.raises(RecipientGone):
            await sink.send(Reply(text="hi", target="general"))

    simulate(rec, scenario)


def test_sink_server_error_is_retryable() -> None:
    rec = Recorder()

    async def scenario(env: simcord.Env, connector: DiscordConnector) -> None:
        _, channel, _ = world(env)
        env.inject_error("POST", "/channels/*/messages", status=500, times=None)
        with pytest.raises(DeliveryError) as info:
            await DiscordSink(connector.client).send(Reply(text="hi", target=str(channel.id)))
        assert not isinstance(info.value, RecipientGone)
        assert info.value.retry_after is None

    simulate(rec, scenario)


class FakeResponse:
    """The two attributes discord.HTTPException reads from an aiohttp response."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.reason = "test"
        self.headers = headers or {}


def test_delivery_error_mapping() -> None:
    limited = discord.HTTPException(FakeResponse(429, {"Retry-After": "7.5"}), "slow down")
    err = delivery_error(limited, "1")
    assert type(err) is DeliveryError and err.retry_after == 7.5

    limited.retry_after = 3.0  # type: ignore[attr-defined]
    assert delivery_error(limited, "1").retry_after == 3.0

    forbidden = discord.Forbidden(FakeResponse(403), {"code": 50007, "message": "no DMs"})
    assert isinstance(delivery_error(forbidden, "user:1"), RecipientGone)
    gone = discord.NotFound(FakeResponse(404), {"code": 10003, "message": "Unknown Channel"})
    assert isinstance(delivery_error(gone, "1"), RecipientGone)
    other = delivery_error(discord.HTTPException(FakeResponse(400), "bad"), "1")
    assert type(other) is DeliveryError and other.retry_after is None


def test_rate_limited_is_retry_after() -> None:
    async def main() -> None:
        connector = connector_for(Recorder())
        client = connector.client

        async def too_slow(*args: Any, **kwargs: Any) -> None:
            raise discord.RateLimited(42.0)

        channel = client.get_partial_messageable(1)
        channel.send = too_slow  # type: ignore[method-assign]
        client.get_partial_messageable = lambda *a, **k: channel  # type: ignore[method-assign]
        with pytest.raises(DeliveryError) as info:
            await DiscordSink(client).send(Reply(text="hi", target="1"))
        assert info.value.retry_after == 42.0

    asyncio.run(main())


# ---------------------------------------------------------------------- pure parts, run()


def test_split_text() -> None:
    assert split_text("") == []
    assert split_text("short") == ["short"]
    assert split_text("a" * 4500) == ["a" * 2000, "a" * 2000, "a" * 500]
    assert split_text("one\ntwo\nthree", limit=8) == ["one\ntwo", "three"]


def test_run_maps_bad_token_and_stops_on_event() -> None:
    async def main() -> None:
        connector = connector_for(Recorder())

        async def bad_token(token: str, *, reconnect: bool = True) -> None:
            raise discord.LoginFailure("Improper token has been passed.")

        connector.client.start = bad_token  # type: ignore[method-assign]
        with pytest.raises(SourceUnavailable):
            await connector.run("nope", asyncio.Event())

        closed = asyncio.Event()

        async def forever(token: str, *, reconnect: bool = True) -> None:
            await closed.wait()

        async def close() -> None:
            closed.set()

        connector = connector_for(Recorder())
        connector.client.start = forever  # type: ignore[method-assign]
        connector.client.close = close  # type: ignore[method-assign]
        stop = asyncio.Event()
        task = asyncio.create_task(connector.run("token", stop))
        await asyncio.sleep(0)
        stop.set()
        await asyncio.wait_for(task, 2)
        assert closed.is_set()

    asyncio.run(main())


BOT_USER = {"id": "42", "username": "moodring", "discriminator": "0", "global_name": None}
BOT_USER |= {"avatar": None, "bot": True, "verified": True, "mfa_enabled": False, "flags": 0}


def json_reply(payload: dict[str, Any], status: int = 200) -> Any:
    """An aiohttp JSON response as Discord sends it (discord.py decodes a body only when the
    content type is exactly application/json)."""
    from aiohttp import web

    body = json.dumps(payload).encode()
    return web.Response(body=body, status=status, headers={"Content-Type": "application/json"})


@contextlib.asynccontextmanager
async def loopback_discord(
    monkeypatch: pytest.MonkeyPatch, routes: Callable[[Any], None]
) -> AsyncIterator[None]:
    """Discord's REST API on 127.0.0.1 for discord.py's own HTTP client: the login routes
    (``Bot good`` is the one token accepted) plus the test's ``routes``."""
    from aiohttp import web

    async def me(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bot good":
            return json_reply({"message": "401: Unauthorized", "code": 0}, status=401)
        return json_reply(BOT_USER)

    async def application(request: web.Request) -> web.Response:
        app = {"id": "7", "name": "moodring", "description": "", "icon": None, "verify_key": "k"}
        flags = {"bot_public": False, "bot_require_code_grant": False}
        return json_reply(app | flags | {"owner": BOT_USER})

    app = web.Application()
    app.router.add_get("/api/v10/users/@me", me)
    app.router.add_get("/api/v10/oauth2/applications/@me", application)
    routes(app.router)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    monkeypatch.setattr(discord.http.Route, "BASE", f"http://127.0.0.1:{port}/api/v10")
    try:
        yield
    finally:
        await runner.cleanup()


def test_rest_client_logs_in_over_http_only_and_the_sink_sends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A deliverer's client: ``rest_client`` logs in (GET /users/@me) and ``DiscordSink`` posts
    to a channel it never saw, with no gateway; a rejected token is SourceUnavailable. Discord
    is a loopback aiohttp server that discord.py's own HTTP client talks to."""
    from aiohttp import web

    from connectors.discord import rest_client

    seen: list[tuple[str, str, Any]] = []
    user, reply = BOT_USER, json_reply

    async def post(request: web.Request) -> web.Response:
        body = await request.json()
        seen.append(("POST", request.path, body))
        return reply(
            {
                "id": "9001",
                "channel_id": request.match_info["channel"],
                "type": 0,
                "content": body["content"],
                "author": user,
                "timestamp": "2026-12-06T10:00:00+00:00",
                "edited_timestamp": None,
                "tts": False,
                "mention_everyone": False,
                "mentions": [],
                "mention_roles": [],
                "attachments": [],
                "embeds": [],
                "pinned": False,
            }
        )

    async def main() -> None:
        def routes(router: web.UrlDispatcher) -> None:
            router.add_post("/api/v10/channels/{channel}/messages", post)

        async with loopback_discord(monkeypatch, routes):
            with pytest.raises(SourceUnavailable, match="rejected"):
                await rest_client("bad")
            client = await rest_client("good")
            try:
                assert client.ws is None  # logged in, no gateway
                await DiscordSink(client).send(Reply("BTC mood 9/100 @everyone", target="1234"))
            finally:
                await client.close()

    asyncio.run(main())
    posts = [entry for entry in seen if entry[0] == "POST"]
    assert len(posts) == 1
    _, path, body = posts[0]
    assert path == "/api/v10/channels/1234/messages"
    assert body["content"] == "BTC mood 9/100 @everyone"
    assert body["allowed_mentions"]["parse"] == []  # the text cannot ping anyone


def test_rest_roles_asks_discord_for_the_server_and_the_member(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``moodring serve``'s Discord lookup, with no gateway: the server (its roles, owner)
    and the member are fetched over HTTP on every ask. A role named in ``admin_roles``, Manage
    Server or ownership makes a moderator; a member who left, or a server the bot is not in,
    has no role; a Discord error is SourceUnavailable, not "no"."""
    from aiohttp import web

    from connectors.discord import rest_client, rest_roles

    def user(uid: str) -> dict[str, Any]:
        return {"id": uid, "username": f"u{uid}", "discriminator": "0", "avatar": None}

    reply = json_reply
    manage_guild = 1 << 5
    roles = [
        {"id": "500", "name": "@everyone", "permissions": "0", "position": 0},
        {"id": "501", "name": "Mods", "permissions": "0", "position": 1},
        {"id": "502", "name": "Staff", "permissions": str(manage_guild), "position": 2},
    ]
    members = {"1": ["501"], "2": ["502"], "3": [], "9": []}  # 9 owns the server
    asked: list[str] = []

    async def guild(request: web.Request) -> web.Response:
        asked.append(request.path)
        gid = request.match_info["guild"]
        if gid == "404":
            return reply({"message": "Unknown Guild", "code": 10004}, status=404)
        if gid == "503":
            return reply({"message": "upstream", "code": 0}, status=503)
        if gid == "403":
            return reply({"message": "Missing Access", "code": 50001}, status=403)
        return reply({"id": gid, "name": "Crypto", "owner_id": "9", "roles": roles})

    async def member(request: web.Request) -> web.Response:
        asked.append(request.path)
        uid = request.match_info["user"]
        if uid == "503":
            return reply({"message": "upstream", "code": 0}, status=503)
        if uid not in members:
            return reply({"message": "Unknown Member", "code": 10007}, status=404)
        return reply({"user": user(uid), "roles": members[uid], "flags": 0, "joined_at": None})

    async def main() -> list[Any]:
        def routes(router: web.UrlDispatcher) -> None:
            router.add_get("/api/v10/guilds/{guild}", guild)
            router.add_get("/api/v10/guilds/{guild}/members/{user}", member)

        async with loopback_discord(monkeypatch, routes):
            return await ask_all()

    async def ask_all() -> list[Any]:
        client = await rest_client("good")
        results: list[Any] = []
        try:
            for server, uid in [("77", "1"), ("77", "2"), ("77", "3"), ("77", "9"), ("77", "5")]:
                cmd = Command("discord", server, server, uid, "dashboard")
                results.append(await rest_roles(client, cmd, ["mods"]))
            demoted = Command("discord", "77", "77", "1", "dashboard")
            members["1"] = []  # the Mods role taken away: the next ask sees it at once
            results.append(await rest_roles(client, demoted, ["mods"]))
            results.append(await rest_roles(client, Command("discord", "404", "c", "1", "x"), []))
            results.append(await rest_roles(client, Command("discord", "403", "c", "1", "x"), []))
            results.append(await rest_roles(client, Command("discord", "x1", "c", "1", "x"), []))
            with pytest.raises(SourceUnavailable, match="server"):
                await rest_roles(client, Command("discord", "503", "c", "1", "x"), [])
            with pytest.raises(SourceUnavailable, match="member"):
                await rest_roles(client, Command("discord", "77", "c", "503", "x"), [])
        finally:
            await client.close()
        return results

    admin, none = frozenset({"admin"}), frozenset()
    results = asyncio.run(main())
    # Mods, Manage Server, a plain member, the owner, one who left; the demoted Mod; a
    # server the bot is not in, or may not see; a non-numeric id.
    assert results == [admin, admin, none, admin, none, none, none, none, none]
    assert asked.count("/api/v10/guilds/77/members/1") == 2  # asked each time, not cached
    assert not any("x1" in path for path in asked)  # a non-numeric id is never sent
