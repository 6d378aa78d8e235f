"""Entry point and the registry of top-level commands; errors become exit codes here.

Start-up speed is a feature of a CLI: this module imports only the standard library, so
``k3sops --version`` is answered without typer, rich or pydantic, and the typer root
(:mod:`k3sops.cli.tree`) imports a command's module only when that command runs or its own
``--help`` is asked. The root ``--help`` lists the commands from :data:`COMMANDS` below, so a
new top-level command is one entry here (its name, the loader that registers it, one line of
help; a unit test holds the line equal to the command's own help).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import typer

Loader = Callable[["typer.Typer"], None]


@dataclass(frozen=True)
class Entry:
    """A top-level command known before its module is imported."""

    unit: str
    """The loader (key of :data:`LOADERS`) that registers this command and its siblings."""
    help: str
    """The one line shown by ``k3sops --help``."""


def _simple(module: str) -> Loader:
    """A loader for a module whose ``register(app)`` attaches everything it has."""

    def load(app: typer.Typer) -> None:
        import_module(f"k3sops.cli.{module}").register(app)

    return load


# unit -> function registering that unit's commands on a typer app (called at most once).
LOADERS: dict[str, Loader] = {
    "config": _simple("config_cmd"),
    "status": _simple("status_cmd"),
    "check": _simple("check_cmd"),
    "diagnose": _simple("diagnose_cmd"),
    "emergency": _simple("emergency_cmd"),
    "metrics": _simple("metrics_cmd"),
    "alerts": _simple("alerts_cmd"),
    "dashboards": _simple("dashboards_cmd"),
    "runbook": _simple("runbook_cmd"),
    "remediate": _simple("remediate_cmd"),
    "node": _simple("node_cmd"),
    "scale": _simple("scale_cmd"),
    "provision": _simple("provision_cmd"),
    "upgrade": _simple("upgrade_cmd"),
    "capacity": _simple("capacity_cmd"),
    "logs": _simple("logs_cmd"),
    "env": _simple("env_cmd"),
    "gitops": _simple("gitops_cmd"),
    "backup": _simple("backup_cmd"),
    "lab": _simple("lab_cmd"),
    "serve": _simple("serve_cmd"),
}

# In the order `k3sops --help` lists them (single commands first, then groups).
COMMANDS: dict[str, Entry] = {
    "init": Entry("config", "Write a commented starter platform.yaml (never overwrites without "
                            "--force)."),
    "status": Entry("status", "Nodes, pods and monitoring targets of the platform, at a glance."),
    "metrics": Entry("metrics", "Key metrics from Prometheus: nodes, cluster health, "
                                "applications (or an ad-hoc query)."),
    "provision": Entry("provision", "Install K3s on every inventory host (site playbook), wait "
                                    "for the Nodes, check them."),
    "upgrade": Entry("upgrade", "Rolling K3s upgrades: servers first, one node at a time, "
                                "preflight checks first."),
    "capacity": Entry("capacity", "Requests and limits vs allocatable per node and environment; "
                                  "headroom; forecast."),
    "logs": Entry("logs", "Show a pod's logs, or the lines of a LogQL query when Loki is "
                          "configured."),
    "config": Entry("config", "Check the platform file."),
    "check": Entry("check", "The operations checklist: daily, weekly and monthly."),
    "diagnose": Entry("diagnose", "Diagnose the cluster, a node, pod or deployment, any object "
                                  "(KIND/NAME), the network or the storage: the causal chain "
                                  "down to the root cause, with evidence."),
    "emergency": Entry("emergency", "Guided emergency procedures: each check shown as it runs, "
                                    "changes only after confirmation (or --yes), an incident "
                                    "timeline at the end."),
    "alerts": Entry("alerts", "Alert rules (render, test with promtool, apply to Prometheus) and "
                              "firing alerts."),
    "dashboards": Entry("dashboards", "Grafana dashboards for nodes, cluster, applications, "
                                      "backups."),
    "runbook": Entry("runbook", "Runbooks for every finding, alert and emergency."),
    "node": Entry("node", "Cordon, uncordon and drain nodes (dry-run unless --apply)."),
    "rollout": Entry("remediate", "Restart workloads (dry-run unless --apply)."),
    "pods": Entry("remediate", "Clean up pods (dry-run unless --apply)."),
    "scale": Entry("scale", "Scale applications (replicas, HPAs, requests/limits, volumes); "
                            "dry-run unless --apply. `scale deployment/NAME --replicas N` is "
                            "`scale app`."),
    "env": Entry("env", "Environments and GitOps promotion (dev -> staging -> production)."),
    "gitops": Entry("gitops", "The GitOps repository ArgoCD deploys from."),
    "backup": Entry("backup", "Backups proven by restore drills: etcd, application data "
                              "(restic repository)."),
    "lab": Entry("lab", "The local lab: real Kubernetes, etcd, kwok, Prometheus, Alertmanager, "
                        "PostgreSQL on 127.0.0.1."),
    "serve": Entry("serve", "Run the operations service: checks from a watch cache, alerts, "
                            "metrics, API."),
}

# Root options that take a value, so that `--version` is found behind them without typer.
_ROOT_VALUE_OPTIONS = frozenset({"--kubeconfig", "--context", "--config", "-c", "--output", "-o"})


def _asks_version(args: list[str]) -> bool:
    """Whether the root options (before any command) include ``--version``."""
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--version":
            return True
        if not a.startswith("-") or a == "--":
            return False  # a command (or its arguments) begins: typer decides
        if a in _ROOT_VALUE_OPTIONS:
            i += 1
        i += 1
    return False


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map errors to documented exit codes."""
    args = sys.argv[1:] if argv is None else list(argv)
    if _asks_version(args):
        from k3sops import __version__

        sys.stdout.write(f"k3sops {__version__}\n")
        sys.exit(0)
    from k3sops.cli import tree

    sys.exit(tree.run(args))


def __getattr__(name: str) -> Any:
    # `app` (the typer root) and `root` (its callback) stay importable from here, as before
    # the split, without making every start-up pay for typer.
    if name in ("app", "root"):
        from k3sops.cli import tree

        return tree.app if name == "app" else tree.root
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
