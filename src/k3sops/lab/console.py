"""`k3sops lab console`: the web console against the lab, in one command.

A console needs a user the API server knows and the rights on ``k3sops.io`` its pages ask
for. The lab's admin is a client certificate, which cannot be typed into a login form, so
this creates a ServiceAccount ``console`` in namespace ``k3sops`` bound to a ClusterRole with
every console right (reading every page, acknowledging, approving, silences), requests an
8-hour token for it (TokenRequest) into a file only its owner may read — never printed — and
starts `k3sops serve` on the lab's platform file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from k3sops.errors import LabError
from k3sops.lab.build import installed_binaries
from k3sops.lab.layout import LabLayout
from k3sops.lab.shape import apply, kubectl

NAMESPACE = "k3sops"
ACCOUNT = "console"
ROLE = "k3sops-lab-console"
RIGHTS: list[dict[str, Any]] = [
    {"apiGroups": ["k3sops.io"],
     "resources": ["reports", "findings", "diagnoses", "alerts", "backups", "environments",
                   "capacity", "metrics", "remediations"], "verbs": ["get"]},
    {"apiGroups": ["k3sops.io"], "resources": ["acks", "approvals"], "verbs": ["create"]},
    {"apiGroups": ["k3sops.io"], "resources": ["silences"], "verbs": ["get", "create", "delete"]},
]
"""What the console's pages and forms ask a SubjectAccessReview for (README's table)."""
TOKEN_FILE = "console.token"  # noqa: S105  # a file name, not a secret


def objects() -> list[dict[str, Any]]:
    """The namespace, the ServiceAccount, its ClusterRole and the binding."""
    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": ACCOUNT, "namespace": NAMESPACE}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": ROLE}, "rules": RIGHTS},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": ROLE},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": NAMESPACE}]},
    ]


def console_token(layout: LabLayout, env: Mapping[str, str]) -> Path:
    """Create the console's account on the running lab; its new token's file (mode 0600)."""
    if not (layout.run_dir / "admin.kubeconfig").is_file():
        raise LabError("the lab is not up", hint="run `k3sops lab up` first")
    b = installed_binaries(layout, env)
    apply(layout, b, objects())
    token = kubectl(layout, b, "create", "token", ACCOUNT, "-n", NAMESPACE,
                    "--duration=8h").strip()
    path = layout.run_dir / TOKEN_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    tmp.replace(path)  # whole or not at all
    return path
