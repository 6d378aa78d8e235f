"""Runbooks for RBAC hygiene: cluster-admin, roles reading Secrets, dangling bindings."""

from __future__ import annotations

from k3sops.domain.runbooks.model import Runbook, step

RUNBOOKS: list[Runbook] = [
    Runbook(
        id="rbac-cluster-admin", title="Subject bound to cluster-admin",
        summary="A ClusterRoleBinding gives cluster-admin to a ServiceAccount, user or group: "
                "anyone holding its credentials controls the whole cluster.",
        severity_hint="warning",
        steps=[
            step("See who holds it", "Subjects and why they were given it.",
                 "kubectl get clusterrolebinding <name> -o yaml", "The subjects."),
            step("Check what it really does", "Most tools need far less.",
                 "kubectl auth can-i --list --as=system:serviceaccount:<namespace>:<sa>",
                 "The verbs and resources it uses."),
            step("Replace it with a narrower role", "A ClusterRole with the resources it "
                 "needs, or a RoleBinding in its namespace.",
                 "kubectl delete clusterrolebinding <name>",
                 "The tool still works with its new role.", "k3sops check --weekly"),
        ],
        related=["rbac-secrets-wildcard"]),
    Runbook(
        id="rbac-secrets-wildcard", title="Role can read every Secret",
        summary="A Role or ClusterRole grants get/list/watch (or *) on all Secrets of its "
                "scope, often through a wildcard: every password and token there is readable.",
        severity_hint="warning",
        steps=[
            step("Read the role's rules", "Wildcards grant Secrets without anyone asking.",
                 "kubectl get clusterrole <name> -o yaml",
                 "resources ['*'] or verbs ['*'], or secrets without resourceNames."),
            step("See who is bound to it", "The risk is the subjects.",
                 "kubectl get rolebindings,clusterrolebindings -A -o wide | grep <name>",
                 "ServiceAccounts of apps that do not need Secrets."),
            step("Narrow it", "List resources explicitly; restrict secrets to resourceNames.",
                 "kubectl edit clusterrole <name>", "No wildcard; secrets by name only.",
                 "k3sops check --weekly"),
        ],
        related=["rbac-cluster-admin"]),
    Runbook(
        id="rbac-binding-role-missing", title="Binding grants a role that does not exist",
        summary="A RoleBinding/ClusterRoleBinding names a missing role: its subjects lack "
                "the permissions someone meant to give, and a role created later with that "
                "name is granted to them unawares.",
        severity_hint="warning",
        steps=[
            step("See the binding", "Which role and subjects.",
                 "kubectl -n <namespace> get rolebinding <name> -o yaml",
                 "roleRef kind and name."),
            step("Recreate the role or delete the binding", "A chart uninstalled in part "
                 "leaves bindings behind.",
                 "kubectl -n <namespace> delete rolebinding <name>",
                 "The binding refers to an existing role, or is gone.",
                 "k3sops check --weekly"),
        ],
        related=["rbac-binding-subject-missing"]),
    Runbook(
        id="rbac-binding-subject-missing", title="Binding to a ServiceAccount that does not exist",
        summary="A binding grants a role to a ServiceAccount that is gone: harmless until a "
                "ServiceAccount of that name is created and silently inherits it.",
        severity_hint="info",
        steps=[
            step("Confirm the account is gone", "Maybe it lives in another namespace.",
                 "kubectl -n <namespace> get serviceaccount <sa>", "NotFound."),
            step("Remove the subject or the binding", "Left over from an uninstall.",
                 "kubectl -n <namespace> delete rolebinding <name>",
                 "No binding names the missing account.", "k3sops check --weekly"),
        ],
        related=["rbac-binding-role-missing"]),
]
