"""Runbooks for the monitoring stack itself: firing alerts, noisy alerts, scrape targets."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="alert-firing", title="An alert is firing",
        summary="An alert without a runbook of its own fires. Its labels and annotations say "
                "what and where.",
        severity_hint="warning",
        steps=[
            step("Read the alert", "Labels name the resource; annotations describe it.",
                 "amtool alert query --alertmanager.url=<alertmanager-url>",
                 "alertname, namespace, severity and the description; a runbook_id "
                 "annotation points at a runbook.", "k3sops alerts list"),
            step("Confirm in the cluster", "The alert's expression is a symptom; check it.",
                 "kubectl get events -A --sort-by=.lastTimestamp | tail -20",
                 "Events about the resource the alert names.", "k3sops check"),
            step("Silence it while you work on it", "Stops repeated pages, with a reason.",
                 "amtool silence add alertname=<alertname> --duration=2h "
                 "--comment='<why>' --alertmanager.url=<alertmanager-url>",
                 "The silence id; remove it when fixed.",
                 "k3sops alerts silence -m alertname=<alertname> -d 2h --comment '<why>'"),
        ],
        related=["alert-overnight", "noisy-alerts"]),
    Runbook(
        id="alert-overnight", title="An alert fired overnight",
        summary="An alert fired since the last check and resolved itself: it may come back.",
        severity_hint="info",
        steps=[
            step("See when and how often", "A flapping alert points at a real problem or a "
                 "bad threshold.", "promtool query range --start=<since> --end=<now> "
                 "<prometheus-url> 'ALERTS{alertname=\"<alertname>\"}'",
                 "Many short firings (flapping) or one long episode.",
                 "k3sops metrics --query 'ALERTS{alertname=\"<alertname>\"}'"),
            step("Follow the alert's own runbook", "The cause may still be there.", None,
                 "The runbook_id of the alert (`k3sops runbook show <runbook-id>`)."),
        ],
        related=["alert-firing", "noisy-alerts"]),
    Runbook(
        id="noisy-alerts", title="Noisy alert",
        summary="One of the alerts that fired most this month: each firing costs attention; "
                "fix the cause or tune the rule.",
        severity_hint="info",
        steps=[
            step("See its firings over 30 days", "A steady stream or a few bursts.",
                 "promtool query instant <prometheus-url> 'sum by(alertname) "
                 "(count_over_time(ALERTS{alertstate=\"firing\"}[30d]))'",
                 "How many series and which resources fire.",
                 "k3sops metrics --query 'ALERTS{alertname=\"<alertname>\"}'"),
            step("Fix the cause, or tune threshold and for", "Per-environment thresholds live "
                 "in platform.yaml; re-render and test the rules.",
                 "promtool test rules <rules-test-file>",
                 "The rule tests pass with the new threshold.", "k3sops alerts test"),
            step("Apply the rules", "Prometheus picks up the new thresholds.", None,
                 "Prometheus reloaded the rule files.", "k3sops alerts apply"),
        ],
        related=["alert-firing"]),
    Runbook(
        id="target-down", title="Scrape target down",
        summary="Prometheus cannot scrape a target: its metrics and every alert based on "
                "them are blind.",
        severity_hint="warning",
        steps=[
            step("See the target's last error", "The scrape error names the cause.",
                 "curl -s <prometheus-url>/api/v1/targets?state=active",
                 "lastError: 'connection refused' (not running), 'deadline exceeded' "
                 "(network), 401/403 (credentials).", "k3sops status"),
            step("Check the pod behind it", "The exporter itself may be crashing.",
                 "kubectl -n <namespace> get pods -l <selector> -o wide",
                 "Pods not Running or not Ready.", "k3sops logs <pod> -n <namespace>"),
        ],
        related=["node-down", "apiserver-down"]),
]
