"""RBAC hygiene: who holds cluster-admin, which roles read Secrets, dangling bindings.

Kubernetes' own bootstrap objects (label ``kubernetes.io/bootstrapping=rbac-defaults``:
``cluster-admin`` for ``system:masters``, the controllers' roles and bindings) and the
bindings K3s' helm-controller makes for the charts it bundles (``helm-kube-system-*``, e.g.
Traefik's installer) are the platform's own and are not reported.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from k3sops.domain import index as ix
from k3sops.domain.checks.base import CheckContext, check
from k3sops.domain.findings import Finding, Severity
from k3sops.domain.snapshot import Obj, get, meta

BOOTSTRAP_LABEL = "kubernetes.io/bootstrapping"
K3S_HELM_BINDING_PREFIX = "helm-kube-system-"
"""K3s' helm-controller binds cluster-admin to ``kube-system/helm-<chart>`` for its charts."""
MASTERS = "system:masters"
READ_VERBS = frozenset({"get", "list", "watch", "*"})
BINDINGS = ("rolebindings", "clusterrolebindings")
KIND_OF = {"rolebindings": "RoleBinding", "clusterrolebindings": "ClusterRoleBinding",
           "roles": "Role", "clusterroles": "ClusterRole"}


def _bootstrap(obj: Obj) -> bool:
    return bool(get(obj, "metadata", "labels", BOOTSTRAP_LABEL) == "rbac-defaults")


def _subject_text(s: Mapping[str, Any], default_ns: str | None = None) -> str:
    if s.get("kind") == "ServiceAccount":
        return f"ServiceAccount {s.get('namespace') or default_ns}/{s.get('name')}"
    return f"{s.get('kind')} {s.get('name')}"


def _k3s_own(binding: Obj, subject: Mapping[str, Any]) -> bool:
    return (meta(binding)[1].startswith(K3S_HELM_BINDING_PREFIX)
            and subject.get("kind") == "ServiceAccount"
            and subject.get("namespace") == "kube-system"
            and str(subject.get("name") or "").startswith("helm-"))


@check("rbac-cluster-admin", "Few subjects hold cluster-admin", periods=("weekly",),
       reads=("clusterrolebindings",), category="hygiene")
def rbac_cluster_admin(ctx: CheckContext) -> list[Finding]:
    """ClusterRoleBindings granting cluster-admin to anyone but ``system:masters``.

    Warning: such a subject can read every Secret and change anything; a ServiceAccount's
    token leaking is a cluster takeover. (A RoleBinding to cluster-admin grants only its own
    namespace and is not reported.)
    """
    out = []
    for crb in ctx.snapshot.get("clusterrolebindings"):
        if get(crb, "roleRef", "name") != "cluster-admin" or get(crb, "roleRef", "kind") \
                != "ClusterRole":
            continue
        subjects = [s for s in crb.get("subjects") or []
                    if not (s.get("kind") == "Group" and s.get("name") == MASTERS)
                    and not _k3s_own(crb, s)]
        if not subjects:
            continue
        _, name = meta(crb)
        who = [_subject_text(s) for s in subjects]
        out.append(ctx.finding(
            "rbac-cluster-admin", "warning", "ClusterRoleBinding", None, name,
            f"ClusterRoleBinding {name} grants cluster-admin to {', '.join(who[:3])}"
            + (f" (+{len(who) - 3} more)" if len(who) > 3 else ""), "rbac-cluster-admin",
            {"subjects": [dict(s) for s in subjects]}))
    return out


def _secret_rules(role: Obj) -> list[dict[str, Any]]:
    """The role's rules that let it read every Secret it can see (no resourceNames)."""
    out = []
    for rule in role.get("rules") or []:
        groups = rule.get("apiGroups") or []
        resources = rule.get("resources") or []
        verbs = set(rule.get("verbs") or [])
        if rule.get("resourceNames") or not ({"", "*"} & set(groups)):
            continue
        if not ({"secrets", "*"} & set(resources)) or not (verbs & READ_VERBS):
            continue
        out.append({"apiGroups": groups, "resources": resources, "verbs": sorted(verbs),
                    "wildcard": "*" in resources or "*" in verbs})
    return out


def _bound_by(ctx: CheckContext) -> dict[tuple[str, str | None, str], list[str]]:
    """Bindings by the role they grant (kind, namespace or None, name); empty when unread."""
    out: dict[tuple[str, str | None, str], list[str]] = defaultdict(list)
    for kind in BINDINGS:
        for b in ctx.snapshot.get(kind):
            ns, name = meta(b)
            ref_kind = str(get(b, "roleRef", "kind"))
            ref_ns = ns if ref_kind == "Role" else None
            out[(ref_kind, ref_ns, str(get(b, "roleRef", "name")))].append(
                f"{KIND_OF[kind]} {ns + '/' if ns else ''}{name}")
    return out


@check("rbac-secrets-wildcard", "Roles do not read every Secret", periods=("weekly",),
       reads=("roles", "clusterroles"), uses=BINDINGS, category="hygiene")
def rbac_secrets_wildcard(ctx: CheckContext) -> list[Finding]:
    """Roles and ClusterRoles (not Kubernetes' own) that can read all Secrets in their scope.

    Warning when it comes from a wildcard (``*`` resources or verbs: granted without anyone
    asking for Secrets); info for an explicit get/list/watch on secrets (ingress controllers
    and operators need it — worth knowing who can). Aggregated ClusterRoles are reported at
    their sources.
    """
    bound = _bound_by(ctx)
    unread = [f"could not read {k}: {why}" for k in BINDINGS if (why := ctx.unread(k))]
    out = []
    for kind in ("roles", "clusterroles"):
        for role in ctx.snapshot.get(kind):
            ns, name = meta(role)
            if (_bootstrap(role) or name.startswith("system:") or role.get("aggregationRule")
                    or not ctx.in_scope(ns)):
                continue
            rules = _secret_rules(role)
            if not rules:
                continue
            wildcard = any(r["wildcard"] for r in rules)
            severity: Severity = "warning" if wildcard else "info"
            scope = f"namespace {ns}" if ns else "every namespace"
            how = ("through a wildcard" if wildcard
                   else f"({', '.join(sorted({v for r in rules for v in r['verbs']}))})")
            users = bound.get((KIND_OF[kind], ns, name), [])
            evidence: dict[str, Any] = {"rules": rules, "bound_by": users}
            if unread:
                evidence["bindings_unread"] = unread
            out.append(ctx.finding(
                "rbac-secrets-wildcard", severity, KIND_OF[kind], ns, name,
                f"{KIND_OF[kind]} {ns + '/' if ns else ''}{name} can read every Secret in "
                f"{scope} {how}"
                + (f", bound by {', '.join(users[:2])}" if users else ""),
                "rbac-secrets-wildcard", evidence))
    return out


def _bindings(ctx: CheckContext) -> list[tuple[str, Obj]]:
    return [(kind, b) for kind in BINDINGS for b in ctx.snapshot.get(kind)
            if ctx.in_scope(meta(b)[0]) and ix.live(b)]


@check("rbac-binding-role-missing", "Bindings grant roles that exist", periods=("weekly",),
       reads=(*BINDINGS, "roles", "clusterroles"), category="hygiene")
def rbac_binding_role_missing(ctx: CheckContext) -> list[Finding]:
    """RoleBindings/ClusterRoleBindings whose roleRef names no existing Role/ClusterRole.

    Warning: whoever relies on it has no permission (a controller failing with "forbidden"),
    and whoever later creates a role of that name grants it to those subjects unawares.
    """
    out = []
    for kind, b in _bindings(ctx):
        ns, name = meta(b)
        ref_kind, ref_name = str(get(b, "roleRef", "kind")), str(get(b, "roleRef", "name"))
        if ref_kind == "Role":
            exists = ix.find(ctx.snapshot, "roles", ns, ref_name) is not None
            ref_ns = ns
        else:
            exists = ix.find(ctx.snapshot, "clusterroles", None, ref_name) is not None
            ref_ns = None
        if exists:
            continue
        subjects = [_subject_text(s, ns) for s in b.get("subjects") or []]
        out.append(ctx.finding(
            "rbac-binding-role-missing", "warning", KIND_OF[kind], ns, name,
            f"{KIND_OF[kind]} {ns + '/' if ns else ''}{name} grants {ref_kind} {ref_name}, "
            f"which does not exist: {', '.join(subjects[:3]) or 'its subjects'} receive "
            "nothing from it", "rbac-binding-role-missing",
            {"role_ref": dict(b.get("roleRef") or {}), "subjects": subjects,
             "cause_ref": {"kind": ref_kind, "namespace": ref_ns, "name": ref_name}}))
    return out


def _missing_accounts(ctx: CheckContext, b: Obj) -> Sequence[str]:
    ns = meta(b)[0]
    out = []
    for s in b.get("subjects") or []:
        if s.get("kind") != "ServiceAccount":
            continue
        sa_ns = s.get("namespace") or ns
        if ix.find(ctx.snapshot, "serviceaccounts", sa_ns, str(s.get("name"))) is None:
            out.append(f"{sa_ns}/{s.get('name')}")
    return out


@check("rbac-binding-subject-missing", "Bindings name existing ServiceAccounts",
       periods=("weekly",), reads=(*BINDINGS, "serviceaccounts"), category="hygiene")
def rbac_binding_subject_missing(ctx: CheckContext) -> list[Finding]:
    """Bindings to ServiceAccounts that do not exist (left over after an uninstall).

    Info: harmless until someone creates a ServiceAccount of that name, which then silently
    inherits the permissions. Kubernetes' bootstrap bindings are skipped (they name controller
    accounts that exist only when the controller manager uses per-controller credentials).
    """
    out = []
    for kind, b in _bindings(ctx):
        if _bootstrap(b):
            continue
        missing = _missing_accounts(ctx, b)
        if not missing:
            continue
        ns, name = meta(b)
        out.append(ctx.finding(
            "rbac-binding-subject-missing", "info", KIND_OF[kind], ns, name,
            f"{KIND_OF[kind]} {ns + '/' if ns else ''}{name} grants "
            f"{get(b, 'roleRef', 'kind')} {get(b, 'roleRef', 'name')} to ServiceAccount "
            f"{', '.join(missing[:3])}, which does not exist", "rbac-binding-subject-missing",
            {"missing_service_accounts": list(missing),
             "role_ref": dict(b.get("roleRef") or {})}))
    return out
