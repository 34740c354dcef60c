"""The delay proxy behind the latency benchmarks and partitions (bench/delay_proxy.py), against the real server.

It forwards in order, never answers faster than its delay allows, and a cut holds traffic (no reply,
no error) until it heals, when the held request gets its answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from bench.delay_proxy import DelayProxy
from taskq_sdk._server import LocalServer


@pytest.fixture
def proxied(server: LocalServer) -> Iterator[tuple[DelayProxy, redis.Redis]]:
    with DelayProxy(server.host, server.port, delay_ms=1.0) as proxy:
        r = redis.Redis(port=proxy.port, password=server.password, socket_timeout=5)
        yield proxy, r
        r.close()


def test_requests_pass_in_order_and_no_round_trip_beats_twice_the_delay(
    proxied: tuple[DelayProxy, redis.Redis],
) -> None:
    """A pipeline of 500 commands comes back whole and in order; each round trip is >= 2 x 1 ms."""
    _, r = proxied
    pipe = r.pipeline(transaction=False)
    for i in range(500):
        pipe.echo(str(i))
    assert [int(x) for x in pipe.execute()] == list(range(500))
    fastest = min(_timed_ping(r) for _ in range(20))
    assert fastest >= 0.002, f"a round trip took {fastest * 1000:.3f} ms through a 1 ms-per-direction proxy"


def test_a_cut_holds_traffic_without_an_error_and_heal_delivers_it(proxied: tuple[DelayProxy, redis.Redis]) -> None:
    """While cut, a request is neither answered nor refused; after the heal, the same request is answered."""
    proxy, r = proxied
    assert r.ping()
    proxy.cut()
    held = redis.Redis(port=proxy.port, socket_timeout=0.5, password=r.connection_pool.connection_kwargs["password"])
    with pytest.raises(redis.TimeoutError):
        held.ping()  # connects (the proxy accepts), but nothing comes back: a blackhole, not a refusal
    held.close()
    conn = r.connection_pool.get_connection()
    conn.send_command("SET", "held", "1")
    proxy.heal()
    assert conn.read_response() == b"OK"
    r.connection_pool.release(conn)
    assert r.get("held") == b"1"


def _timed_ping(r: redis.Redis) -> float:
    t0 = time.perf_counter()
    r.ping()
    return time.perf_counter() - t0
