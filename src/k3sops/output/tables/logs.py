"""View of `k3sops logs`: the lines as they are, optionally with timestamps and labels."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from k3sops.output.render import table_for

if TYPE_CHECKING:
    from rich.console import Console

    from k3sops.domain.logs import LogsResult


def log_lines(timestamps: bool) -> Callable[[LogsResult, Console], None]:
    """The view of a logs result; ``timestamps`` prefixes each line with its RFC 3339 time."""
    from k3sops.domain.logs import short_labels

    def table(r: LogsResult, out: Console) -> None:
        # Written raw: log lines are not rich markup, and `[` in them must stay as it is.
        mixed = len({tuple(sorted(x.labels.items())) for x in r.lines}) > 1
        for x in r.lines:
            prefix = ""
            if timestamps and x.timestamp is not None:
                prefix += x.timestamp.isoformat().replace("+00:00", "Z") + " "
            if mixed:
                prefix += f"[{short_labels(x.labels)}] "
            out.file.write(prefix + x.line + "\n")
    return table


@table_for("k3sops.domain.logs.LogsResult")
def logs_table(r: LogsResult, out: Console) -> None:
    """The lines without timestamps (labels in front when they come from several streams)."""
    log_lines(False)(r, out)
