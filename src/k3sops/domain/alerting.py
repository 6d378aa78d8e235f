"""Alerts and silences (Alertmanager API v2), as pure models: parsing, filtering, grouping.

Nothing here talks to Alertmanager or reads the clock: the service passes ``now`` in and
sends the bodies built here. Two rules live here so that they are tested without a network:

- a silence is created from matchers, a time window, an author and a comment, and the body
  sent to ``POST /api/v2/silences`` never carries an ``id`` (Alertmanager treats a body with
  an id as an update of that silence; k3sops never revives an expired silence that way);
- alerts are grouped by their ``severity`` and ``environment`` labels, most severe first.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from k3sops import timeparse
from k3sops.errors import UsageError
from k3sops.timeparse import parse_time

MATCHER_FORMS = ('label=value, label!=value, label=~regex, label!~regex '
                 '(value may be double-quoted: alertname="High CPU")')
DURATION_FORMS = timeparse.DURATION_FORMS
"""How to write a duration (one grammar: :mod:`k3sops.timeparse`), for hints and --help."""
SEVERITY_ORDER = ("critical", "error", "warning", "info")
"""Known severities, most severe first; others sort after them alphabetically, missing last."""
SILENCE_STATE_ORDER = ("active", "pending", "expired")

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MATCHER = re.compile(r"^\s*(?P<name>[^=!~\s]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>.*?)\s*$",
                      re.DOTALL)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MatchOp(StrEnum):
    """The four matcher operators Alertmanager understands."""

    EQ = "="
    NE = "!="
    RE = "=~"
    NRE = "!~"


class Matcher(_Model):
    """One label matcher of a silence or a selector (``name op value``)."""

    name: str
    op: MatchOp
    value: str

    @property
    def is_regex(self) -> bool:
        """True for ``=~`` and ``!~``."""
        return self.op in (MatchOp.RE, MatchOp.NRE)

    @property
    def is_equal(self) -> bool:
        """True for ``=`` and ``=~`` (Alertmanager's ``isEqual``)."""
        return self.op in (MatchOp.EQ, MatchOp.RE)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this matcher; a missing label counts as the empty string.

        Regexes are fully anchored, as Alertmanager anchors them.
        """
        actual = labels.get(self.name, "")
        if self.is_regex:
            try:
                hit = re.fullmatch(self.value, actual) is not None
            except re.error:
                # Alertmanager speaks Go's RE2; a regex Python cannot compile (only possible
                # for matchers read back from Alertmanager) is treated as matching nothing.
                hit = False
        else:
            hit = actual == self.value
        return hit if self.is_equal else not hit

    def to_api(self) -> dict[str, Any]:
        """The Alertmanager API v2 form of this matcher."""
        return {"name": self.name, "value": self.value, "isRegex": self.is_regex,
                "isEqual": self.is_equal}

    @classmethod
    def from_api(cls, raw: Mapping[str, Any]) -> Matcher:
        """Read a matcher from Alertmanager's API v2 form (``isEqual`` defaults to true)."""
        regex = bool(raw.get("isRegex", False))
        equal = bool(raw.get("isEqual", True))
        op = {(False, True): MatchOp.EQ, (False, False): MatchOp.NE,
              (True, True): MatchOp.RE, (True, False): MatchOp.NRE}[(regex, equal)]
        return cls(name=str(raw.get("name", "")), op=op, value=str(raw.get("value", "")))

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op.value}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse ``label=value`` (or ``!=``, ``=~``, ``!~``); the value may be double-quoted.

    Raises:
        UsageError: the text is not a matcher, the label name is invalid, or the regex does
            not compile; the message shows the accepted forms.
    """
    m = _MATCHER.match(text)
    if m is None:
        raise UsageError(f"matcher {text!r} has no operator", hint=f"use {MATCHER_FORMS}")
    name, op, value = m.group("name"), MatchOp(m.group("op")), m.group("value")
    if not _LABEL_NAME.fullmatch(name):
        raise UsageError(f"matcher {text!r}: {name!r} is not a label name "
                         "(letters, digits and _, not starting with a digit)",
                         hint=f"use {MATCHER_FORMS}")
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = re.sub(r'\\(.)', r"\1", value[1:-1])
    elif '"' in value:
        raise UsageError(f"matcher {text!r}: unbalanced double quote in the value",
                         hint=f"use {MATCHER_FORMS}")
    if op in (MatchOp.RE, MatchOp.NRE):
        try:
            re.compile(value)
        except re.error as e:
            raise UsageError(f"matcher {text!r}: {value!r} is not a valid regex ({e})",
                             hint=f"use {MATCHER_FORMS}") from e
    return Matcher(name=name, op=op, value=value)


def parse_matchers(texts: Iterable[str]) -> list[Matcher]:
    """Parse several matchers (see :func:`parse_matcher`)."""
    return [parse_matcher(t) for t in texts]


def parse_duration(text: str) -> timedelta:
    """Parse a duration given on the command line: ``30m``, ``2h``, ``1d``, ``1h30m``.

    The grammar is :func:`k3sops.timeparse.parse_duration`'s; surrounding spaces are ignored
    and zero is refused (nothing waits, silences or looks back for no time).

    Raises:
        UsageError: the text is not such a duration, or it is zero.
    """
    try:
        total = timeparse.parse_duration(text.strip())
    except ValueError as e:
        raise UsageError(f"duration {text!r} is not understood",
                         hint=f"use {DURATION_FORMS}") from e
    if total <= timedelta():
        raise UsageError(f"duration {text!r} is zero", hint=f"use {DURATION_FORMS}")
    return total


def format_duration(d: timedelta) -> str:
    """Render a duration compactly (``1d2h``, ``45m``, ``0s``), for tables."""
    secs = int(d.total_seconds())
    if secs <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        n, secs = divmod(secs, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts[:2])


def check_silence_id(text: str) -> str:
    """Return ``text`` if it has the form of an Alertmanager silence id (a UUID).

    Raises:
        UsageError: it is not a UUID.
    """
    try:
        uuid.UUID(text)
    except ValueError as e:
        raise UsageError(f"{text!r} is not a silence id",
                         hint="silence ids are UUIDs such as 3f1c2a4e-…; "
                              "list them with `k3sops alerts silences --all`") from e
    return text


# --- alerts ------------------------------------------------------------------------------


class Alert(_Model):
    """One alert as Alertmanager holds it (``GET /api/v2/alerts``)."""

    alertname: str
    severity: str | None
    environment: str | None
    state: str
    """``active``, ``suppressed`` (silenced or inhibited) or ``unprocessed``."""
    silenced_by: list[str]
    inhibited_by: list[str]
    starts_at: datetime | None
    summary: str | None
    labels: dict[str, str]
    annotations: dict[str, str]
    fingerprint: str
    generator_url: str | None


class AlertGroup(_Model):
    """Alerts sharing a severity and an environment."""

    severity: str | None
    environment: str | None
    count: int
    alerts: list[Alert]


class AlertReport(_Model):
    """What `k3sops alerts list` shows."""

    alertmanager: str
    total: int
    groups: list[AlertGroup]


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str_map(value: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, Mapping) else {}


def _time(value: Any) -> datetime | None:
    return parse_time(value)


def alert_from_api(raw: Mapping[str, Any]) -> Alert:
    """Read one alert of Alertmanager's ``GET /api/v2/alerts`` answer."""
    labels = _str_map(raw.get("labels"))
    annotations = _str_map(raw.get("annotations"))
    status = _map(raw.get("status"))
    return Alert(
        alertname=labels.get("alertname", ""),
        severity=labels.get("severity") or None,
        environment=labels.get("environment") or None,
        state=str(status.get("state", "unprocessed")),
        silenced_by=[str(s) for s in status.get("silencedBy") or []],
        inhibited_by=[str(s) for s in status.get("inhibitedBy") or []],
        starts_at=_time(raw.get("startsAt")),
        summary=annotations.get("summary"),
        labels=labels,
        annotations=annotations,
        fingerprint=str(raw.get("fingerprint", "")),
        generator_url=raw.get("generatorURL") or None,
    )


def select_alerts(alerts: Iterable[Alert], *, environments: Sequence[str] = (),
                  severities: Sequence[str] = (), selectors: Sequence[Matcher] = (),
                  include_silenced: bool = False, include_inhibited: bool = False,
                  ) -> list[Alert]:
    """Keep the alerts that pass every filter.

    Firing alerts (``active`` and not yet ``unprocessed``) always pass the state filter;
    suppressed ones only when asked for: silenced ones with ``include_silenced``, inhibited
    ones with ``include_inhibited``. ``environments`` and ``severities`` each match any of
    their values; ``selectors`` must all match.
    """
    out = []
    for a in alerts:
        if a.state == "suppressed":
            wanted = ((include_silenced and bool(a.silenced_by))
                      or (include_inhibited and bool(a.inhibited_by)))
            if not wanted:
                continue
        if environments and a.environment not in environments:
            continue
        if severities and a.severity not in severities:
            continue
        if not all(m.matches(a.labels) for m in selectors):
            continue
        out.append(a)
    return out


def severity_rank(severity: str | None) -> tuple[int, str]:
    """Sort key: known severities most severe first, then others by name, then none."""
    if severity is None:
        return (len(SEVERITY_ORDER) + 1, "")
    if severity in SEVERITY_ORDER:
        return (SEVERITY_ORDER.index(severity), "")
    return (len(SEVERITY_ORDER), severity)


def group_alerts(alerts: Iterable[Alert]) -> list[AlertGroup]:
    """Group by (severity, environment): most severe first, environments by name, none last.

    Within a group the oldest alert comes first (it has been firing longest).
    """
    groups: dict[tuple[str | None, str | None], list[Alert]] = {}
    for a in alerts:
        groups.setdefault((a.severity, a.environment), []).append(a)

    def age_key(a: Alert) -> tuple[float, str, str]:
        started = a.starts_at.timestamp() if a.starts_at else math.inf
        return (started, a.alertname, a.fingerprint)

    ordered = sorted(groups.items(),
                     key=lambda kv: (severity_rank(kv[0][0]), kv[0][1] is None, kv[0][1] or ""))
    return [AlertGroup(severity=sev, environment=env, count=len(items),
                       alerts=sorted(items, key=age_key))
            for (sev, env), items in ordered]


def alert_report(alertmanager: str, alerts: Sequence[Alert]) -> AlertReport:
    """Group ``alerts`` into the report `alerts list` prints."""
    return AlertReport(alertmanager=alertmanager, total=len(alerts), groups=group_alerts(alerts))


# --- silences ----------------------------------------------------------------------------


class Silence(_Model):
    """One silence as Alertmanager holds it (``GET /api/v2/silences``)."""

    id: str
    state: str
    """``active``, ``pending`` (starts later) or ``expired``."""
    matchers: list[Matcher]
    starts_at: datetime | None
    ends_at: datetime | None
    updated_at: datetime | None
    created_by: str
    comment: str


class SilenceList(_Model):
    """What `k3sops alerts silences` shows."""

    alertmanager: str
    silences: list[Silence]


class SilenceResult(_Model):
    """What `alerts silence` and `alerts unsilence` report."""

    id: str
    action: str
    """``created``, ``expired``, or ``already-expired`` (unsilence of an expired silence)."""
    silence: Silence | None
    replaced: str | None = None
    """With ``--extend``: the silence this one replaces (expired if it was still running)."""


def silence_from_api(raw: Mapping[str, Any]) -> Silence:
    """Read one silence of Alertmanager's API v2 answer."""
    status = _map(raw.get("status"))
    return Silence(
        id=str(raw.get("id", "")),
        state=str(status.get("state", "")),
        matchers=[Matcher.from_api(m) for m in raw.get("matchers") or []
                  if isinstance(m, Mapping)],
        starts_at=_time(raw.get("startsAt")),
        ends_at=_time(raw.get("endsAt")),
        updated_at=_time(raw.get("updatedAt")),
        created_by=str(raw.get("createdBy", "")),
        comment=str(raw.get("comment", "")),
    )


def select_silences(silences: Iterable[Silence], include_expired: bool) -> list[Silence]:
    """Active and pending silences (and expired ones when asked), active first, then by end."""
    keep = [s for s in silences if include_expired or s.state != "expired"]

    def key(s: Silence) -> tuple[int, float]:
        rank = (SILENCE_STATE_ORDER.index(s.state) if s.state in SILENCE_STATE_ORDER
                else len(SILENCE_STATE_ORDER))
        return (rank, s.ends_at.timestamp() if s.ends_at else math.inf)

    return sorted(keep, key=key)


def new_silence_body(matchers: Sequence[Matcher], starts_at: datetime, ends_at: datetime,
                     created_by: str, comment: str) -> dict[str, Any]:
    """The body of ``POST /api/v2/silences`` that creates a NEW silence.

    It never has an ``id``: with one, Alertmanager would update that silence instead, and
    k3sops never revives or rewrites an expired silence (a re-created silence gets a new id).

    Raises:
        UsageError: no matchers, every matcher also matches an empty label (Alertmanager
            would silence everything), an empty comment or author, or an empty time window.
    """
    if not matchers:
        raise UsageError("a silence needs at least one matcher",
                         hint=f"add -m/--matcher, e.g. -m alertname=HighCPU; forms: "
                              f"{MATCHER_FORMS}")
    if all(m.matches({}) for m in matchers):
        raise UsageError("every matcher also matches alerts without that label, so the "
                         "silence would mute everything: "
                         + ", ".join(str(m) for m in matchers),
                         hint="add a matcher that needs a value, e.g. -m alertname=HighCPU")
    if not comment.strip():
        raise UsageError("a silence needs a comment saying why",
                         hint='pass --comment "reason, ticket"')
    if not created_by.strip():
        raise UsageError("a silence needs an author", hint="pass --author NAME")
    if ends_at <= starts_at:
        raise UsageError(f"the silence would end ({ends_at.isoformat()}) before it starts "
                         f"({starts_at.isoformat()})", hint="give a positive --duration")
    return {
        "matchers": [m.to_api() for m in matchers],
        "startsAt": _iso(starts_at),
        "endsAt": _iso(ends_at),
        "createdBy": created_by,
        "comment": comment,
    }


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")
