"""The README's first screen keeps its promises: two commands, and CI runs the second one verbatim."""

from __future__ import annotations

import re

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


def _bash_blocks(text: str) -> list[str]:
    return [b.strip() for b in re.findall(r"```bash\n(.*?)```", text, re.S)]


def test_first_screen_has_the_two_fresh_machine_commands() -> None:
    first_screen = "\n".join(README.splitlines()[:30])
    blocks = _bash_blocks(first_screen)
    assert len(blocks) == 2
    run, test = blocks
    assert run.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install")
    assert "python -m taskq_sdk.demo" in run
    assert test.endswith("python -m pytest")


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    test_command = _bash_blocks(README)[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_command in ci.splitlines()
