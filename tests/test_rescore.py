"""`moodring rescore`: history re-scored by a new model, rebuilt, resumable, never sent."""

from __future__ import annotations

import json
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from safetensors.torch import load_file, save_file

from bot.app.cli import main as cli_main
from bot.app.demo import older_models_line
from bot.pipeline.config import PipelineConfig
from bot.pipeline.rescore import REBUILD_CHECKPOINT, rebuild, rescore
from bot.render import models_text, reading_text
from bot.store import Store, runlock
from bot.types import Scope
from nlp.scorer import Scorer
from tests.doubles import RecordingSink
from tests.test_pipeline_e2e import START, run_once, write_stream

CONFIG = PipelineConfig(sinks_targets=(("chat", "group-1"),))


@pytest.fixture(scope="module")
def flipped_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny model with its bearish and bullish outputs swapped, under a new model id:
    a "new model" whose readings differ from the old one's in a way a test can see."""
    out = tmp_path_factory.mktemp("flipped-model")
    for f in tiny_model_dir.iterdir():
        shutil.copy(f, out / f.name)
    weights = load_file(str(out / "model.safetensors"))
    for name in ("classifier.weight", "classifier.bias"):
        weights[name] = weights[name][[2, 1, 0]].contiguous()
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    meta = json.loads((out / "moodring.json").read_text())
    meta.pop("weights_sha256", None)
    meta["model_id"] = "tiny-test-model-v2"
    (out / "moodring.json").write_text(json.dumps(meta))
    return out


@pytest.fixture
def scored_db(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, RecordingSink]:
    """A database the old model scored, whose alerts were all delivered."""
    stream = tmp_path / "posts.jsonl"
    write_stream(stream)
    db = tmp_path / "moodring.db"
    sink = RecordingSink()
    run_once(db, stream, tiny_model_dir, sink)
    return db, sink


def _readings(store: Store) -> list[tuple]:
    return store.query(
        "SELECT scope, window, at, value, models FROM readings ORDER BY scope, window, at"
    )


def _panic_day_value(store: Store) -> float:
    [[value]] = store.query(
        "SELECT value FROM readings WHERE scope = '*|*|*' AND window = '24h' AND at = ?",
        [(START + timedelta(days=2, hours=23)).isoformat()],
    )
    return value


def test_rescore_rebuilds_readings_and_alerts_and_sends_nothing(
    scored_db: tuple[Path, RecordingSink], flipped_model_dir: Path
) -> None:
    db, sink = scored_db
    store = Store(db)
    try:
        sent_before = len(sink.sent)
        old_alerts = store.alerts_between(START, START + timedelta(days=4))
        [[outbox_before]] = store.query("SELECT COUNT(*) FROM outbox")
        last_tick = store.checkpoint_time()
        n_readings = len(_readings(store))
        assert _panic_day_value(store) < 25  # the old model reads the panic as Extreme Fear
        assert {r[4] for r in _readings(store)} - {"[]"} == {'["tiny-test-model"]'}

        report = rescore(store, Scorer(flipped_model_dir, cache_size=0), CONFIG, chunk=100)

        [[n_messages]] = store.query("SELECT COUNT(*) FROM messages")
        assert report.rescored == n_messages and report.kept_purged == 0
        assert store.model_counts() == {"tiny-test-model-v2": report.rescored}
        assert report.rebuilt_from is not None and report.rebuilt_from <= START
        # Every hour is computed again, up to the same last tick, on the new scores only.
        assert store.checkpoint_time() == last_tick
        assert len(_readings(store)) == n_readings
        assert {r[4] for r in _readings(store)} - {"[]"} == {'["tiny-test-model-v2"]'}
        assert _panic_day_value(store) > 75  # the flipped model reads it as Extreme Greed
        new_alerts = store.alerts_between(START, START + timedelta(days=4))
        assert new_alerts and {a.key for a in new_alerts} != {a.key for a in old_alerts}
        assert any("Extreme Greed" in a.title for a in new_alerts)
        # Nothing queued, nothing sent; the delivered alerts stay on record.
        [[outbox_after]] = store.query("SELECT COUNT(*) FROM outbox")
        [[unsent]] = store.query("SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL")
        assert outbox_after == outbox_before and unsent == 0
        assert len(sink.sent) == sent_before
        [[superseded]] = store.query("SELECT COUNT(*) FROM alerts_superseded")
        assert superseded == len(old_alerts) == report.alerts_before
        assert store.checkpoint(REBUILD_CHECKPOINT) is None
        # A second run finds nothing to do.
        again = rescore(store, Scorer(flipped_model_dir, cache_size=0), CONFIG)
        assert again.rescored == 0 and again.rebuilt_from is None
    finally:
        store.close()


def test_a_rescore_since_an_hour_keeps_rule_state_exact(
    scored_db: tuple[Path, RecordingSink], flipped_model_dir: Path
) -> None:
    """``--since`` in the middle of an extreme band: the rebuild must not record the band
    as entered again (rule state is replayed from the first hour), and it ends with the
    alerts, readings and rule state that a rebuild of the whole history gives."""
    db, _ = scored_db
    since = START + timedelta(days=2, hours=12)  # the panic day, Extreme Fear entered before
    store = Store(db)
    try:
        entered = [a for a in store.alerts_between(START, since) if "Extreme Fear" in a.title]
        assert entered, "the stream's panic enters Extreme Fear before `since`"
        store.db.execute(
            "UPDATE scores SET model_id = 'older-model' WHERE message_id IN"
            " (SELECT message_id FROM messages WHERE created_at >= ?)",
            [since.isoformat()],
        )
        store.db.commit()
        before = {a.key for a in store.alerts_between(START, since)}

        report = rescore(store, Scorer(flipped_model_dir, cache_size=0), CONFIG, since=since)

        assert report.rebuilt_from == since and report.rescored > 0
        # Nothing dated before the rebuild hour is added or removed.
        assert {a.key for a in store.alerts_between(START, since)} == before
        after = store.alerts_between(START, START + timedelta(days=4))
        state = store.query("SELECT scope, window, state FROM alert_state ORDER BY 1, 2")
        readings = _readings(store)
        # The same end as rebuilding everything from the first hour.
        rebuild(store, CONFIG, START)
        assert store.alerts_between(START, START + timedelta(days=4)) == after
        assert store.query("SELECT scope, window, state FROM alert_state ORDER BY 1, 2") == state
        assert _readings(store) == readings
    finally:
        store.close()


class CrashAfter:
    """A scorer that dies after ``n`` calls, as a killed process would."""

    def __init__(self, scorer: Scorer, n: int) -> None:
        self.scorer, self.n, self.model_id = scorer, n, scorer.model_id

    def score(self, texts):
        if self.n == 0:
            raise KeyboardInterrupt
        self.n -= 1
        return self.scorer.score(texts)


def test_an_interrupted_rescore_resumes_and_ends_where_a_clean_one_does(
    tmp_path: Path, tiny_model_dir: Path, flipped_model_dir: Path
) -> None:
    stream = tmp_path / "posts.jsonl"
    write_stream(stream)
    clean_db, crash_db = tmp_path / "clean.db", tmp_path / "crash.db"
    for db in (clean_db, crash_db):
        run_once(db, stream, tiny_model_dir, RecordingSink())
    new = Scorer(flipped_model_dir, cache_size=0)
    clean = Store(clean_db)
    crashed = Store(crash_db)
    try:
        rescore(clean, new, CONFIG, chunk=100)
        with pytest.raises(KeyboardInterrupt):
            rescore(crashed, CrashAfter(new, 3), CONFIG, chunk=100)
        counts = crashed.model_counts()
        assert counts["tiny-test-model-v2"] == 300 and counts["tiny-test-model"] > 0
        assert crashed.checkpoint(REBUILD_CHECKPOINT) is not None
        report = rescore(crashed, new, CONFIG, chunk=100)
        assert report.rescored == counts["tiny-test-model"]
        assert _readings(crashed) == _readings(clean)
        key = "key, kind, scope, at, title, detail, value, previous, evidence"
        alerts_sql = f"SELECT {key} FROM alerts ORDER BY key"
        assert crashed.query(alerts_sql) == clean.query(alerts_sql)
    finally:
        clean.close()
        crashed.close()


def test_purged_messages_keep_their_old_score_and_readings_say_mixed_models(
    scored_db: tuple[Path, RecordingSink], flipped_model_dir: Path
) -> None:
    db, _ = scored_db
    store = Store(db)
    try:
        purged = store.purge_texts(START + timedelta(days=1))
        assert purged > 0
        report = rescore(store, Scorer(flipped_model_dir, cache_size=0), CONFIG)
        assert report.kept_purged == purged
        assert store.model_counts()["tiny-test-model"] == purged
        # The second day's readings count both the purged day and rescored posts.
        [[models]] = store.query(
            "SELECT models FROM readings WHERE scope = '*|*|*' AND window = '24h' AND at = ?",
            [(START + timedelta(days=1, hours=12)).isoformat()],
        )
        assert json.loads(models) == ["tiny-test-model", "tiny-test-model-v2"]
        at = START + timedelta(days=1, hours=12)
        [reading] = store.readings(Scope(), "24h", at, at)
        assert "mixed models" in reading_text(reading)
        assert "moodring rescore" in models_text(reading)
    finally:
        store.close()


def test_rescore_refuses_while_the_bot_runs_on_the_same_database(
    scored_db: tuple[Path, RecordingSink], flipped_model_dir: Path, capsys
) -> None:
    db, _ = scored_db
    with runlock.hold(db, "run"):
        code = cli_main(["--db", str(db), "--model-dir", str(flipped_model_dir), "rescore"])
    assert code == 2
    err = capsys.readouterr().err
    assert "in use by moodring run" in err and "stop it first" in err
    store = Store(db)
    try:
        assert set(store.model_counts()) == {"tiny-test-model"}  # untouched
    finally:
        store.close()
    # Once the bot has stopped, the command runs and reports.
    code = cli_main(
        ["--db", str(db), "--model-dir", str(flipped_model_dir), "rescore", "--no-progress"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "rescored" in out and "none sent" in out
    assert json.loads(out.strip().splitlines()[-1])["model_id"] == "tiny-test-model-v2"


def test_the_demo_names_the_rescore_command_on_a_database_of_an_older_model(
    scored_db: tuple[Path, RecordingSink],
) -> None:
    db, _ = scored_db
    store = Store(db)
    try:
        line = older_models_line(store, "tiny-test-model-v2")
        assert line is not None and "moodring rescore" in line and "tiny-test-model" in line
        assert "\n" not in line
        assert older_models_line(store, "tiny-test-model") is None
    finally:
        store.close()
