"""A fake Telegram Bot API server on 127.0.0.1 for tests: real HTTP, documented JSON shapes.

It runs in its own thread and event loop, so a test can drive the real PTB ``Bot`` with
``asyncio.run``. Every request is recorded (method, form parameters, uploaded files) and the
next call can be told to fail with 429 (``parameters.retry_after``), 403, 400 or 500.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.loopback import LoopbackServer

BOT_ID = 123456789
TOKEN = f"{BOT_ID}:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawZ"  # shaped like a real token, not one
BOT_USERNAME = "moodring_test_bot"
_DATE = 1_700_000_000


@dataclass(frozen=True, slots=True)
class Upload:
    """One file part of a multipart request."""

    filename: str | None
    content_type: str
    data: bytes


@dataclass(frozen=True, slots=True)
class Call:
    """One request the fake received."""

    method: str
    params: dict[str, str]  # form fields as sent (lists and objects are JSON text)
    files: dict[str, Upload]
    content_type: str
    at: float  # time.monotonic()


@dataclass(frozen=True, slots=True)
class Failure:
    """How to answer one upcoming call instead of serving it."""

    status: int
    description: str
    retry_after: int | None = None
    method: str | None = None  # None: whichever method comes next


TOO_MANY = Failure(429, "Too Many Requests: retry after 1", retry_after=1)
BLOCKED = Failure(403, "Forbidden: bot was blocked by the user")
KICKED = Failure(403, "Forbidden: bot was kicked from the supergroup chat")
CHAT_NOT_FOUND = Failure(400, "Bad Request: chat not found")
SERVER_ERROR = Failure(500, "Internal Server Error")


@dataclass
class FakeTelegram:
    """The fake server's state; start it with ``start()`` and point ``Bot(base_url=...)`` at
    ``base_url``."""

    token: str = TOKEN
    long_poll_wait: float = 0.05  # how long an empty getUpdates waits at most (not ``timeout``)
    calls: list[Call] = field(default_factory=list)
    admins: dict[int, list[int]] = field(default_factory=dict)  # chat id → admin user ids
    confirmed: list[int] = field(default_factory=list)  # update ids dropped by a higher offset
    _queue: list[dict] = field(default_factory=list)
    _failures: deque[Failure] = field(default_factory=deque)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: Any = field(default_factory=lambda: itertools.count(1000))
    _server: LoopbackServer = field(init=False)

    def __post_init__(self) -> None:
        self._server = LoopbackServer("fake Telegram", self._routes)

    # ------------------------------------------------------------------ control (test side)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}/bot"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()  # releases held long polls first

    def queue_update(self, update: dict) -> None:
        """Make ``update`` available to getUpdates (until an offset above it confirms it)."""
        with self._lock:
            self._queue.append(update)

    def fail_next(self, failure: Failure) -> None:
        """Answer the next matching call with ``failure`` instead of serving it."""
        with self._lock:
            self._failures.append(failure)

    def requests(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def queued_ids(self) -> list[int]:
        with self._lock:
            return [u["update_id"] for u in self._queue]

    # ------------------------------------------------------------------ server

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/bot{token}/{method}", self._handle)
        app.router.add_get("/bot{token}/{method}", self._handle)

    async def _handle(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return _error(401, "Unauthorized")
        method = request.match_info["method"]
        params: dict[str, str] = {}
        files: dict[str, Upload] = {}
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = Upload(value.filename, value.content_type, value.file.read())
            else:
                params[key] = str(value)
        with self._lock:
            self.calls.append(Call(method, params, files, request.content_type, time.monotonic()))
            failure = self._take_failure(method)
        if failure is not None:
            return _error(failure.status, failure.description, failure.retry_after)
        handler = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "getChatAdministrators": self._get_chat_administrators,
        }.get(method)
        if handler is None:
            return _error(404, "Not Found")
        return await handler(params, files)

    def _take_failure(self, method: str) -> Failure | None:
        for failure in self._failures:
            if failure.method in (None, method):
                self._failures.remove(failure)
                return failure
        return None

    async def _get_me(self, params: dict[str, str], files: dict[str, Upload]) -> web.Response:
        return _ok(_bot_user())

    async def _get_updates(self, params: dict[str, str], files: dict[str, Upload]) -> web.Response:
        offset = int(params["offset"]) if "offset" in params else None
        limit = int(params.get("limit", 100))
        timeout = float(params.get("timeout", 0))
        deadline = time.monotonic() + min(timeout, self.long_poll_wait)
        while True:
            with self._lock:
                if offset is not None:
                    # Calling with an offset confirms every update below it: Telegram forgets them.
                    self.confirmed.extend(
                        u["update_id"] for u in self._queue if u["update_id"] < offset
                    )
                    self._queue = [u for u in self._queue if u["update_id"] >= offset]
                batch = sorted(self._queue, key=lambda u: u["update_id"])[:limit]
            if batch or self._server.closing or time.monotonic() >= deadline:
                return _ok(batch)
            await asyncio.sleep(0.01)

    async def _send_message(self, params: dict[str, str], files: dict[str, Upload]) -> web.Response:
        text = params.get("text", "")
        if not text.strip():
            return _error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return _error(400, "Bad Request: message is too long")
        return _ok(self._sent(params, {"text": text}))

    async def _send_photo(self, params: dict[str, str], files: dict[str, Upload]) -> web.Response:
        if "photo" not in files:
            return _error(400, "Bad Request: there is no photo in the request")
        caption = params.get("caption")
        if caption is not None and len(caption) > 1024:
            return _error(400, "Bad Request: message caption is too long")
        photo = [
            {
                "file_id": f"AgACAgIAAxk{size}",
                "file_unique_id": f"AQAD{size}",
                "width": size,
                "height": size // 2,
                "file_size": len(files["photo"].data),
            }
            for size in (90, 320, 800)
        ]
        extra: dict[str, Any] = {"photo": photo}
        if caption is not None:
            extra["caption"] = caption
        return _ok(self._sent(params, extra))

    async def _get_chat_administrators(
        self, params: dict[str, str], files: dict[str, Upload]
    ) -> web.Response:
        chat_id = int(params["chat_id"])
        if chat_id > 0:
            return _error(400, "Bad Request: there are no administrators in the private chat")
        if chat_id not in self.admins:
            return _error(400, "Bad Request: chat not found")
        members: list[dict] = []
        for i, user_id in enumerate(self.admins[chat_id]):
            user = {"id": user_id, "is_bot": False, "first_name": f"Admin{user_id}"}
            if i == 0:
                members.append({"status": "creator", "user": user, "is_anonymous": False})
            else:
                members.append(_administrator(user))
        members.append(_administrator(_bot_user()))
        return _ok(members)

    def _sent(self, params: dict[str, str], extra: dict[str, Any]) -> dict:
        chat_id = int(params["chat_id"])
        chat = (
            {"id": chat_id, "type": "private", "first_name": "User"}
            if chat_id > 0
            else {"id": chat_id, "type": "supergroup", "title": "Group"}
        )
        message = {
            "message_id": next(self._ids),
            "from": _bot_user(),
            "chat": chat,
            "date": _DATE,
            **extra,
        }
        if "message_thread_id" in params:
            message["message_thread_id"] = int(params["message_thread_id"])
            message["is_topic_message"] = True
        return message


def _bot_user() -> dict:
    return {
        "id": BOT_ID,
        "is_bot": True,
        "first_name": "Moodring",
        "username": BOT_USERNAME,
        "can_join_groups": True,
        "can_read_all_group_messages": True,
        "supports_inline_queries": False,
    }


def _administrator(user: dict) -> dict:
    rights = [
        "can_manage_chat",
        "can_delete_messages",
        "can_manage_video_chats",
        "can_restrict_members",
        "can_promote_members",
        "can_change_info",
        "can_invite_users",
        "can_post_stories",
        "can_edit_stories",
        "can_delete_stories",
        "can_pin_messages",
        "can_manage_topics",
    ]
    return {
        "status": "administrator",
        "user": user,
        "can_be_edited": False,
        "is_anonymous": False,
        **{right: True for right in rights},
    }


def _ok(result: Any) -> web.Response:
    return web.json_response({"ok": True, "result": result})


def _error(status: int, description: str, retry_after: int | None = None) -> web.Response:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if retry_after is not None:
        body["parameters"] = {"retry_after": retry_after}
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")
