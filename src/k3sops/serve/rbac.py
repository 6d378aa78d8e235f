"""The RBAC modes of the k3sops chart, derived from what the code declares (issue 16).

``readonly`` is what `k3sops serve` (and `check`, `diagnose`, `logs` run in its pod) uses:
``list`` on every kind k3sops knows (:data:`~k3sops.domain.snapshot.CORE_PATHS` and
``CUSTOM_PATHS``: `diagnose` collects them all, `check` those its rules declare), ``watch`` on
those the watch cache keeps (:func:`k3sops.serve.runner.every_kind`, from the rules' own
declarations), ``get`` on pods/log (a crash-looping container's previous log; `logs`),
``list`` on metrics.k8s.io (`diagnose performance`), ``create`` on TokenReviews and
SubjectAccessReviews (the API's authorization) and the leader election's Lease in the service's
own namespace. ``operator`` adds exactly the writes of remediation
(:data:`~k3sops.serve.remediation.PLAN_RIGHTS`, plus ``node drain``'s evictions), ``scale app``
(the scale subresource) and ``backup volume`` (Longhorn Snapshots and Backups in
``longhorn-system``, the backup's Lease). Promotion writes to the GitOps repository, not the API
server: it needs no right beyond the reads (``get`` deployments, ``list`` replicasets and
applications), which operator grants.

Secrets: no rule may read Secrets outside k3sops' own namespace, and the rules that read them
(TLS Secrets of Ingresses, unused Secrets) list them cluster-wide, so neither mode grants
Secrets: those rules are "not evaluated" (the cache names ``secrets`` forbidden) and
``pod-secret-missing`` judges from the kubelet's events alone (:data:`UNGRANTED`). Nothing in
k3sops reads a Secret through the API (its own secrets arrive as mounted files or environment
variables), so there is no own-namespace Secret right either.

`python -m k3sops.serve.rbac DIR` writes ``DIR/<mode>.yaml`` (the chart's files/rbac/);
``tests/unit/test_rbac_modes.py`` requires the chart's files to equal :func:`render` and
``tests/lab/test_rbac_lab.py`` proves on a real API server that every granted right is used and
no request the commands make is refused.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from k3sops.domain.snapshot import CORE_PATHS, CUSTOM_PATHS
from k3sops.domain.volume_backup import LONGHORN_NAMESPACE
from k3sops.serve.remediation import PLAN_RIGHTS

Mode = Literal["readonly", "operator"]
MODES: tuple[Mode, ...] = ("readonly", "operator")
RELEASE = "@release"
"""``Grant.where`` of a right in the service's own namespace (the chart's
``.Release.Namespace``): a Role there, not a ClusterRole."""
CLUSTER = "@cluster"
"""``Grant.where`` of a cluster-wide right (a ClusterRole)."""

UNGRANTED: dict[str, str] = {
    "secrets": "no mode reads Secrets outside k3sops' namespace, and the rules list them "
               "cluster-wide",
}
"""Kinds the rules read that no mode grants, and why (:func:`cost`: what it costs)."""


def cost(kind: str) -> tuple[list[str], list[str]]:
    """The rules a kind's absence leaves not evaluated (they read it) and partial (they use it).

    The engine's own rule (:func:`k3sops.domain.engine.evaluate`): a rule that ``reads`` an
    unread kind is not evaluated, one that only ``uses`` it runs on what remains.
    """
    from k3sops.domain import checks as registry

    specs = registry.selected("monthly")
    return ([s.id for s in specs if kind in s.reads],
            [s.id for s in specs if kind in s.uses and kind not in s.reads])


@dataclass(frozen=True)
class Grant:
    """Verbs on resources of one API group, cluster-wide or in one namespace.

    Attributes:
        group: the API group ("" is the core group).
        resources: resource names, with a subresource as ``pods/log``.
        verbs: the verbs.
        why: the code that uses it (README and the generated file say it).
        where: :data:`CLUSTER`, :data:`RELEASE` or a namespace's name.
    """

    group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]
    why: str
    where: str = CLUSTER


def _group_of(path: str) -> str:
    """The API group of a collection path (``/apis/apps/v1/...`` -> ``apps``, core -> "")."""
    return "" if path.startswith("/api/") else path.split("/")[2]


_LIST_WHY = ("check and diagnose: one LIST per kind (diagnose collects every kind k3sops "
             "knows, check those its rules declare)")
_WATCH_WHY = "serve's watch cache: WATCH every kind a rule declares"


def known_kinds() -> list[str]:
    """Every kind k3sops knows (what `diagnose` lists), in declaration order."""
    return [*CORE_PATHS, *CUSTOM_PATHS]


def watched_kinds() -> list[str]:
    """The kinds the watch cache keeps: every kind a rule declares."""
    from k3sops.serve.runner import every_kind  # the service's own choice of kinds

    return every_kind()


def cache_grants() -> list[Grant]:
    """``list`` on every kind k3sops knows and ``watch`` on the cached ones, but UNGRANTED."""
    paths = {**CORE_PATHS, **CUSTOM_PATHS}
    out: list[Grant] = []
    for verb, kinds, why in (("list", known_kinds(), _LIST_WHY),
                             ("watch", watched_kinds(), _WATCH_WHY)):
        by_group: dict[str, list[str]] = {}
        for kind in kinds:
            if kind not in UNGRANTED:
                by_group.setdefault(_group_of(paths[kind]), []).append(kind.split(".")[0])
        out += [Grant(group, tuple(sorted(resources)), (verb,), why)
                for group, resources in sorted(by_group.items())]
    return out


SERVICE_GRANTS: tuple[Grant, ...] = (
    Grant("", ("pods/log",), ("get",),
          "diagnose and the service's alert enrichment: a crash-looping container's "
          "previous log; k3sops logs"),
    Grant("metrics.k8s.io", ("nodes", "pods"), ("list",),
          "diagnose performance: NodeMetrics and PodMetrics (kubectl top's numbers)"),
    Grant("authentication.k8s.io", ("tokenreviews",), ("create",),
          "serve: who a bearer token belongs to (serve/auth.py)"),
    Grant("authorization.k8s.io", ("subjectaccessreviews",), ("create",),
          "serve: whether that user may get k3sops.io/<resource> (serve/auth.py)"),
    Grant("coordination.k8s.io", ("leases",), ("get", "create", "update"),
          "serve: the leader election's Lease (serve/leader.py)", RELEASE),
)
"""What the service and the reading commands do beyond the cache's LISTs, in every mode."""

DRAIN_GRANTS: tuple[Grant, ...] = (
    Grant("", ("pods/eviction",), ("create",),
          "node drain: evict the node's pods through the Eviction API (PDBs respected)"),
)
"""`k3sops node drain` beyond the cordon plan's rights."""

SCALE_GRANTS: tuple[Grant, ...] = (
    Grant("apps", ("deployments/scale", "statefulsets/scale"), ("get", "patch"),
          "scale app: read and set the replica count through the scale subresource"),
)
"""`k3sops scale app` beyond the restart plan's rights (it reads the workloads the same way)."""

BACKUP_GRANTS: tuple[Grant, ...] = (
    Grant("", ("persistentvolumeclaims", "persistentvolumes"), ("get",),
          "backup volume: the PVC and its PV lead to the Longhorn volume"),
    Grant("longhorn.io", ("volumes",), ("get",),
          "backup volume: the Longhorn volume exists", LONGHORN_NAMESPACE),
    Grant("longhorn.io", ("snapshots", "backups"), ("create",),
          "backup volume: a Longhorn Snapshot, then a Backup of it", LONGHORN_NAMESPACE),
    Grant("longhorn.io", ("backups",), ("get",),
          "backup volume: wait until Longhorn finished the Backup", LONGHORN_NAMESPACE),
    Grant("coordination.k8s.io", ("leases",), ("get", "create", "update", "delete"),
          "backups: one run per target at a time (adapters/lease.py; set backup.lease_namespace "
          "to k3sops' namespace)", RELEASE),
)
"""`k3sops backup volume` (the backup CronJobs run it with the chart's ServiceAccount)."""


def plan_grants() -> list[Grant]:
    """The remediation plans' rights (:data:`PLAN_RIGHTS`, their single source)."""
    return [Grant(rule["apiGroups"][0], tuple(rule["resources"]), tuple(rule["verbs"]),
                  f"remediation plan {plan} (serve's policies; rollout restart, pods clean, "
                  "node cordon)")
            for plan, rules in PLAN_RIGHTS.items() for rule in rules]


def grants(mode: Mode) -> list[Grant]:
    """Every grant of ``mode``.

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in MODES:
        raise ValueError(f"unknown RBAC mode {mode!r}: one of {', '.join(MODES)}")
    out = [*cache_grants(), *SERVICE_GRANTS]
    if mode == "operator":
        out += [*plan_grants(), *DRAIN_GRANTS, *SCALE_GRANTS, *BACKUP_GRANTS]
    return out


Atom = tuple[str, str, str, str]
"""(where, group, resource, verb): one right, as the API server authorizes a request."""


def atoms(mode: Mode) -> set[Atom]:
    """The rights of ``mode`` one by one."""
    return {(g.where, g.group, r, v) for g in grants(mode) for r in g.resources
            for v in g.verbs}


LAB_UNREACHED: dict[Atom, str] = {
    (CLUSTER, "metrics.k8s.io", "nodes", "list"):
        "diagnose performance reads NodeMetrics only when PodMetrics are served, and the lab "
        "runs no metrics-server (its PodMetrics LIST is answered 404)",
}
"""Rights the lab proof cannot see used, and why; tests/lab/test_rbac_lab.py requires exactly
these (and no other) unused."""

_VERB_ORDER = ("get", "list", "watch", "create", "update", "patch", "delete")


def rules(mode: Mode) -> dict[str, list[dict[str, Any]]]:
    """``{where: [PolicyRule]}``: resources of one group with the same verbs in one rule."""
    verbs: dict[tuple[str, str, str], set[str]] = {}
    for where, group, resource, verb in atoms(mode):
        verbs.setdefault((where, group, resource), set()).add(verb)
    merged: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for (where, group, resource), vs in verbs.items():
        ordered = tuple(v for v in _VERB_ORDER if v in vs)
        merged.setdefault((where, group, ordered), []).append(resource)
    out: dict[str, list[dict[str, Any]]] = {}
    for (where, group, ordered_verbs), resources in sorted(merged.items()):
        out.setdefault(where, []).append({"apiGroups": [group], "resources": sorted(resources),
                                          "verbs": list(ordered_verbs)})
    return out


def render(mode: Mode) -> str:
    """The chart's ``files/rbac/<mode>.yaml``: the rules by where they apply.

    ``cluster``: a ClusterRole's rules; ``release``: a Role's in the release's namespace;
    ``namespaces``: a Role's in each named namespace.
    """
    by_where = rules(mode)
    doc: dict[str, Any] = {
        "cluster": by_where.pop(CLUSTER, []),
        "release": by_where.pop(RELEASE, []),
        "namespaces": dict(sorted(by_where.items())),
    }
    by_why: dict[str, list[str]] = {}
    for g in grants(mode):
        where = "" if g.where == CLUSTER else (
            " (own namespace)" if g.where == RELEASE else f" (in {g.where})")
        by_why.setdefault(g.why, []).append(f"{'/'.join(g.verbs)} {','.join(g.resources)}"
                                            + where)
    header = [f"# The {mode!r} RBAC mode of k3sops' ServiceAccount. Generated from the code by",
              "# `python -m k3sops.serve.rbac deploy/helm/k3sops/files/rbac`: do not edit.",
              "# templates/rbac.yaml renders it; tests/unit/test_rbac_modes.py keeps it equal.",
              "# Why each right:",
              *(f"#   {why}: " + (_cache_summary(why) if why in (_LIST_WHY, _WATCH_WHY)
                                  else "; ".join(what))
                for why, what in sorted(by_why.items())),
              *(f"# Not granted: {kind} ({reason}): {_cost_text(kind)}"
                for kind, reason in UNGRANTED.items())]
    body = yaml.safe_dump(doc, sort_keys=False, default_flow_style=None, width=100)
    return "\n".join(_wrap(header)) + "\n" + body


def _cache_summary(why: str) -> str:
    if why == _LIST_WHY:
        return "list on every kind k3sops knows but " + ", ".join(UNGRANTED)
    unwatched = [k for k in known_kinds() if k not in watched_kinds() and k not in UNGRANTED]
    return "watch on the same but " + (", ".join(unwatched) or "none")


def _cost_text(kind: str) -> str:
    skipped, partial = cost(kind)
    return (f"not evaluated: {', '.join(skipped) or 'none'}; judged without it: "
            f"{', '.join(partial) or 'none'}")


def readme_table() -> str:
    """README's table of the modes (``tests/unit/test_rbac_modes.py`` requires it there).

    One row per grant; the cache's list/watch in one row, the remediation plans' rights in one
    row pointing at their own table (:data:`PLAN_RIGHTS`'s, also checked).
    """
    rows = ["| mode | verbs | resources | where | used by |", "|---|---|---|---|---|"]
    plans = {g.why for g in plan_grants()}
    for mode, extra in (("readonly", grants("readonly")),
                        ("operator", [g for g in grants("operator")
                                      if g not in grants("readonly")])):
        done: set[str] = set()
        for g in extra:
            where = {CLUSTER: "cluster", RELEASE: "own namespace"}.get(g.where, g.where)
            verbs = ", ".join(f"`{v}`" for v in g.verbs)
            resources = ", ".join(g.resources) + (f" ({g.group})" if g.group else "")
            why = g.why
            if why in (_LIST_WHY, _WATCH_WHY) or why in plans:
                if why in done or (why in plans and "plans" in done):
                    continue
                done.add("plans" if why in plans else why)
                if why in plans:
                    verbs, resources = "as listed", "each remediation plan's (table below)"
                    why = "remediation: serve's policies, rollout restart, pods clean, node cordon"
                else:
                    resources = _cache_summary(why).split(" ", 2)[2].replace(
                        "every kind k3sops knows", "every kind k3sops knows "
                        "(`domain/snapshot.py`)")
            rows.append(f"| {mode} | {verbs} | {resources} | {where} | {why} |")
    return "\n".join(rows) + "\n"


def _wrap(lines: list[str], width: int = 100) -> list[str]:
    out: list[str] = []
    for whole in lines:
        line = whole
        while len(line) > width:
            cut = line.rfind(" ", 0, width)
            if cut <= line.find("#") + 4:
                break
            out.append(line[:cut])
            line = "#       " + line[cut + 1:]
        out.append(line)
    return out


def write(directory: Path) -> list[Path]:
    """Write ``<mode>.yaml`` for every mode into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for mode in MODES:
        path = directory / f"{mode}.yaml"
        path.write_text(render(mode))
        written.append(path)
    return written


def main(argv: list[str]) -> int:
    """`python -m k3sops.serve.rbac DIR`: write the chart's RBAC files."""
    if len(argv) != 1:
        print("usage: python -m k3sops.serve.rbac DIR  (deploy/helm/k3sops/files/rbac)",
              file=sys.stderr)
        return 2
    for path in write(Path(argv[0])):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
