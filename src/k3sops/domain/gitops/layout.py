"""Where things are in the GitOps repository: file paths and key paths."""

from __future__ import annotations

DEVIATIONS_FILE = "DEVIATIONS.yaml"
BUILDS_FILE = "builds.yaml"
CHART_PATH = "charts/app"
MAX_BUILDS = 20
"""Builds kept per app in builds.yaml (older ones are in git history)."""

Path_ = tuple[str, ...]


def app_base_file(app: str) -> str:
    """Path of an app's base values inside the repository."""
    return f"apps/{app}/base.yaml"


def platform_values_file(component: str, env: str) -> str:
    """Path of a platform component's values for ``env`` inside the repository."""
    return f"platform/{component}/values-{env}.yaml"


def approvals_file(env: str) -> str:
    """Path of the approvals for promotions into ``env``."""
    return f"approvals/{env}.yaml"


def argocd_file(env: str) -> str:
    """Path of the ArgoCD Applications of ``env``."""
    return f"argocd/{env}/applications.yaml"


def tag_path(app: str) -> Path_:
    """Key path of an app's version (its image tag) in a values file."""
    return ("apps", app, "image", "tag")
