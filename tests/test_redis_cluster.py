"""Tier ``redis_cluster``: taskq on a real Redis Cluster (3 primaries + 3 replicas of the embedded server).

Run it with ``python -m pytest -q -p no:cacheprovider -m redis_cluster tests/test_redis_cluster.py``.
"""

from __future__ import annotations

import pytest

from tests.cluster_fixtures import RealCluster, real_cluster  # noqa: F401  (fixture)
from tests.conftest import wait_until

pytestmark = pytest.mark.redis_cluster


def test_fixture_is_a_cluster_that_fails_over(tmp_path) -> None:
    with RealCluster(tmp_path).start() as cluster:
        assert len(cluster.primaries()) == 3
        slots = cluster._slots()
        assert sum(hi - lo + 1 for lo, hi, *_ in slots) == 16384
        assert all(len(row) >= 4 for row in slots), "every primary has a replica"
        rc = cluster.cluster_client()
        rc.set("{q}:x", "1")
        slot = cluster.slot_of("{q}:x")
        old = cluster.owner(slot)
        replica = cluster.replica_of(old)
        reader = replica.client()
        reader.execute_command("READONLY")  # a replica answers reads of its primary's slots only then
        wait_until(lambda: reader.get("{q}:x") == b"1", 10, what="the write reached the replica")
        reader.close()
        cluster.kill(old)
        wait_until(lambda: cluster.owner(slot) is replica, 20, interval=0.1, what="the replica took over")
        cluster.wait_healthy(replicas=False)
        rc.close()
        rc = cluster.cluster_client()
        assert rc.get("{q}:x") == b"1"
        rc.close()
