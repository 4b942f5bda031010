"""The deployment files say what the README says: compose runs moodring, PostgreSQL 15 and
Redis 7 with healthchecks and volumes, secrets from the environment, and each stage worker as a
service of its own (profile "workers") whose command the real CLI accepts; the systemd unit runs
`moodring run` and restarts it. (`docker compose config` checks more where docker has the
compose plugin; this machine's docker has not.)"""

from __future__ import annotations

import configparser
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_compose_runs_the_bot_beside_postgres_and_redis_with_healthchecks() -> None:
    doc = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = doc["services"]
    workers = {"intake", "score", "index", "deliver"}
    assert set(services) == {"moodring", "postgres", "redis"} | workers
    assert services["postgres"]["image"] == "postgres:15"
    assert services["redis"]["image"] == "redis:7"
    for name, service in services.items():
        assert service["healthcheck"]["test"], name
        assert service["restart"] == "unless-stopped", name
        for volume in service.get("volumes", []):
            assert volume.split(":")[0] in doc["volumes"], (name, volume)
    bot = services["moodring"]
    assert bot["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert bot["environment"]["MOODRING_DB"].startswith("postgresql://")
    # No secret is written in the file: each comes from the environment (.env).
    text = (ROOT / "compose.yaml").read_text()
    assert "${POSTGRES_PASSWORD" in text and "${MOODRING_TELEGRAM_TOKEN" in text
    assert "torch==2.13.0" in (ROOT / "Dockerfile").read_text()


def test_compose_runs_each_stage_as_a_service_the_cli_accepts() -> None:
    from bot.app.cli import build_parser

    services = yaml.safe_load((ROOT / "compose.yaml").read_text())["services"]
    bot = services["moodring"]
    parser = build_parser()
    for role in ("intake", "score", "index", "deliver"):
        service = services[role]
        assert service["profiles"] == ["workers"], role  # never beside `run` by default
        assert service["image"] == bot["image"], role  # the image `moodring` builds
        assert service["environment"]["MOODRING_QUEUE"].startswith("redis://"), role
        assert service["environment"]["MOODRING_DB"] == bot["environment"]["MOODRING_DB"]
        assert service["depends_on"]["redis"]["condition"] == "service_healthy", role
        args = parser.parse_args(service["command"])
        assert (args.command, args.role) == ("worker", role)
    assert services["index"]["deploy"]["replicas"] >= 2  # a standby takes the lease over


def test_the_systemd_unit_runs_moodring_and_restarts_it() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((ROOT / "deploy" / "moodring.service").read_text())
    service = unit["Service"]
    assert service["ExecStart"].endswith("moodring run")
    assert service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "/etc/moodring/env"  # tokens, mode 600
    assert service["User"] == "moodring"
