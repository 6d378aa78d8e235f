"""The one grammar of durations, the one RFC 3339 timestamp parser and cron fields (pure).

Every layer reads these texts: ``platform.yaml`` (``for: 5m``, ``0 2 * * *``), the command line
(``--duration 2h``), the API server, Alertmanager and history files (``2024-05-01T10:00:00Z``).
They live here, a leaf beside :mod:`k3sops.errors`, because both :mod:`k3sops.config` and
:mod:`k3sops.domain` need them and neither may import the other's internals (import-linter:
this module imports nothing of k3sops but the errors).

Durations follow Prometheus' grammar: whole numbers with units ``y w d h m s ms``, largest
first, each unit at most once (``1h30m``, ``90s``, ``500ms``), or ``0``. A year is 365 days.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from k3sops.errors import UsageError

__all__ = [
    "CRON_DAY_NAMES",
    "DURATION_FORMS",
    "cron_fields",
    "duration_seconds",
    "format_duration",
    "parse_duration",
    "parse_rfc3339",
    "parse_time",
]

DURATION_FORMS = "a number and a unit, combined from largest to smallest: 30m, 2h, 1d, 1h30m, 1w"
"""How to write a duration, for error hints."""

_UNITS = (("y", 365 * 86400_000), ("w", 7 * 86400_000), ("d", 86400_000), ("h", 3600_000),
          ("m", 60_000), ("s", 1000), ("ms", 1))
"""Units of the grammar, largest first, with their length in milliseconds."""
_DURATION = re.compile("".join(rf"(?:([0-9]+){u})?" for u, _ in _UNITS))

# RFC 3339 section 5.6, plus what Python's and Go's writers add: a space for "T", any number of
# fractional digits (Go writes nanoseconds; microseconds are kept), lowercase t/z, and no
# offset at all (taken as UTC: some of our own older files were written so).
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))?"
)


def parse_duration(text: str) -> timedelta:
    """Read a duration in the grammar above (no surrounding spaces; ``0`` is zero).

    Raises:
        ValueError: the text is not such a duration (message names the text).
    """
    if text == "0":
        return timedelta()
    m = _DURATION.fullmatch(text)
    if not text or m is None:
        raise ValueError(f"{text[:40]!r} is not a duration ({DURATION_FORMS})")
    millis = sum(int(n) * size for n, (_, size) in zip(m.groups(), _UNITS, strict=True) if n)
    return timedelta(milliseconds=millis)


def duration_seconds(text: str) -> float:
    """A duration (see :func:`parse_duration`) in seconds.

    Raises:
        ValueError: the text is not a duration.
    """
    return parse_duration(text).total_seconds()


def format_duration(seconds: float) -> str:
    """Write whole ``seconds`` in the grammar: ``0s``, ``90s``, ``15m``, ``1h``, ``1d1h30m``.

    Days are the largest unit used (as Prometheus writes rule durations); fractions of a second
    are dropped.
    """
    whole = int(seconds)
    if whole <= 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if whole >= size:
            out += f"{whole // size}{unit}"
            whole %= size
    return out


def parse_rfc3339(text: str) -> datetime:
    """Read an RFC 3339 timestamp into an aware datetime (no offset: UTC).

    Raises:
        ValueError: the text is not such a timestamp, or names a date or time that does
            not exist (month 13, hour 24; a leap second ``:60`` is not representable).
    """
    m = _RFC3339.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"{text[:40]!r} is not an RFC 3339 time (YYYY-MM-DDTHH:MM:SSZ)")
    year, month, day, hour, minute, second, fraction, zulu, sign, oh, om = m.groups()
    zone = UTC
    if sign is not None:
        offset = timedelta(hours=int(oh), minutes=int(om))
        if int(oh) > 23 or int(om) > 59:
            raise ValueError(f"{text[:40]!r} has no valid offset (+HH:MM up to 23:59)")
        zone = timezone(-offset if sign == "-" else offset) if offset else UTC
    del zulu  # "Z" and no offset both mean UTC
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    return datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                    micro, tzinfo=zone)


def parse_time(text: object) -> datetime | None:
    """Like :func:`parse_rfc3339` for values read from elsewhere: None when absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------
# Cron

CRON_DAY_NAMES = {"0": "Sun", "1": "Mon", "2": "Tue", "3": "Wed", "4": "Thu", "5": "Fri",
                  "6": "Sat", "7": "Sun", "sun": "Sun", "mon": "Mon", "tue": "Tue",
                  "wed": "Wed", "thu": "Thu", "fri": "Fri", "sat": "Sat"}
"""Day-of-week values cron accepts, with systemd's name of each day."""
_MACROS = {"@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
           "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *", "@yearly": "0 0 1 1 *",
           "@annually": "0 0 1 1 *"}
_RANGES = ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7))
_FIELD_NAMES = ("minute", "hour", "day of month", "month", "day of week")


def cron_fields(expr: str) -> list[str]:
    """Split and check a cron expression (macros expanded).

    Raises:
        UsageError: not 5 fields, or a field that is not numbers, ranges, lists and steps
            within its bounds (day-of-week names are allowed).
    """
    text = _MACROS.get(expr.strip().lower(), expr.strip())
    fields = text.split()
    if len(fields) != 5:
        raise UsageError(f"schedule {expr!r} is not a 5-field cron expression",
                         hint="minute hour day-of-month month day-of-week, e.g. '0 2 * * *'")
    for value, (lo, hi), what in zip(fields, _RANGES, _FIELD_NAMES, strict=True):
        for part in value.split(","):
            base, _, step = part.partition("/")
            if step and not step.isdigit():
                raise UsageError(f"schedule {expr!r}: bad step {part!r} in the {what}")
            if base == "*":
                continue
            for bound in base.split("-"):
                b = bound.lower()
                if what == "day of week" and b in CRON_DAY_NAMES:
                    continue
                if not b.isdigit() or not lo <= int(b) <= hi:
                    raise UsageError(f"schedule {expr!r}: {part!r} is out of range for the "
                                     f"{what} ({lo}-{hi})")
    return fields
