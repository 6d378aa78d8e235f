"""The one duration grammar and the one RFC 3339 parser: properties over generated input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from k3sops import timeparse
from k3sops.config import PlatformConfigError, parse_platform
from k3sops.domain import alerting, backups, env
from k3sops.errors import UsageError

pytestmark = pytest.mark.unit

_UNITS = ("y", "w", "d", "h", "m", "s", "ms")
_MS = {"y": 365 * 86400_000, "w": 7 * 86400_000, "d": 86400_000, "h": 3600_000,
       "m": 60_000, "s": 1000, "ms": 1}

# A duration as written: a non-empty choice of units, in the grammar's order, each with a count.
durations = st.lists(
    st.tuples(st.sampled_from(_UNITS), st.integers(0, 10_000)), min_size=1, max_size=7,
    unique_by=lambda p: p[0],
).map(lambda parts: sorted(parts, key=lambda p: _UNITS.index(p[0])))


def _text(parts: list[tuple[str, int]]) -> str:
    return "".join(f"{n}{u}" for u, n in parts)


@given(durations)
def test_every_duration_in_the_grammar_reads_as_the_sum_of_its_parts(
        parts: list[tuple[str, int]]) -> None:
    expected = timedelta(milliseconds=sum(n * _MS[u] for u, n in parts))
    assert timeparse.parse_duration(_text(parts)) == expected
    assert timeparse.duration_seconds(_text(parts)) == expected.total_seconds()


@given(durations)
def test_units_out_of_order_or_repeated_are_refused(parts: list[tuple[str, int]]) -> None:
    # Repeating the first unit after the rest breaks "largest first, each once" (1h30m1h).
    bad = _text([*parts, parts[0]])
    with pytest.raises(ValueError, match="is not a duration"):
        timeparse.parse_duration(bad)


@given(st.integers(0, 10 * 365 * 86400))
def test_formatted_seconds_read_back_unchanged(seconds: int) -> None:
    text = timeparse.format_duration(seconds)
    assert timeparse.duration_seconds(text) == seconds


@given(st.text(max_size=20))
def test_any_text_is_a_duration_or_a_value_error(text: str) -> None:
    try:
        d = timeparse.parse_duration(text)
    except ValueError:
        return
    assert d >= timedelta()


@pytest.mark.parametrize("text", ["", " 5m", "5m ", "1.5h", "-1h", "5", "m", "5M", "1h1h", "30m2h"])
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        timeparse.parse_duration(text)


def test_every_layer_reads_durations_alike() -> None:
    # The config's thresholds, the promotion gates and the command line share the grammar.
    yaml_text = "name: p\nenvironments:\n  staging:\n    thresholds:\n      for: 1h30m500ms\n"
    platform = parse_platform(yaml_text)
    assert platform.environments["staging"].thresholds.for_seconds == 5400.5
    assert env.seconds("1h30m500ms") == 5400.5
    length = timedelta(hours=1, minutes=30, seconds=0.5)
    assert alerting.parse_duration("1h30m500ms") == length
    now = datetime(2024, 5, 1, tzinfo=UTC)
    assert backups.parse_since("1h30m500ms", now) == now - length
    for bad in ("30m2h", "1y1y"):
        with pytest.raises(PlatformConfigError):
            parse_platform(yaml_text.replace("1h30m500ms", bad))
        with pytest.raises(UsageError):
            alerting.parse_duration(bad)
        with pytest.raises(UsageError):
            backups.parse_since(bad, now)


# --- timestamps ------------------------------------------------------------------------------

zones = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
times = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31),
                     timezones=st.just(UTC) | zones)


@given(times)
def test_any_aware_time_written_in_rfc3339_reads_back_equal(t: datetime) -> None:
    assert timeparse.parse_rfc3339(t.isoformat()) == t
    assert timeparse.parse_rfc3339(t.isoformat()).utcoffset() == t.utcoffset()


@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)),
       st.integers(0, 999))
def test_nanoseconds_and_z_are_read_as_go_and_the_api_write_them(t: datetime, nanos: int) -> None:
    # Go's RFC3339Nano: nine fractional digits and Z; the digits past microseconds are dropped.
    text = t.isoformat(timespec="seconds") + f".{t.microsecond:06d}{nanos:03d}Z"
    assert timeparse.parse_rfc3339(text) == t.replace(tzinfo=UTC)


@given(st.text(max_size=40))
def test_any_text_is_a_time_or_none(text: str) -> None:
    t = timeparse.parse_time(text)
    assert t is None or t.tzinfo is not None


@pytest.mark.parametrize(("text", "expected"), [
    ("2024-05-01T10:00:00Z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01t10:00:00z", datetime(2024, 5, 1, 10, tzinfo=UTC)),
    ("2024-05-01 10:00:00+02:00", datetime(2024, 5, 1, 8, tzinfo=UTC)),
    ("2024-05-01T10:00:00.123456789Z", datetime(2024, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)),
    ("2024-05-01T10:00:00", datetime(2024, 5, 1, 10, tzinfo=UTC)),
])
def test_rfc3339_forms(text: str, expected: datetime) -> None:
    assert timeparse.parse_rfc3339(text) == expected
    assert timeparse.parse_rfc3339(text).tzinfo is not None


@pytest.mark.parametrize("text", ["2024-13-01T00:00:00Z", "2024-05-01T24:00:00Z", "2024-05-01",
                                  "20240501T100000Z", "2024-05-01T10:00:00+24:00",
                                  "2024-05-01T10:00:00+01:60", "yesterday", ""])
def test_not_rfc3339(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|offset|range|must be"):
        timeparse.parse_rfc3339(text)
    assert timeparse.parse_time(text) is None


def test_non_text_is_no_time() -> None:
    assert timeparse.parse_time(None) is None
    assert timeparse.parse_time(1714557600) is None
