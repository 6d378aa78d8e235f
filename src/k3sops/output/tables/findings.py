"""Tables of findings for a terminal of any width: the object stays whole, the message wraps.

A person reads a finding by its object first (they copy it into kubectl), so the resource
column is never truncated: rich shrinks every column of a table that is too wide, and an
object cut to ``Pod/developme…`` is useless while a message wrapped over more lines is not.
On a wide terminal the table has one column per field; when that cannot fit without
squeezing the object, the check id moves under the object and the last column (the runbook,
or the reason of a suppression) under the message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.table import Table
from rich.text import Text

COLOURS = {"critical": "bold red", "error": "red", "warning": "yellow", "info": "cyan"}
"""The one severity palette: findings, root causes and alerts (whose rules may say error)."""

MESSAGE_MIN = 30
"""Below this many columns for the message, the compact layout is used."""


@dataclass(frozen=True)
class Row:
    """One line of a findings table (already reduced to text)."""

    severity: str
    resource: str
    message: str
    check: str = ""
    last: str = ""
    new: bool = False


def resource_ref(kind: str, namespace: str | None, name: str) -> str:
    """``Kind/namespace/name`` (``Kind/name`` for cluster-scoped objects)."""
    return f"{kind}/{namespace + '/' if namespace else ''}{name}"


def _overhead(columns: int) -> int:
    # Default box: a border before each column and after the last, one space of padding on
    # each side of every cell.
    return 3 * columns + 1


def findings_table(rows: Sequence[Row], *, title: str, width: int, message: str = "message",
                   last: str | None = "runbook") -> Table:
    """A table of ``rows`` laid out for ``width`` terminal columns.

    Args:
        rows: the findings, in display order.
        title: the table's title.
        width: the console width the table is printed at.
        message: header of the message column ("root cause" in a diagnosis).
        last: header of the trailing column (runbook, suppressed because), None for none.
    """
    with_check = any(r.check for r in rows)
    sev_w = max([3, *(len(r.severity) for r in rows)])
    check_w = max([5, *(len(r.check) + (6 if r.new else 0) for r in rows)])
    res_w = max([8, *(len(r.resource) for r in rows)])
    last_w = max([len(last or ""), *(len(r.last) for r in rows)]) if last else 0
    columns = 3 + int(with_check) + int(last is not None)
    wide = (_overhead(columns) + sev_w + res_w + MESSAGE_MIN
            + (check_w if with_check else 0) + last_w) <= width
    if wide:
        return _wide(rows, title, message, last, with_check, res_w)
    return _compact(rows, title, message, last)


def _sev(r: Row) -> Text:
    return Text(r.severity, style=COLOURS.get(r.severity, "magenta"))


def _check(r: Row) -> Text:
    t = Text(r.check)
    if r.new:
        t.append(" (new)", style="bold")
    return t


def _wide(rows: Sequence[Row], title: str, message: str, last: str | None, with_check: bool,
          res_w: int) -> Table:
    t = Table(title=title)
    t.add_column("sev", no_wrap=True)
    if with_check:
        t.add_column("check", no_wrap=True)
    t.add_column("resource", no_wrap=True, min_width=res_w)
    t.add_column(message, ratio=1, min_width=MESSAGE_MIN, overflow="fold")
    if last is not None:
        t.add_column(last, overflow="fold")
    for r in rows:
        cells: list[Text] = [_sev(r)]
        if with_check:
            cells.append(_check(r))
        cells += [Text(r.resource), Text(r.message)]
        if last is not None:
            cells.append(Text(r.last))
        t.add_row(*cells)
    return t


def _compact(rows: Sequence[Row], title: str, message: str, last: str | None) -> Table:
    # One cell per finding: the object (whole, on its own line whenever it fits the terminal)
    # and its check id, then the message wrapped over the full width.
    t = Table(title=title)
    t.add_column("sev", no_wrap=True)
    t.add_column(f"resource  check / {message}", ratio=1, overflow="fold")
    for r in rows:
        cell = Text(r.resource, style="bold")
        if r.check:
            check = _check(r)
            check.stylize("dim")
            cell.append("  ")
            cell.append_text(check)
        cell.append("\n")
        cell.append(r.message)
        # The runbook is usually the check's id, already shown beside the object.
        if last is not None and r.last and r.last != r.check:
            cell.append(f"\n{last}: {r.last}", style="dim")
        t.add_row(_sev(r), cell)
    return t
