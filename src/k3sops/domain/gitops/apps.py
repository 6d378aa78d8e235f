"""Apps: image references, the versions and values git holds, the manifests charts/app renders."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from k3sops.domain.gitops.values import deep_merge, get_path, plain
from k3sops.errors import ConfigError


def split_image(image: str) -> tuple[str, str]:
    """``repo[:tag][@digest]`` -> (repository, version); version is the digest, else the tag.

    ``registry:5000/team/app:1.2`` -> (``registry:5000/team/app``, ``1.2``); no tag: ``latest``.
    """
    if "@" in image:
        repo, digest = image.split("@", 1)
        return split_image(repo)[0], digest
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1:]
    return image, "latest"


def join_image(repository: str, version: str) -> str:
    """The image reference for a repository and a version (tag or ``sha256:`` digest)."""
    sep = "@" if version.startswith("sha256:") else ":"
    return f"{repository}{sep}{version}"


class AppVersion(BaseModel):
    """What git says an app runs in one environment."""

    app: str
    repository: str | None
    version: str | None


def app_versions(values: Any) -> dict[str, AppVersion]:
    """Every app of a values document with its image repository and tag."""
    apps = get_path(values, ("apps",)) or {}
    out = {}
    for name, spec in apps.items() if isinstance(apps, Mapping) else []:
        image = spec.get("image") if isinstance(spec, Mapping) else None
        image = image if isinstance(image, Mapping) else {}
        repo, tag = image.get("repository"), image.get("tag")
        out[str(name)] = AppVersion(app=str(name), repository=None if repo is None else str(repo),
                                    version=None if tag is None else str(tag))
    return out


def app_values(base: Any, env_values: Any, app: str) -> dict[str, Any]:
    """An app's effective values: its base (``app:``) with the environment's ``apps.<app>``."""
    b = get_path(base, ("app",)) or {}
    e = get_path(env_values, ("apps", app)) or {}
    return deep_merge(b if isinstance(b, Mapping) else {}, e if isinstance(e, Mapping) else {})


# Manifests (what charts/app renders; the lab applies these with server-side apply)


def render_app(app: str, namespace: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Deployment and Service of an app from its effective values.

    Mirrors ``charts/app/templates`` (written by :func:`scaffold`) key for key, so that ArgoCD
    rendering the chart and k3sops applying these objects produce the same objects (a lab test
    compares them with ``helm template``): ``replicas`` 0 stays 0 (missing or null is 1), a
    ``sha256:`` version is a digest (``repo@sha256:...``), a missing, empty or zero ``port`` /
    ``service_port`` is 8080 / 80.

    Raises:
        ConfigError: ``image.repository`` or ``image.tag`` is missing, empty or not a string
            (Helm would render an unquoted ``20240101`` as ``2.0240101e+07``), or ``replicas``
            is not a whole number.
    """
    image = values.get("image") or {}
    repository, tag = image.get("repository"), image.get("tag")
    if not repository or tag in (None, ""):
        raise ConfigError(f"app {app}: image.repository and image.tag are needed",
                          hint=f"set apps.{app}.image in the environment's values file")
    if not isinstance(repository, str) or not isinstance(tag, str):
        raise ConfigError(f"app {app}: image.repository and image.tag must be strings "
                          f"(tag {tag!r} reads as a {type(tag).__name__})",
                          hint=f'quote the value in the values file, e.g. tag: "{tag}"')
    replicas = _replicas(app, values.get("replicas"))
    labels = {"app.kubernetes.io/name": app}
    port = int(values.get("port") or 8080)
    container: dict[str, Any] = {
        "name": app, "image": join_image(repository, tag),
        "ports": [{"containerPort": port, "name": "http"}]}
    if values.get("resources"):
        container["resources"] = plain(values["resources"])
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": namespace, "labels": dict(labels)},
        "spec": {"replicas": replicas,
                 "selector": {"matchLabels": dict(labels)},
                 "template": {"metadata": {"labels": dict(labels)},
                              "spec": {"containers": [container]}}}}
    service = {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": app, "namespace": namespace, "labels": dict(labels)},
        "spec": {"selector": dict(labels),
                 "ports": [{"name": "http", "port": int(values.get("service_port") or 80),
                            "targetPort": port}]}}
    return [deployment, service]


def _replicas(app: str, value: Any) -> int:
    """``replicas`` as the chart renders it: missing or null is 1; 0 stays 0."""
    if value is None:
        return 1
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    # Helm reads every number as a float and prints 3.0 as 3; a quoted "3" renders as 3 too.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    raise ConfigError(f"app {app}: replicas {value!r} is not a whole number",
                      hint=f"set apps.{app}.replicas to 0 or more in the values file")


def parse_app_spec(text: str) -> tuple[str, str, str]:
    """``NAME=IMAGE[:TAG]`` (as given to ``gitops init --app``) -> (name, repository, tag).

    Raises:
        ConfigError: not in that form, or the name is not a DNS-1123 label.
    """
    name, sep, image = text.partition("=")
    if not sep or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) or not image:
        raise ConfigError(f"--app {text!r} is not NAME=IMAGE:TAG",
                          hint="e.g. --app web=nginx:1.27 (NAME a DNS-1123 label)")
    repository, tag = split_image(image)
    return name, repository, tag
