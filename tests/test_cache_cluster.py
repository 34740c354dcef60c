"""The result cache with notebook functions on a LocalCluster: an unchanged cell reuses, an edited one recomputes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from taskq_sdk import LocalCluster, Settings

from .conftest import FAST


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(n_workers=1, settings=Settings(**FAST)) as c:  # type: ignore[arg-type]
        yield c


def test_an_unchanged_function_reuses_and_an_edited_one_recomputes(cluster: LocalCluster) -> None:
    client = cluster.client()

    @cluster.job(cache=True)
    def stamp(x: int) -> list[Any]:
        return [x, uuid.uuid4().hex]  # a fresh stamp per run: a reused result repeats it

    first = client.submit(stamp, 1).result(timeout=30)
    by_name = client.submit("stamp", 1)  # by name: the cluster knows the function, so its cache and version
    assert by_name.cached is True and by_name.result(timeout=30) == first
    restarted = cluster.client()  # a re-run notebook: a new client, same tenant, same code
    assert restarted.submit(stamp, 1).result(timeout=30) == first

    @cluster.job(cache=True)  # the cell edited and run again: same name, new code
    def stamp(x: int) -> list[Any]:
        return [x * 10, uuid.uuid4().hex]

    edited = client.submit(stamp, 1)
    assert edited.cached is False and edited.result(timeout=30)[0] == 10


def test_any_function_with_cache_per_call(cluster: LocalCluster) -> None:
    client = cluster.client()
    seed = 5

    def noisy(x: int) -> list[Any]:
        return [x + seed, uuid.uuid4().hex]

    first = client.submit(noisy, 2, _cache=True).result(timeout=30)
    assert first[0] == 7
    again = client.submit(noisy, 2, _cache=True)
    assert again.cached is True and again.result(timeout=30) == first
    assert client.submit(noisy, 2).cached is False  # not marked: only _cache=True caches it
