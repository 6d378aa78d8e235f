"""Cron schedules as the CronJob controller reads them: the times a schedule fired before now.

Standard five fields (minute hour day-of-month month day-of-week) with lists, ranges, steps,
``?``, month and weekday names, and the descriptors ``@yearly``/``@annually``, ``@monthly``,
``@weekly``, ``@daily``/``@midnight``, ``@hourly`` and ``@every <duration>``. As in the
controller's parser (robfig/cron), when both day fields are restricted a day matches if
*either* does; when one of them is ``*`` or ``?``, both must.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug",
                                        "sep", "oct", "nov", "dec"], start=1)}
_DAYS = {d: i for i, d in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}
_EVERY = re.compile(r"^@every\s+(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
MAX_DAYS_BACK = 366 * 5
"""How far back a search for earlier runs goes (a Feb 29 schedule fires every 4 years)."""


class CronError(ValueError):
    """A schedule this parser does not understand."""


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: allowed values per field, or a fixed interval (``@every``)."""

    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    days: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    weekdays: frozenset[int] = frozenset()
    day_star: bool = True
    weekday_star: bool = True
    every: timedelta | None = None

    def day_matches(self, when: datetime) -> bool:
        """Whether the schedule fires on this date (month and day fields)."""
        if when.month not in self.months:
            return False
        dom = when.day in self.days
        dow = (when.isoweekday() % 7) in self.weekdays
        if self.day_star or self.weekday_star:
            return dom and dow
        return dom or dow


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> frozenset[int]:
    out: set[int] = set()
    for item in text.split(","):
        step, part = 1, item
        if "/" in item:
            part, step_text = item.split("/", 1)
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"bad step {step_text!r}")
            step = int(step_text)
        if part in ("*", "?"):
            start, end = low, high
        else:
            bounds = [_value(b, names) for b in part.split("-", 1)]
            start = bounds[0]
            end = bounds[1] if len(bounds) == 2 else (high if step > 1 else start)
        if not (low <= start <= high and low <= end <= high):
            raise CronError(f"{part!r} out of range {low}-{high}")
        out.update(v % 7 if names is _DAYS else v for v in range(start, end + 1, step))
    return frozenset(out)


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text.lower() in names:
        return names[text.lower()]
    if not text.isdigit():
        raise CronError(f"bad value {text!r}")
    return int(text)


def parse(expr: str) -> Schedule:
    """Parse a CronJob schedule (raises :class:`CronError`)."""
    expr = expr.strip()
    if expr.startswith("@every"):
        m = _EVERY.match(expr)
        if not m or not any(m.groups()):
            raise CronError(f"bad interval {expr!r}")
        h, mi, s = (int(g or 0) for g in m.groups())
        return Schedule(every=timedelta(hours=h, minutes=mi, seconds=s))
    expr = _DESCRIPTORS.get(expr.lower(), expr)
    fields = expr.split()
    if len(fields) != 5:
        raise CronError(f"expected 5 fields, got {len(fields)}")
    return Schedule(minutes=_field(fields[0], 0, 59), hours=_field(fields[1], 0, 23),
                    days=_field(fields[2], 1, 31), months=_field(fields[3], 1, 12, _MONTHS),
                    weekdays=_field(fields[4], 0, 7, _DAYS),
                    day_star=fields[2][:1] in ("*", "?"),
                    weekday_star=fields[4][:1] in ("*", "?"))


def zone(name: str | None) -> tzinfo | None:
    """The time zone of ``spec.timeZone`` (None: the controller's, UTC here; unknown: None)."""
    if not name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def previous_runs(schedule: Schedule, before: datetime, count: int = 2,
                  since: datetime | None = None) -> list[datetime]:
    """The last ``count`` fire times at or before ``before`` (aware datetimes), newest first.

    ``since`` is when an ``@every`` schedule started counting (the CronJob's creation).
    """
    if schedule.every is not None:
        start = since or before
        n = int((before - start) / schedule.every)
        return [start + schedule.every * k for k in range(n, max(n - count, 0), -1)]
    out: list[datetime] = []
    day = before.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(MAX_DAYS_BACK):
        if schedule.day_matches(day):
            for hour in sorted(schedule.hours, reverse=True):
                for minute in sorted(schedule.minutes, reverse=True):
                    t = day.replace(hour=hour, minute=minute)
                    if t <= before:
                        out.append(t)
                        if len(out) == count:
                            return out
        day = (day - timedelta(days=1)).replace(hour=0, minute=0)
    return out
