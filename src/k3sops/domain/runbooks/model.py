"""The shape of a runbook: an ordered list of steps, each with a command and what to look for."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Runbook", "RunbookList", "RunbookSummary", "Severity", "Step", "step"]

Severity = Literal["critical", "warning", "info"]


class Step(BaseModel):
    """One thing to do while following a runbook.

    Attributes:
        title: what to do, imperative ("Describe the pod").
        why: what the step tells you or fixes, so a reader can skip it knowingly.
        command: the kubectl/k3s/promtool/... command to run, with placeholders such as
            ``<namespace>``, ``<pod>``, ``<node>``; None for a step that is a decision.
        look_for: what in the command's output (or the situation) decides the next step.
        automated_by: the k3sops command that does this step for you, if one exists.
    """

    model_config = ConfigDict(frozen=True)

    title: str
    why: str
    command: str | None = None
    look_for: str
    automated_by: str | None = None


class Runbook(BaseModel):
    """A procedure for one finding type, alert or emergency (`k3sops runbook show ID`).

    Attributes:
        id: kebab-case id, as findings (``Finding.runbook``) and alerts (``runbook_id``) name it.
        title: one line.
        summary: what the situation means and what is at stake.
        severity_hint: the severity this usually has (the finding or alert may say otherwise).
        steps: what to do, in order.
        related: ids of runbooks worth reading next.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    summary: str
    severity_hint: Severity
    steps: list[Step] = Field(min_length=1)
    related: list[str] = Field(default_factory=list)

    @property
    def automated_steps(self) -> int:
        """How many steps a k3sops command does for you."""
        return sum(1 for s in self.steps if s.automated_by)


class RunbookSummary(BaseModel):
    """One row of `k3sops runbook list`."""

    id: str
    title: str
    severity_hint: Severity
    steps: int
    automated_steps: int


class RunbookList(BaseModel):
    """Output of `k3sops runbook list` (stable JSON schema)."""

    runbooks: list[RunbookSummary]


def step(title: str, why: str, command: str | None, look_for: str,
         automated_by: str | None = None) -> Step:
    """Build a :class:`Step` positionally: keeps the runbook catalogues short and readable."""
    return Step(title=title, why=why, command=command, look_for=look_for,
                automated_by=automated_by)
