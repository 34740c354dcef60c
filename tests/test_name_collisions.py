"""Hostile names across tenants: limit keys, workspaces, job ids (and so streams) and cache entries
whose names are chosen to land on another tenant's keys.

Each name is either refused at the API with a typed error (nothing written), or confined to the
caller's own keys: a SCAN after a tenant's work finds no key outside that tenant's ACL patterns, and
a tenant's ACL user - even one whose name extends the other's (``acme`` / ``acme-2``) - can neither
read nor write the other's limit, stream or cache keys.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from taskq_sdk import Client, ConfigurationError, JobNotFound, PermissionDenied
from taskq_sdk._backend import layout
from taskq_sdk._backend.stream_io import stream_key
from taskq_sdk.config import Settings

from .conftest import FAST, JOBS, figure, tenant_users

pytestmark = pytest.mark.security

MODULES = (JOBS, "tests.cachefns", "tests.streamfns")

#: names meant to reach another tenant's keys, glob-match more than one key, change a cluster hash
#: slot, climb out of a prefix, or overflow it
HOSTILE = [
    "",
    " ",
    "a b",
    "a\nb",
    "a\x00b",
    "a:b",
    "globex:lim:key:openai",
    "taskq:t:globex:lim:key:openai",
    "{globex}",
    "a{b}c",
    "*",
    "open*",
    "?",
    "open?i",
    "[a-z]",
    "..",
    "../globex",
    ".hidden",
    "-x",
    "a" * 101,
    "a" * 10_000,
    "ключ",
    "openai\u200b",
    "ＯＰＥＮＡＩ",
]
HOSTILE_WORKSPACES = [*HOSTILE, "A", "a.b", "a/b", "x" * 64]
#: accepted names that look like parts of the key layout or another tenant: they must stay the caller's
ODD_BUT_VALID = ["globex", "names", "def", "log", "lim", "key", "a..b", "9.-_x", "x" * 100]


def _keys(r: redis.Redis) -> set[str]:
    return {k.decode() for k in r.scan_iter(count=1000)}


def _outside(keys: set[str], tenant: str, queue: str) -> list[str]:
    """The keys among ``keys`` that none of ``tenant``'s ACL patterns cover."""
    patterns, _ = layout.tenant_acl_patterns(tenant, queue)
    return sorted(k for k in keys if not any(fnmatch.fnmatchcase(k, p) for p in patterns))


@pytest.fixture
def acme(settings: Settings) -> Iterator[Client]:
    with Client(settings=settings, tenant="acme", queue="acme") as client:
        yield client


@pytest.mark.parametrize("name", HOSTILE, ids=lambda n: repr(n)[:24])
def test_a_hostile_limit_name_is_refused_at_the_api_and_writes_nothing(
    name: str, acme: Client, sync_redis: redis.Redis
) -> None:
    before = _keys(sync_redis)
    with pytest.raises(ConfigurationError, match="limit key"):
        acme.set_limit(name, rate="5/s")
    with pytest.raises(ConfigurationError, match="limit key"):
        acme.remove_limit(name)
    with pytest.raises(ConfigurationError, match="limit key"):
        acme.submit("add", 1, 2, _limit_key=name)
    with pytest.raises(ConfigurationError, match="limit key"):
        acme.submit("add", 1, 2, _limit_key=f"globex/{name}")  # as another tenant's shared key
    assert _keys(sync_redis) == before


@pytest.mark.parametrize("name", HOSTILE_WORKSPACES, ids=lambda n: repr(n)[:24])
def test_a_hostile_workspace_or_tenant_name_is_refused(name: str, settings: Settings, sync_redis: redis.Redis) -> None:
    before = _keys(sync_redis)
    with pytest.raises(ConfigurationError, match="not a valid name"):
        Client(settings=settings, tenant="acme", workspace=name)
    with pytest.raises(ConfigurationError, match="not a valid name"):
        Client(settings=settings, tenant=name)
    assert _keys(sync_redis) == before


HOSTILE_JOB_IDS = ["", "globex:x", "acme:x", "a b", "a*", "a?b", "{globex}", "[x]", "a\nb", "ключ", "x" * 201]


@pytest.mark.parametrize("job_id", HOSTILE_JOB_IDS, ids=lambda n: repr(n)[:24])
def test_a_hostile_job_id_is_refused_so_its_stream_key_cannot_collide(
    job_id: str, acme: Client, sync_redis: redis.Redis
) -> None:
    """A job id names its stream key (and its result, its cache marker): one with ':' would pose as
    another tenant's (``globex:x``), glob characters would widen patterns; all are refused."""
    before = _keys(sync_redis)
    with pytest.raises(ConfigurationError, match="job id"):
        acme.submit("count_up", 2, _job_id=job_id)
    assert _keys(sync_redis) == before


def test_another_tenants_key_named_as_shared_is_refused(
    acme: Client, settings: Settings, start_worker: Any, sync_redis: redis.Redis
) -> None:
    """``globex/openai`` exists but is not shared with acme: PermissionDenied at submit, and acme's
    declare/remove of a same-named key of its own touch only its own."""
    start_worker(modules=MODULES, queue="acme")
    with Client(settings=settings, tenant="globex", queue="globex") as globex:
        globex.set_limit("openai", rate="5/s")
        with pytest.raises(PermissionDenied):
            acme.submit("add", 1, 2, _limit_key="globex/openai")
        acme.set_limit("openai", rate="7/s")
        assert acme.remove_limit("openai") is True
        assert acme.remove_limit("openai") is False  # gone: acme's only
        assert sync_redis.exists("taskq:t:globex:lim:key:openai:def")  # globex's own is untouched


def test_a_bound_client_cannot_name_another_tenant_to_reach_its_keys(
    acme: Client, settings: Settings, start_worker: Any, sync_redis: redis.Redis
) -> None:
    """``tenant="globex"`` on acme's client (set_limit, remove_limit, cache_clear) is refused, and globex's
    job id (its stream) resolves to nothing: globex's keys are byte-for-byte unchanged."""
    start_worker(modules=MODULES)
    with Client(settings=settings, tenant="globex") as globex:
        globex.set_limit("openai", rate="5/s")
        streamed = globex.submit("count_up", 2)
        assert list(streamed.stream()) == [0, 1]
        globex.submit("cached_double", "taskq:t:globex:count", 1, _cache=True).result(timeout=30)
    theirs = sorted(k for k in _keys(sync_redis) if k.startswith("taskq:t:globex:"))
    before = {k: sync_redis.dump(k) for k in theirs}
    with pytest.raises(ConfigurationError, match="bound to tenant 'acme'"):
        acme.set_limit("openai", rate="500/s", tenant="globex")
    with pytest.raises(ConfigurationError, match="bound to tenant 'acme'"):
        acme.remove_limit("openai", tenant="globex")
    with pytest.raises(ConfigurationError, match="bound to tenant 'acme'"):
        acme.cache_clear(tenant="globex")
    with pytest.raises(JobNotFound):
        list(acme.job(streamed.id).stream())
    assert {k: sync_redis.dump(k) for k in theirs} == before


def test_odd_but_valid_names_stay_inside_the_tenants_prefix(
    acme: Client, start_worker: Any, sync_redis: redis.Redis
) -> None:
    """Limit keys, job ids (their streams), a workspace and cache entries named to look like key-layout
    parts or another tenant: after the jobs ran, SCAN finds no new key outside acme's ACL patterns
    (checked on a plain admin connection: the code confines, not the ACL)."""
    start_worker(modules=MODULES, queue="acme")
    before = _keys(sync_redis)
    jobs = []
    for i, name in enumerate(ODD_BUT_VALID):
        acme.set_limit(name, rate="1000/s", concurrency=2, share_with=["globex"])
        jobs.append(acme.submit("add", i, 1, _limit_key=name))
    for job_id in ("x/../y", "..", "globex", "@=+", "taskq.t.globex", "a" * 200):
        jobs.append(acme.submit("count_up", 2, _job_id=job_id))
    with Client(settings=acme.settings, tenant="acme", queue="acme", workspace="globex") as ws:
        assert ws.submit("cached_double", "taskq:t:acme:count", 21, _cache=True).result(timeout=30) == 42
        assert ws.submit("cached_double", "taskq:t:acme:count", 21, _cache=True).result(timeout=30) == 42  # a hit
    for job in jobs:
        job.result(timeout=30)
    assert list(acme.job("acme:x/../y").stream()) == [0, 1]
    new = _keys(sync_redis) - before
    outside = _outside(new, "acme", "acme")
    figure("name_collision_keys_outside_prefix", len(outside))
    assert outside == [], outside
    assert any(k.startswith("taskq:t:acme:lim:key:globex") for k in new)  # the limit named 'globex' is acme's
    assert not any(k.startswith("taskq:t:globex:") for k in new)


@pytest.fixture
def tenant_urls(redis_url: str) -> Iterator[dict[str, str]]:
    """ACL users for ``acme`` and ``acme-2`` (a name that extends the other's)."""
    with tenant_users(redis_url, ("acme", "acme-2")) as urls:
        yield urls


@pytest.mark.parametrize(("victim", "attacker"), [("acme", "acme-2"), ("acme-2", "acme")])
def test_a_tenant_user_cannot_reach_the_others_limit_stream_or_cache_keys(
    victim: str, attacker: str, tenant_urls: dict[str, str], start_worker_process: Any, sync_redis: redis.Redis
) -> None:
    """Whichever of ``acme`` / ``acme-2`` is the victim, the other's ACL user is refused every read,
    write and script touching the victim's limit, stream and cache keys."""
    url = tenant_urls[victim]
    start_worker_process(env={"REDIS_URL": url, "TASKQ_QUEUE": victim}, modules=MODULES)
    count_key = f"taskq:t:{victim}:count"
    with Client(url, tenant=victim, queue=victim, **FAST) as owner:
        owner.set_limit("openai", rate="100/s", concurrency=2)
        owner.submit("add", 1, 2, _limit_key="openai").result(timeout=30)
        streamed = owner.submit("count_up", 3)
        assert list(streamed.stream()) == [0, 1, 2]
        owner.submit("cached_double", count_key, 4, _cache=True).result(timeout=30)
    theirs = {k for k in _keys(sync_redis) if k.startswith(f"taskq:t:{victim}:")}
    wanted = {
        "limit": [k for k in theirs if ":lim:key:openai" in k],
        "stream": [stream_key(layout, streamed.id)],
        "cache": [k for k in theirs if ":cache:" in k or k.endswith(":cache-index")],
    }
    assert all(wanted.values()), (wanted, theirs)
    other = redis.Redis.from_url(tenant_urls[attacker])
    refused = reached = 0
    denials: list[str] = []
    try:
        for keys in wanted.values():
            for key in keys:
                for probe in (
                    ("TYPE", key),
                    ("DUMP", key),
                    ("SET", key, "x"),
                    ("DEL", key),
                    ("EVAL", "return redis.call('TYPE', KEYS[1])", 1, key),
                    ("EVAL", "return redis.call('DEL', ARGV[1])", 0, key),  # a key the script did not declare
                ):
                    try:
                        other.execute_command(*probe)
                        reached += 1
                    except redis.exceptions.ResponseError as exc:  # NoPermissionError, or a script's refusal
                        refused += 1
                        denials.append(str(exc))
    finally:
        other.close()
    figure(f"name_collision_cross_tenant_reads_or_writes_{attacker.replace('-', '_')}", reached)
    assert reached == 0 and refused > 0
    assert all("NOPERM" in d or "permission" in d.lower() for d in denials), denials
    assert all(sync_redis.exists(k) for keys in wanted.values() for k in keys)  # nothing was deleted
