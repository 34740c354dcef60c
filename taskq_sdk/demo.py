"""The main job on the embedded default: ``python -m taskq_sdk.demo``.

Starts a local server and a worker, generates a short video, serves it on loopback, submits
it to the built-in video job with a progress bar, and prints the result - nothing to install
beyond ``pip install "taskq-sdk[video]"``::

    $ python -m taskq_sdk.demo            # --seconds 8 --workers 2 --keep
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["main", "run_demo"]


def run_demo(
    *, seconds: float = 6.0, workers: int = 1, out_dir: Path | None = None, progress: bool = True
) -> dict[str, Any]:
    """Run the demo and return the video job's result (a ``VideoResult`` as plain data).

    Example::

        result = run_demo(seconds=4)
        result["video"][0]["width"]   # 320
    """
    from .jobs.video import VideoResult
    from .local import LocalCluster
    from .samples import make_sample_video, serve_directory

    work = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="taskq-demo-"))
    media = work / "media"
    clip = make_sample_video(media / "clip.mp4", seconds=seconds)
    print(f"generated {clip} ({clip.stat().st_size / 1024:.0f} KiB, {seconds:g}s)")
    t0 = time.perf_counter()
    cluster_settings = None
    from .config import Settings

    cluster_settings = Settings(artifacts_dir=work / "artifacts")
    with LocalCluster(n_workers=workers, settings=cluster_settings) as cluster, serve_directory(media) as base:
        print(f"local cluster up in {time.perf_counter() - t0:.1f}s: {cluster!r}")
        client = cluster.client()
        job = client.submit_video(f"{base}/clip.mp4", workspace="demo")
        print(f"submitted {job.id} -> process_video_async")
        raw = job.wait(timeout=300, progress=progress)
        info = job.info()
    result = VideoResult.model_validate(raw)
    v = result.video[0]
    print()
    print(f"job {info.id}: {info.status.value} in {info.duration or 0:.2f}s on {info.worker} (attempt {info.attempts})")
    print(f"  container {result.container}, {result.duration_s:.2f}s, {result.size_bytes / 1024:.0f} KiB")
    print(f"  video     {v.codec} {v.width}x{v.height} @ {v.fps:.2f} fps, {v.frames} frames")
    for a in result.audio:
        print(f"  audio     {a.codec} {a.sample_rate} Hz, {a.channels} channels")
    print(f"  frames    mean brightness {result.mean_brightness:.1f}, {result.scene_changes} scene changes")
    print(f"  thumbnails ({len(result.thumbnails)}):")
    for t in result.thumbnails:
        print(f"    {t}")
    return dict(raw)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line of ``python -m taskq_sdk.demo``."""
    p = argparse.ArgumentParser(prog="python -m taskq_sdk.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=6.0, help="length of the generated video")
    p.add_argument("--workers", type=int, default=1, help="worker processes to start")
    p.add_argument("--out", type=Path, help="keep media and thumbnails in this directory")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        run_demo(seconds=args.seconds, workers=args.workers, out_dir=args.out, progress=not args.no_progress)
    except ImportError as exc:
        print(f"taskq demo: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
