"""The steps table shared by the commands that run plans (remediation, scale app, provision)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from rich.console import Console

STEP_COLOURS = {"ok": "green", "skipped": "cyan", "failed": "red", "not-run": "yellow",
                "planned": "white"}
"""Colour of a step's result (the states of a plan's steps, not severities)."""


class _Step(Protocol):
    @property
    def action(self) -> str: ...
    @property
    def target(self) -> str: ...
    @property
    def detail(self) -> str: ...


class StepRow(Protocol):
    """A planned step and what became of it, as remediation and provisioning reports hold."""

    @property
    def step(self) -> _Step:
        """The planned step."""
    @property
    def result(self) -> str:
        """ok, skipped, failed, not-run or planned."""
    @property
    def error(self) -> str | None:
        """Why it failed."""


def steps_table(title: str, applied: bool, steps: Sequence[StepRow], out: Console) -> None:
    """Print the numbered steps of a plan and their results, or that there is nothing to do."""
    from rich.table import Table

    if not steps:
        out.print(f"{title}: nothing to do")
        return
    mode = "applied" if applied else "plan (dry run; pass --apply to make these changes)"
    t = Table("#", "action", "target", "detail", "result", "error", title=f"{title}: {mode}")
    for i, s in enumerate(steps, 1):
        colour = STEP_COLOURS.get(s.result, "white")
        t.add_row(str(i), s.step.action, s.step.target, s.step.detail,
                  f"[{colour}]{s.result}[/]", s.error or "")
    out.print(t)
