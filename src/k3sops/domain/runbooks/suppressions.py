"""Runbook for suppressions in platform.yaml."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="suppression-expired", title="A suppression in platform.yaml has expired",
        summary="A suppression hid some findings until a date that has passed; they are "
                "reported again. Either the reason still holds (renew it) or the problem "
                "should now be fixed.",
        severity_hint="warning",
        steps=[
            step("See what it was hiding", "The findings it matched are in today's report "
                 "again.", "k3sops check --weekly --show-suppressed",
                 "Findings of the suppression's check on the objects it named.",
                 "k3sops check --show-suppressed"),
            step("Renew or remove it", "Keep the list of exceptions short and dated.",
                 "$EDITOR platform.yaml  # suppressions: [...]",
                 "A new `expires:` with the reason still true, or the entry deleted once the "
                 "objects are fixed."),
        ]),
]
