"""Files that cannot run here (Docker, compose, conda) are checked structurally; the examples run."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT

yaml = pytest.importorskip("yaml")
DEPLOY = ROOT / "examples" / "deploy"


def test_compose_has_the_seed_services() -> None:
    doc = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = doc["services"]
    assert {"redis", "arq-worker"} <= set(services)
    worker = services["arq-worker"]
    assert worker["command"][:3] == ["python", "-m", "taskq_sdk.worker"]
    env = dict(item.split("=", 1) for item in worker["environment"])
    assert env["REDIS_HOST"] == "redis" and env["REDIS_PORT"] == "6379"
    assert "redis" in worker["depends_on"]
    assert worker["build"]["dockerfile"] == "examples/deploy/Dockerfile"
    assert worker["deploy"]["replicas"] >= 2, "scaled to several workers"
    assert "--requirepass" in services["redis"]["command"]


def test_redis_config_is_production_minded() -> None:
    conf = dict(
        line.split(None, 1) for line in (DEPLOY / "redis.conf").read_text().splitlines() if line and line[0] != "#"
    )
    assert conf["appendonly"] == "yes" and conf["maxmemory-policy"] == "noeviction"


def test_dockerfile_installs_and_runs_the_worker() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert "FROM python:3.11" in text and 'pip install ".[' in text and "USER taskq" in text
    assert 'CMD ["python", "-m", "taskq_sdk.worker"' in text


def test_conda_environment_installs_the_project() -> None:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert any(p.startswith("-e") and "[all]" in p for p in pip)


def test_stock_arq_settings_of_the_example_module() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import examples.jobs as m; s = m.WorkerSettings; print(len(s.functions))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert int(out.stdout) >= 4


def test_quickstart_example_runs() -> None:
    out = subprocess.run(
        [sys.executable, "examples/quickstart.py"], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert out.returncode == 0, out.stderr[-3000:]
    for expected in ("word_count ->", "crunch -> 22140", "cancel -> True", "failure -> AttributeError", "attempts)"):
        assert expected in out.stdout


def test_sentinel_compose_has_a_primary_a_replica_three_sentinels_and_workers() -> None:
    from taskq_sdk.config import Settings

    doc = yaml.safe_load((DEPLOY / "docker-compose.sentinel.yml").read_text())
    services = doc["services"]
    assert {"redis-primary", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3", "arq-worker"} <= set(services)
    assert "--replicaof" in services["redis-replica"]["command"]
    assert "redis-primary" in services["redis-replica"]["command"]
    for name in ("sentinel-1", "sentinel-2", "sentinel-3"):
        script = services[name]["command"][-1]
        assert (
            "redis-server /tmp/sentinel.conf --sentinel" in script
            and "sentinel monitor mymaster redis-primary 6379 2" in script
        )
        assert "requirepass" in script and "sentinel auth-pass mymaster" in script
    worker = services["arq-worker"]
    assert worker["command"][:3] == ["python", "-m", "taskq_sdk.worker"]
    env = dict(item.split("=", 1) for item in worker["environment"])
    hosts = env["REDIS_SENTINELS"]
    assert {h.split(":")[0] for h in hosts.split(",")} == {"sentinel-1", "sentinel-2", "sentinel-3"}
    settings = Settings(
        redis_sentinels=hosts, redis_sentinel_master=env["REDIS_SENTINEL_MASTER"], redis_password="x",
        redis_sentinel_password="y",
    )  # fmt: skip
    address = settings.sentinel()
    assert address is not None and address.master == "mymaster" and len(address.sentinels) == 3
    assert worker["deploy"]["replicas"] >= 2
