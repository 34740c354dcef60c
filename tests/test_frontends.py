"""Front ends without a widget manager: handles and batches show as HTML or text that is current when re-shown.

VS Code without the widget renderer, Colab without its custom widget manager and exported notebooks render
a display's ``text/html`` (or ``text/plain``) instead of the widget; plain IPython prints ``text/plain``.
Here a real kernel (jupyter_client) shows a job and a batch while they run and again after they finished;
the second showing must say they finished. Plain IPython formats a job the same way in a subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from .conftest import ROOT
from .test_kernel import Kernel

pytest.importorskip("jupyter_client")
pytest.importorskip("ipykernel")

pytestmark = pytest.mark.notebook

WIDGET = "application/vnd.jupyter.widget-view+json"


BLOCK_IPYWIDGETS = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "ipywidgets" or name.startswith("ipywidgets."):
            raise ImportError("not installed (blocked by the test)")
sys.meta_path.insert(0, _Block())
"""


@pytest.fixture(params=["with ipywidgets", "without ipywidgets"])
def kernel(request: pytest.FixtureRequest) -> Iterator[Kernel]:
    k = Kernel()
    if request.param == "without ipywidgets":
        k.run(BLOCK_IPYWIDGETS)
    k.run(
        """
import time
from taskq_sdk import LocalCluster
cluster = LocalCluster(n_workers=1)
client = cluster.client()

@cluster.job
def steps(n: int) -> int:
    time.sleep(0.1 * n)
    return n
"""
    )
    yield k
    k.run("cluster.close()")
    k.close()


def test_a_job_shown_again_shows_its_new_state(kernel: Kernel) -> None:
    first = kernel.run('job = client.submit("steps", 20)\njob').displays[-1]
    widgets = kernel.run("import sys; print('ipywidgets' in sys.modules)").stdout.strip() == "True"
    assert (WIDGET in first) is widgets, "a live widget where ipywidgets is installed, else HTML only"
    assert "complete" not in first["text/html"] and "complete" not in first["text/plain"]
    kernel.run("client.job(job.id).result(timeout=60)")  # waited on by another handle: `job` itself did not look
    again = kernel.run("job").displays[-1]
    assert "complete" in again["text/html"], again["text/html"][:500]
    assert again["text/plain"].startswith("<Job") and "complete" in again["text/plain"]


def test_a_batch_shown_again_shows_its_new_counts(kernel: Kernel) -> None:
    first = kernel.run('batch = client.map("steps", [5] * 6)\nbatch').displays[-1]
    assert "6 jobs: " in first["text/html"] and "6 complete" not in first["text/html"], first["text/html"][:500]
    kernel.run("client.batch(batch.id).wait(timeout=60)")  # another handle: `batch` itself did not look
    again = kernel.run("batch").displays[-1]["text/html"]
    assert "6 jobs: 6 complete" in again, again[:500]


def test_plain_ipython_prints_the_job_as_text_and_current(redis_url: str, worker: object) -> None:
    code = f"""
from IPython.core.interactiveshell import InteractiveShell
from taskq_sdk import Client
shell = InteractiveShell.instance()
with Client({redis_url!r}) as client:
    job = client.submit("sleeper", 0.5)
    before, _ = shell.display_formatter.format(job)
    client.job(job.id).result(timeout=30)
    after, _ = shell.display_formatter.format(job)
print("BEFORE", sorted(before), before["text/plain"])
print("AFTER", after["text/plain"])
"""
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before = next(line for line in out.stdout.splitlines() if line.startswith("BEFORE"))
    after = next(line for line in out.stdout.splitlines() if line.startswith("AFTER"))
    assert WIDGET not in before and "<Job" in before and "complete" not in before, before
    assert "<Job" in after and "complete" in after, after
