"""The package as a user gets it: the sdist and wheel built, the wheel installed into a fresh venv and run.

Nothing here uses the editable install the suite runs from: ``python -m build`` makes both archives from a
copy of the sources, ``twine check`` reads their metadata, and a new venv installs the *wheel* (with the
``video`` extra the demo needs) from PyPI and runs ``taskq --help``, ``taskq --version`` and the demo from a
directory outside the repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import venv
import zipfile
from pathlib import Path

import pytest

from .conftest import ROOT

pytestmark = pytest.mark.package

pytest.importorskip("build", reason='needs the build frontend: pip install -e ".[dev]"')
pytest.importorskip("twine", reason='needs twine: pip install -e ".[dev]"')

VERSION = (ROOT / "taskq_sdk" / "_version.py").read_text().split('"')[1]


def _run(cmd: list[str], *, cwd: Path, timeout: float, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert out.returncode == 0, f"{cmd} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    _run([sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)], cwd=ROOT, timeout=600)
    return out


@pytest.fixture(scope="module")
def wheel(dist: Path) -> Path:
    (found,) = dist.glob("taskq_sdk-*-py3-none-any.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel (not the source tree) installed; returns its bin directory."""
    env_dir = tmp_path_factory.mktemp("wheel-venv")
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / "bin"
    _run([str(bin_dir / "python"), "-m", "pip", "install", "-q", f"{wheel}[video]"], cwd=env_dir, timeout=900)
    return bin_dir


def _clean_env(bin_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "TASKQ_", "ARQ_", "PYTHON"))}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(bin_dir.parent)
    return env


def test_both_archives_are_named_by_the_version_and_pass_twine_check(dist: Path) -> None:
    names = sorted(p.name for p in dist.iterdir())
    assert names == [f"taskq_sdk-{VERSION}-py3-none-any.whl", f"taskq_sdk-{VERSION}.tar.gz"]
    report = _run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())], cwd=dist, timeout=120
    )
    assert report.count("PASSED") == 2, report


def test_wheel_holds_the_package_typed_and_nothing_else(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert "taskq_sdk/py.typed" in names
    assert "taskq_sdk/_backend/engine.py" in names and "taskq_sdk/views/widgets.py" in names
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"taskq_sdk", f"taskq_sdk-{VERSION}.dist-info"}, tops
    assert not [n for n in names if n.endswith(".ipynb") or "/tests/" in n or n.split("/")[-1].startswith("test_")]
    meta = zipfile.ZipFile(wheel).read(f"taskq_sdk-{VERSION}.dist-info/METADATA").decode()
    assert "License-Expression: MIT" in meta and "Provides-Extra: video" in meta
    entry_points = zipfile.ZipFile(wheel).read(f"taskq_sdk-{VERSION}.dist-info/entry_points.txt").decode()
    assert "taskq = taskq_sdk.cli:main" in entry_points


def test_sdist_holds_the_sources_without_tests_or_notebooks(dist: Path) -> None:
    (sdist,) = dist.glob("*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames() if "/" in n]
    assert {"pyproject.toml", "README.md", "taskq_sdk/py.typed", "taskq_sdk/cli.py"} <= set(names)
    assert not [n for n in names if n.startswith(("tests/", "notebooks/", "bench/")) or n.endswith(".ipynb")]


def test_installed_wheel_runs_the_cli_from_outside_the_repository(installed: Path, tmp_path: Path) -> None:
    env = _clean_env(installed)
    where = _run(
        [str(installed / "python"), "-c", "import taskq_sdk; print(taskq_sdk.__file__)"],
        cwd=tmp_path,
        timeout=60,
        env=env,
    )
    assert str(installed.parent) in where and str(ROOT) not in where, where
    assert (
        _run([str(installed / "taskq"), "--version"], cwd=tmp_path, timeout=60, env=env).strip() == f"taskq {VERSION}"
    )
    help_text = _run([str(installed / "taskq"), "--help"], cwd=tmp_path, timeout=60, env=env)
    for command in ("worker", "local", "jobs", "workers", "metrics", "health"):
        assert command in help_text


def test_installed_wheel_runs_the_demo(installed: Path, tmp_path: Path) -> None:
    env = _clean_env(installed)
    env["HOME"] = str(tmp_path)  # the embedded server's state and the demo's files stay in this test's directory
    out = _run(
        [str(installed / "python"), "-m", "taskq_sdk.demo", "--seconds", "3", "--no-progress", "--out", str(tmp_path)],
        cwd=tmp_path,
        timeout=300,
        env=env,
    )
    assert "generated" in out and ": complete in" in out and " h264 320x" in out, out
    thumbnails = list((tmp_path / "artifacts").rglob("thumb_*.jpg"))
    assert thumbnails and f"thumbnails ({len(thumbnails)})" in out, out
