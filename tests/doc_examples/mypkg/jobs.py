"""The jobs docstring examples submit by name (``add``, ``score``, ``resize``...), served by the examples' cluster.

Example::

    client.submit("add", 1, 2).result(timeout=30)   # 3
"""

from __future__ import annotations

import asyncio
from typing import Any

import taskq_sdk


@taskq_sdk.job
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@taskq_sdk.job
def double(x: int) -> int:
    """Twice ``x``."""
    return 2 * x


@taskq_sdk.job
def score(text: str, model: str = "v1") -> dict[str, Any]:
    """A stand-in model score of a text (its length and how many times it says "great")."""
    return {"length": len(text), "great": text.lower().count("great"), "model": model}


@taskq_sdk.job
def resize(path: str, width: int = 100) -> str:
    """Pretend to resize an image: the name of the resized file."""
    return f"{path.rsplit('.', 1)[0]}-{width}.png"


@taskq_sdk.job(cache=True)
def embed(text: str) -> list[float]:
    """A small deterministic embedding (cached: the same text runs once)."""
    return [float(len(text)), float(sum(map(ord, text)) % 97)]


@taskq_sdk.job
async def slow(seconds: float = 1.0) -> float:
    """Sleep ``seconds`` (cancellable while it sleeps)."""
    await asyncio.sleep(seconds)
    return seconds


@taskq_sdk.job
def report(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """Echo what it was given."""
    return {"args": list(args), "kwargs": kwargs}


@taskq_sdk.job
def ask(prompt: str) -> str:
    """A stand-in for a call to a rate-limited API."""
    return f"answer to {prompt!r}"


@taskq_sdk.job
def count_up(n: int) -> Any:
    """Stream ``0 .. n-1`` (a generator job: readers get each number as it is yielded)."""
    yield from range(n)
