"""The public JSON API under load: requests/s and p50/p99 latency per endpoint (not a test).

    .venv/bin/python scripts/bench_api.py --db moodring.db           # after `moodring demo`
    .venv/bin/python scripts/bench_api.py --db moodring.db --requests 2000 --concurrency 16

`moodring serve`'s own app (``bot.web.app.create_app``) runs under uvicorn on 127.0.0.1 (a free
port) in this process's event loop, and an httpx client keeps ``--concurrency`` requests in
flight until ``--requests`` have been answered for each endpoint, one endpoint after the other.
``/api/v1/health`` is the baseline: the same server, middleware and ETag work, no index or
market read, so the other rows' excess over it is the reading itself. The per-address rate
limit is raised out of the way (every request comes from 127.0.0.1). "first ms" is each
endpoint's first request, which computes the answer; the server keeps answers a minute, so the
load that follows (after a few warm-up requests) measures serving kept answers, what a popular
URL costs. Latency is per request, from send to the last byte, client side.
Peak RSS is the process's (server and client together).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import resource
import socket
import statistics
import sys
import time
from pathlib import Path

import httpx
import uvicorn

from bot.store import Store
from bot.web.app import ApiConfig, create_app

ENDPOINTS = (
    "/api/v1/health",
    "/api/v1/mood?asset=BTC",
    "/api/v1/mood",
    "/api/v1/fng",
    "/api/v1/fng?limit=10",
    "/api/v1/levels?asset=BTC",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def load(
    client: httpx.AsyncClient, path: str, n: int, concurrency: int
) -> tuple[float, list[float]]:
    """``n`` requests of ``path`` with ``concurrency`` in flight: (seconds, latencies)."""
    todo = iter(range(n))
    latencies: list[float] = []

    async def worker() -> None:
        for _ in todo:
            t0 = time.perf_counter()
            r = await client.get(path)
            latencies.append(time.perf_counter() - t0)
            if r.status_code != 200:
                raise SystemExit(f"{path}: HTTP {r.status_code}: {r.text[:200]}")

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - start, latencies


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(db: Path, requests: int, concurrency: int) -> None:
    store = Store(db)
    app = create_app(store, ApiConfig(rate_per_minute=10**9))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    print(f"{db}: {requests} requests per endpoint, {concurrency} in flight, uvicorn + httpx")
    print(f"{'endpoint':<28}{'first ms':>9}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'mean ms':>9}")
    try:
        async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
            for path in ENDPOINTS:
                # The first request computes the answer (kept a minute): its own latency.
                _, (first,) = await load(client, path, 1, 1)
                await load(client, path, min(20, requests), min(4, concurrency))  # warm
                seconds, lat = await load(client, path, requests, concurrency)
                print(
                    f"{path:<28}{1000 * first:>9.1f}{requests / seconds:>9.0f}"
                    f"{1000 * pct(lat, 0.5):>9.1f}"
                    f"{1000 * pct(lat, 0.99):>9.1f}{1000 * statistics.fmean(lat):>9.1f}"
                )
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        store.close()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, default=Path("moodring.db"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    if not args.db.is_file():
        sys.exit(f"no database at {args.db}: run `moodring demo` first")
    asyncio.run(main(args.db, args.requests, args.concurrency))
