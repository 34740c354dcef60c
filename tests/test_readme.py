"""The README and the docs pages keep their promises: the two fresh-machine commands, and every code block that can run.

The README's blocks and those of the pages under ``docs/`` are collected alike.

Python blocks run in a fresh interpreter (top-level ``await`` allowed) against a test server given by the
seed's variables (REDIS_HOST/PORT/PASSWORD) and a worker serving ``examples.jobs`` - unless an HTML comment
``<!-- readme: no-worker -->`` precedes the block. Shell blocks run when marked ``<!-- readme: run -->``;
blocks marked ``<!-- readme: skip: reason -->`` (and the first screen's install commands, which CI runs
itself) are not run here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from taskq_sdk._server import LocalServer

from .conftest import FAST_ENV, ROOT

README = (ROOT / "README.md").read_text()
DOC_PAGES = {p.name: p.read_text() for p in sorted((ROOT / "docs").glob("*.md"))}

RUNNER = """
import ast, asyncio, sys, types
source = open(sys.argv[1]).read()
code = compile(source, "README block", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
module = types.ModuleType("__main__")
if code.co_flags & 0x80:  # CO_COROUTINE: the block uses top-level await
    asyncio.run(eval(code, module.__dict__))
else:
    exec(code, module.__dict__)
"""


@dataclass
class Block:
    lang: str
    code: str
    line: int
    directive: str
    source: str = "README.md"

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def blocks(text: str, source: str = "README.md") -> list[Block]:
    out = []
    for m in re.finditer(r"(?:<!--\s*readme:\s*([^>]*?)\s*-->\s*\n)?```(\w+)\n(.*?)```", text, re.S):
        line = text[: m.start()].count("\n") + 1
        out.append(Block(m.group(2), m.group(3), line, (m.group(1) or "").strip(), source))
    return out


ALL = blocks(README)
EVERYWHERE = ALL + [b for name, text in DOC_PAGES.items() for b in blocks(text, f"docs/{name}")]
PYTHON = [b for b in EVERYWHERE if b.lang == "python" and not b.directive.startswith("skip")]
SHELL = [b for b in EVERYWHERE if b.lang == "bash" and b.directive == "run"]


def test_first_screen_has_the_two_fresh_machine_commands() -> None:
    first_screen = README.split("\n---\n", 1)[0]
    assert len(first_screen.splitlines()) <= 35, "the two commands must be on the first screen"
    run, test = [b.code.strip() for b in blocks(first_screen) if b.lang == "bash"]
    assert run.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")
    assert run.endswith("python -m taskq_sdk.demo")
    assert test.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = [b for b in ALL if b.lang == "bash"][1].code.strip()
    assert test_command in (ROOT / ".ci" / "run").read_text().splitlines()


def test_every_block_is_run_or_says_why_not() -> None:
    for b in EVERYWHERE:
        if b.lang in ("python", "bash") and b not in PYTHON and b not in SHELL:
            first_screen_command = b.source == "README.md" and b in [x for x in ALL if x.lang == "bash"][:2]
            assert first_screen_command or b.directive.startswith("skip:"), f"{b.where}: run it or say why not"


def test_every_setting_is_in_the_configuration_table() -> None:
    from taskq_sdk.config import Settings

    table = DOC_PAGES["configuration.md"]
    for name, field in Settings.model_fields.items():
        env = [a for a in getattr(field.validation_alias, "choices", []) if isinstance(a, str) and a.isupper()]
        assert env, name
        short = env[0].replace("TASKQ_DOWNLOAD", "").replace("TASKQ_RESULTS_DB", "")
        assert env[0] in table or short in table, f"{env[0]} is missing from docs/configuration.md"


def test_the_main_job_command_runs(tmp_path: Path) -> None:
    """The run half of the first command (the install half is what CI does)."""
    env = {**_base_env(), "TASKQ_DATA_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "taskq_sdk.demo", "--seconds", "2", "--no-progress"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert "complete" in out.stdout and "thumbnails (6)" in out.stdout


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "ARQ_", "TASKQ_"))}
    env.update(FAST_ENV)
    # README blocks show the defaults: the results DB on (under a temp TASKQ_DATA_DIR), schedules on
    env.pop("TASKQ_RESULTS_DB", None)
    env.pop("TASKQ_MONITORING_CRON", None)
    env["PYTHONPATH"] = str(ROOT)
    if os.environ.get("TASKQ_REDIS_SERVER"):
        env["TASKQ_REDIS_SERVER"] = os.environ["TASKQ_REDIS_SERVER"]
    return env


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("readme-data")
    server = LocalServer().start()
    env = _base_env()
    env.update(
        {
            "REDIS_HOST": server.host,
            "REDIS_PORT": str(server.port),
            "REDIS_PASSWORD": server.password,
            "TASKQ_DATA_DIR": str(data),
        }
    )
    try:
        yield {"server": server, "env": env, "tmp": tmp_path_factory.mktemp("readme-blocks")}
    finally:
        server.stop()


@pytest.fixture
def worker_for(harness: dict[str, Any]) -> Iterator[Any]:
    procs: list[subprocess.Popen[bytes]] = []

    def start() -> None:
        import redis

        r = redis.Redis(host=harness["server"].host, port=harness["server"].port, password=harness["server"].password)
        r.flushall()
        proc = subprocess.Popen(
            [sys.executable, "-m", "taskq_sdk.worker", "examples.jobs"],
            cwd=ROOT,
            env=harness["env"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(proc)
        from .conftest import wait_until

        wait_until(lambda: r.zcard("taskq:workers") > 0, timeout=60, what="README worker up")
        r.close()

    yield start
    for p in procs:
        p.terminate()
        p.terminate()
        p.wait(15)


@pytest.mark.parametrize("block", PYTHON, ids=[b.where for b in PYTHON])
def test_python_block_runs(block: Block, harness: dict[str, Any], worker_for: Any) -> None:
    if block.directive != "no-worker":
        worker_for()
    else:
        import redis

        s = harness["server"]
        redis.Redis(host=s.host, port=s.port, password=s.password).flushall()
    path = harness["tmp"] / f"block_{block.source.replace('/', '_')}_{block.line}.py"
    path.write_text(block.code)
    out = subprocess.run(
        [sys.executable, "-c", RUNNER, str(path)], cwd=ROOT, env=harness["env"], capture_output=True, text=True,
        timeout=240,
    )  # fmt: skip
    assert out.returncode == 0, f"the block at {block.where} failed:\n{out.stderr[-4000:]}"


@pytest.mark.parametrize("block", SHELL, ids=[b.where for b in SHELL])
def test_shell_block_runs(block: Block, harness: dict[str, Any], worker_for: Any) -> None:
    worker_for()
    bindir = str(Path(sys.executable).parent)
    env = {**harness["env"], "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    out = subprocess.run(
        ["bash", "-e", "-c", block.code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    assert out.returncode == 0, f"the shell block at {block.where} failed:\n{out.stdout[-2000:]}{out.stderr[-2000:]}"
