"""Cron expressions (UTC): parse them and say when they fire next.

Five fields ``minute hour day-of-month month day-of-week`` (``*``, lists ``1,15``, ranges ``1-5``,
steps ``*/10`` or ``0-30/5``, month and day names ``jan``/``mon``; Sunday is 0 or 7; like cron, when
both day fields are restricted either may match), or six fields with *seconds first*
(``*/10 * * * * *`` = every ten seconds), or ``@hourly``, ``@daily``, ``@weekly``, ``@monthly``,
``@yearly``::

    cron = CronSchedule("*/5 * * * *")
    cron.next_after(datetime(2026, 1, 1, 12, 3, tzinfo=UTC))   # 12:05:00 UTC
    cron.period_s()                                            # 300.0
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .errors import ConfigurationError

__all__ = ["CronSchedule"]

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {m: i + 1 for i, m in enumerate(_MONTH_NAMES)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
_FIELD_RE = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/(\d+))?$")


def _parse_field(text: str, lo: int, hi: int, names: dict[str, int], what: str, expr: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.lower().split(","):
        m = _FIELD_RE.match(part)
        if not m:
            raise ConfigurationError(f"cron expression {expr!r}: cannot read the {what} field {text!r}")
        base, step_text = m.group(1), m.group(2)
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ConfigurationError(f"cron expression {expr!r}: the step in {part!r} must be at least 1")

        def value(token: str) -> int:
            if token in names:
                return names[token]
            if not token.isdigit():
                raise ConfigurationError(f"cron expression {expr!r}: {token!r} is not a valid {what}")
            return int(token)

        if base == "*":
            start, end = lo, hi
        elif "-" in base:
            a, b = base.split("-", 1)
            start, end = value(a), value(b)
        else:
            start = value(base)
            end = hi if step_text else start
        if what == "day of week" and end == 7:
            end = 7  # 7 is Sunday too; folded below
        top = 7 if what == "day of week" else hi
        if not (lo <= start <= top and lo <= end <= top and start <= end):
            raise ConfigurationError(f"cron expression {expr!r}: {part!r} is out of range for the {what} ({lo}-{hi})")
        values.update(range(start, end + 1, step))
    if what == "day of week" and 7 in values:
        values.discard(7)
        values.add(0)
    return frozenset(values)


class CronSchedule:
    """A parsed cron expression (UTC) that can say when it fires next.

    Example::

        cron = CronSchedule("*/5 * * * *")
        cron.next_after(datetime(2026, 1, 1, 12, 3, tzinfo=UTC))   # 12:05:00 UTC
    """

    def __init__(self, expr: str) -> None:
        if not isinstance(expr, str) or not expr.strip():
            raise ConfigurationError("a cron expression is a non-empty string like '*/5 * * * *'")
        self.expr = expr.strip()
        text = _MACROS.get(self.expr.lower(), self.expr)
        fields = text.split()
        if len(fields) == 5:
            fields = ["0", *fields]
        elif len(fields) != 6:
            raise ConfigurationError(
                f"cron expression {expr!r} has {len(fields)} fields: use five (minute hour day month weekday) "
                "or six with seconds first, e.g. '*/5 * * * *' or '*/10 * * * * *'"
            )
        sec, minute, hour, dom, month, dow = fields
        self.seconds = _parse_field(sec, 0, 59, {}, "second", expr)
        self.minutes = _parse_field(minute, 0, 59, {}, "minute", expr)
        self.hours = _parse_field(hour, 0, 23, {}, "hour", expr)
        self.days = _parse_field(dom, 1, 31, {}, "day of month", expr)
        self.months = _parse_field(month, 1, 12, _MONTHS, "month", expr)
        self.weekdays = _parse_field(dow, 0, 6, _DAYS, "day of week", expr)
        self._dom_any = dom == "*"
        self._dow_any = dow == "*"
        self.next_after(datetime(2000, 1, 1, tzinfo=UTC))  # raises if it never fires

    def __repr__(self) -> str:
        return f"CronSchedule({self.expr!r})"

    def _day_matches(self, t: datetime) -> bool:
        dom_ok = t.day in self.days
        dow_ok = (t.isoweekday() % 7) in self.weekdays
        if self._dom_any or self._dow_any:
            return dom_ok and dow_ok
        return dom_ok or dow_ok  # cron: either restricted day field may match

    def next_after(self, t: datetime) -> datetime:
        """The first firing time strictly after ``t`` (an aware datetime; naive ones are taken as UTC)."""
        if t.tzinfo is None:
            t = t.replace(tzinfo=UTC)
        t = t.astimezone(UTC).replace(microsecond=0) + timedelta(seconds=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
                t = t.replace(year=year, month=month, day=1, hour=0, minute=0, second=0)
                continue
            if not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            if t.hour not in self.hours:
                t = (t + timedelta(hours=1)).replace(minute=0, second=0)
                continue
            if t.minute not in self.minutes:
                t = (t + timedelta(minutes=1)).replace(second=0)
                continue
            if t.second not in self.seconds:
                t = t + timedelta(seconds=1)
                continue
            return t
        raise ConfigurationError(f"cron expression {self.expr!r} never fires (check the day and month fields)")

    def period_s(self, at: datetime | None = None) -> float:
        """Seconds between the next two firings after ``at`` (now by default): the typical interval."""
        first = self.next_after(at or datetime.now(tz=UTC))
        return (self.next_after(first) - first).total_seconds()
