"""The incident timeline as Markdown, ready to paste into an incident report."""

from __future__ import annotations

from k3sops.domain.emergency.models import EmergencyReport


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def timeline_markdown(report: EmergencyReport) -> str:
    """The incident timeline as Markdown (UTC), ready to paste into an incident report."""
    started = report.started_at.strftime("%Y-%m-%d %H:%M:%S")
    finished = report.finished_at.strftime("%Y-%m-%d %H:%M:%S") if report.finished_at else "?"
    verdict = (f"{len(report.failed)} check(s) failed, {len(report.unresolved)} unresolved"
               if report.failed else "no check failed")
    if report.interrupted:
        verdict += " (INTERRUPTED: later steps did not run)"
    lines = [f"# Incident timeline: {report.procedure} ({report.target})", "",
             f"- Started: {started} UTC", f"- Finished: {finished} UTC",
             f"- Result: {verdict}; {sum(1 for a in report.actions if a.decision == 'applied')}"
             " change(s) made",
             f"- Runbooks: {', '.join(report.runbooks)}", "",
             "| time (UTC) | kind | step | result | detail |", "|---|---|---|---|---|"]
    lines += [f"| {e.at:%H:%M:%S} | {e.kind} | {_md(e.step)} | {_md(e.result)} | "
              f"{_md(e.detail)} |" for e in report.timeline]
    lines += ["", "## Checks", ""]
    lines += [f"- **{c.title}**: {c.status} — {c.detail}" for c in report.checks]
    if report.actions:
        lines += ["", "## Changes", ""]
        lines += [f"- {a.proposal.text}: {a.decision} ({a.why})"
                  + (f", result {a.result}" if a.decision == "applied" else "")
                  + (f": {a.error}" if a.error else "") for a in report.actions]
    if report.verification:
        lines += ["", "## Verification after the changes", ""]
        lines += [f"- **{c.title}**: {c.status} — {c.detail}" for c in report.verification]
    lines += ["", "## Next steps", "", *(f"- {s}" for s in report.next_steps), ""]
    return "\n".join(lines)
