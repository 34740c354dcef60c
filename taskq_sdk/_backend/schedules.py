"""Claims of cron schedule slots: twenty workers, one job per slot.

Each worker that sees a slot due tries to claim it with one atomic compare-and-set on the
schedule's key (the newest claimed slot); only the first succeeds::

    won = await ScheduleClaims(redis).claim("monitoring", slot_ms, ttl_ms=7 * 86_400_000)
"""

from __future__ import annotations

from redis.asyncio import Redis

from . import layout

__all__ = ["ScheduleClaims"]

# the newest claimed slot of a schedule; a worker claims slot ARGV[1] only if it is newer
CLAIM = """
local last = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > last then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""


class ScheduleClaims:
    """Claims schedule slots (see the module docstring).

    Example::

        claims = ScheduleClaims(redis)
        if await claims.claim("nightly", slot_ms, ttl_ms=86_400_000): ...
    """

    def __init__(self, redis: Redis) -> None:
        self._claim = redis.register_script(CLAIM)

    async def claim(self, name: str, slot_ms: int, *, ttl_ms: int) -> bool:
        """True if this caller is the first to claim slot ``slot_ms`` of schedule ``name``."""
        won = await self._claim(keys=[layout.schedule_key(name)], args=[slot_ms, ttl_ms])
        return bool(won)
