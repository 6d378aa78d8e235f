"""Runbooks: one per finding type, per alert rule and per emergency (`k3sops runbook`).

Pure data and pure rendering: the catalogue is assembled from every topic module of this
package that defines ``RUNBOOKS`` (a new topic is a new module); the ids are the ones findings
(``Finding.runbook``) and alert rules (``runbook_id``) carry.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
import re

from k3sops.domain.runbooks.model import Runbook, RunbookList, RunbookSummary, Severity, Step

__all__ = [
    "CATALOGUE",
    "Runbook",
    "RunbookList",
    "RunbookSummary",
    "Severity",
    "Step",
    "by_id",
    "closest",
    "index_markdown",
    "summaries",
    "to_markdown",
]



def _topics() -> list[Runbook]:
    found: list[Runbook] = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name == "model":
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found.extend(getattr(module, "RUNBOOKS", []))
    return found


CATALOGUE: tuple[Runbook, ...] = tuple(sorted(_topics(), key=lambda r: r.id))
"""Every runbook, sorted by id."""


def by_id() -> dict[str, Runbook]:
    """The catalogue keyed by runbook id."""
    return {r.id: r for r in CATALOGUE}


def closest(wanted: str, n: int = 3) -> list[str]:
    """The ids most like ``wanted`` (for "did you mean"), best first; may be empty."""
    ids = [r.id for r in CATALOGUE]
    found = difflib.get_close_matches(wanted, ids, n=n, cutoff=0.5)
    # Also offer ids that contain the word typed ("etcd" -> every etcd runbook).
    found += [i for i in ids if wanted and wanted in i and i not in found]
    return found[:n]


def summaries() -> RunbookList:
    """The rows of `k3sops runbook list`."""
    return RunbookList(runbooks=[
        RunbookSummary(id=r.id, title=r.title, severity_hint=r.severity_hint,
                       steps=len(r.steps), automated_steps=r.automated_steps)
        for r in CATALOGUE])


def _fence(text: str) -> list[str]:
    # A fence longer than any backtick run inside keeps commands with backticks intact.
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [f"{ticks}sh", text, ticks]


def to_markdown(rb: Runbook) -> str:
    """One runbook as a Markdown page (for a docs site, or `runbook show --markdown`)."""
    lines = [f"# {rb.title}", "", f"`{rb.id}` · usual severity: **{rb.severity_hint}**", "",
             rb.summary, "", "## Steps", ""]
    for i, s in enumerate(rb.steps, 1):
        lines += [f"### {i}. {s.title}", "", s.why, ""]
        if s.command:
            lines += [*_fence(s.command), ""]
        lines += [f"**Look for:** {s.look_for}", ""]
        if s.automated_by:
            lines += [f"**k3sops can do this:** `{s.automated_by}`", ""]
    if rb.related:
        lines += ["## Related", "", *(f"- [{r}]({r}.md)" for r in rb.related), ""]
    return "\n".join(lines)


def index_markdown(runbooks: tuple[Runbook, ...] = CATALOGUE) -> str:
    """The index page linking every runbook, with its severity and step counts."""
    lines = ["# Runbooks", "", "| runbook | title | severity | steps | automated |",
             "|---|---|---|---|---|"]
    lines += [f"| [{r.id}]({r.id}.md) | {r.title.replace('|', '/')} | {r.severity_hint} | "
              f"{len(r.steps)} | {r.automated_steps} |" for r in runbooks]
    return "\n".join(lines) + "\n"
