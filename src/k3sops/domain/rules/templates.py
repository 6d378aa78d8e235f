"""Expand the small subset of Prometheus' alert templates the k3sops rules use.

promtool's ``alert_rule_test`` compares annotations exactly, so the expected annotations of a
generated test case must be the text Prometheus itself would produce. The rules only use these
forms, and this module reproduces Prometheus' Go functions for them (``template/template.go``):

* ``{{ $labels.NAME }}``: a label of the alert's sample (missing labels expand to "");
* ``{{ $value | humanize }}``, ``{{ $value | humanizePercentage }}``,
  ``{{ $value | humanizeDuration }}``.

Anything else in a template is a bug in the catalogue, and :func:`expand` says so.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

__all__ = ["expand", "humanize", "humanize_duration", "humanize_percentage"]

_ACTION = re.compile(r"\{\{\s*(.*?)\s*\}\}")
_LABEL = re.compile(r"^\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)$")
_VALUE = re.compile(r"^\$value\s*\|\s*(humanize|humanizePercentage|humanizeDuration)$")


def _g4(v: float) -> str:
    """Go's ``%.4g`` (Python's ``%g`` agrees: 4 significant digits, no trailing zeros)."""
    return f"{v:.4g}"


def humanize(v: float) -> str:
    """Prometheus' ``humanize``: 4 significant digits with an SI prefix (k, M, …; m, u, …)."""
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _g4(v)
    if abs(v) >= 1:
        prefix = ""
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(v) < 1000:
                break
            prefix = p
            v /= 1000
        return f"{_g4(v)}{prefix}"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix = p
        v *= 1000
    return f"{_g4(v)}{prefix}"


def humanize_percentage(v: float) -> str:
    """Prometheus' ``humanizePercentage``: a ratio shown as a percentage."""
    return f"{_g4(v * 100)}%"


def humanize_duration(v: float) -> str:  # noqa: PLR0911 - mirrors Go, branch for branch
    """Prometheus' ``humanizeDuration``: seconds as ``1d 2h 3m 4s`` (or ``950ms``)."""
    if math.isnan(v) or math.isinf(v):
        return _g4(v)
    sign = ""
    if v < 0:
        sign, v = "-", -v
    if v >= 1:
        seconds = int(v)
        days, hours = seconds // 86400, seconds // 3600 % 24
        minutes, secs = seconds // 60 % 60, seconds % 60
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {secs}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {secs}s"
        if minutes:
            return f"{sign}{minutes}m {secs}s"
        return f"{sign}{_g4(v)}s"
    if v == 0:
        return f"{sign}0s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if v >= 1:
            break
        prefix = p
        v *= 1000
    return f"{sign}{_g4(v)}{prefix}s"


_FUNCS = {"humanize": humanize, "humanizePercentage": humanize_percentage,
          "humanizeDuration": humanize_duration}


def expand(template: str, labels: Mapping[str, str], value: float) -> str:
    """Expand ``template`` as Prometheus would for an alert with ``labels`` and ``value``.

    Args:
        template: annotation text using only the forms listed in the module docstring.
        labels: the labels of the alert's sample (not the rule's own labels).
        value: the sample value (``$value``).

    Returns:
        The expanded text.

    Raises:
        ValueError: the template uses a form this module does not reproduce.
    """
    def one(m: re.Match[str]) -> str:
        action = m.group(1)
        lm = _LABEL.match(action)
        if lm:
            return labels.get(lm.group(1), "")
        vm = _VALUE.match(action)
        if vm:
            return _FUNCS[vm.group(1)](value)
        raise ValueError(f"template action {{{{ {action} }}}} is not supported by "
                         "k3sops.domain.rules.templates")

    return _ACTION.sub(one, template)
