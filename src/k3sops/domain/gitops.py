"""The GitOps repository's content, as pure functions of text: scaffold, values, diffs, manifests.

Repository layout written by ``k3sops gitops init`` (``values_path`` is configurable):

    README.md                         what is where, and the commands that change it
    DEVIATIONS.yaml                   intended differences between environments
    builds.yaml                       builds published by CI (``k3sops gitops record-build``)
    charts/app/                       one generic Helm chart: the consistent base of every app
    apps/<app>/base.yaml              the app's base values (image repository, port, resources)
    environments/<env>/values.yaml    per environment: namespace, apps.<app>.image.tag, replicas
    platform/<component>/values-<env>.yaml   the platform stack's per-environment values
    argocd/<env>/applications.yaml    ArgoCD Applications (apps and platform stack) of <env>
    approvals/<env>.yaml              approvals (written by ``k3sops env approve``)

An app's version is ``apps.<app>.image.tag`` in the environment's values file. Values files are
edited with ruamel.yaml round-trip (:func:`set_values`): comments, key order, quoting and
indentation stay as they are, and the result is checked to differ in exactly the values asked.
"""

from __future__ import annotations

import difflib
import fnmatch
import io
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, SingleQuotedScalarString
from ruamel.yaml.util import load_yaml_guess_indent

from k3sops.errors import ConfigError

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


# --------------------------------------------------------------------------------------------
# Round-trip YAML


def _mapping_indent(text: str) -> int:
    """How far a nested mapping is indented in ``text`` (2 when it has none)."""
    prev: str | None = None
    for line in text.splitlines():
        body = line.split(" #", 1)[0].rstrip()
        if not body.strip() or body.lstrip().startswith("#"):
            continue
        if prev is not None and prev.endswith(":") and not body.lstrip().startswith("-"):
            step = (len(body) - len(body.lstrip())) - (len(prev) - len(prev.lstrip()))
            if step > 0:
                return step
        prev = body
    return 2


def _rt(text: str) -> tuple[YAML, Any]:
    """A round-trip loader/dumper set up like ``text`` is written, and its data."""
    try:
        _, seq_indent, block_seq_indent = load_yaml_guess_indent(text)
        y = YAML(typ="rt")
        y.preserve_quotes = True
        y.width = 4096  # never re-wrap long lines
        mapping = _mapping_indent(text)
        if block_seq_indent is None:  # no block sequence yet: "- " under its key
            y.indent(mapping=mapping, sequence=mapping, offset=0)
        else:
            y.indent(mapping=mapping, sequence=seq_indent, offset=block_seq_indent)
        return y, y.load(text)
    except YAMLError as e:
        raise ConfigError(f"values file is not valid YAML: {e}".splitlines()[0],
                          hint="fix the file in the GitOps repository") from e


def load(text: str) -> Any:
    """Parse YAML text into plain Python data (None for an empty document)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"not valid YAML: {e}".splitlines()[0],
                          hint="fix the file in the GitOps repository") from e


def _plain_is_str(value: str) -> bool:
    """Whether ``value`` written without quotes reads back as the same string."""
    try:
        return yaml.safe_load(value) == value and bool(value.strip())
    except yaml.YAMLError:
        return False


def _styled(old: Any, value: Any) -> Any:
    """``value`` in the quoting style of the value it replaces (quoted when it must be)."""
    if not isinstance(value, str):
        return value
    if isinstance(old, SingleQuotedScalarString):
        return SingleQuotedScalarString(value)
    if isinstance(old, DoubleQuotedScalarString) or not _plain_is_str(value):
        # "1.28" unquoted would read back as a number
        return DoubleQuotedScalarString(value)
    return value


def get_path(data: Any, path: Path_) -> Any:
    """The value at ``path`` in nested mappings, or None."""
    node = data
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node


def set_values(text: str, updates: Mapping[Path_, Any], where: str = "values file") -> str:
    """Set values at key paths in YAML ``text``, keeping everything else as written.

    Missing mappings on the way are created. The result is verified: parsed, it differs from
    the original in exactly the updated paths, and no line changed other than theirs.

    Args:
        text: the file's content.
        updates: key path -> new value (scalars, or plain lists/mappings).
        where: the file's name, for messages.

    Raises:
        ConfigError: the text is not YAML, a path crosses a non-mapping, or the round trip
            would change anything else (the file is then left for a person to edit).
    """
    y, data = _rt(text)
    if data is None:
        data = CommentedMap()
    if not isinstance(data, CommentedMap):
        raise ConfigError(f"{where}: the top level is not a mapping",
                          hint="a values file is a mapping of keys to values")
    for path, value in updates.items():
        node = data
        for i, key in enumerate(path[:-1]):
            child = node.get(key)
            if child is None:
                child = CommentedMap()
                node[key] = child
            elif not isinstance(child, CommentedMap):
                raise ConfigError(f"{where}: {'.'.join(path[:i + 1])} is not a mapping, cannot "
                                  f"set {'.'.join(path)}", hint="fix the file's structure")
            node = child
        node[path[-1]] = _styled(node.get(path[-1]), value)
    out = io.StringIO()
    y.dump(data, out)
    new = out.getvalue()
    _verify(text, new, updates, where)
    return new


def _verify(old: str, new: str, updates: Mapping[Path_, Any], where: str) -> None:
    before, after = flatten(load(old) or {}), flatten(load(new) or {})
    touched = set(updates)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    stray = {k for k in changed if not any(k[:len(t)] == t for t in touched)}
    if stray:
        raise ConfigError(f"{where}: editing it would also change "
                          f"{', '.join('.'.join(k) for k in sorted(stray))}; nothing written",
                          hint="edit the file by hand")
    removed = [line for line in difflib.ndiff(old.splitlines(), new.splitlines())
               if line.startswith("- ")]
    if len(removed) > len(updates):
        raise ConfigError(f"{where}: the YAML round trip would reformat {len(removed)} lines "
                          f"for {len(updates)} value(s); nothing written",
                          hint="edit the file by hand, or normalise its formatting once")


def append_to_list(text: str, path: Path_, item: Mapping[str, Any], keep: int | None = None,
                   where: str = "file") -> str:
    """Append ``item`` to the list at ``path`` (created when missing), round trip.

    ``keep`` drops the oldest entries beyond that many.
    """
    y, data = _rt(text)
    if data is None:
        data = CommentedMap()
    node = data
    for key in path[:-1]:
        if key not in node or node[key] is None:
            node[key] = CommentedMap()
        node = node[key]
    seq = node.get(path[-1])
    if seq is None:
        seq = CommentedSeq()
        node[path[-1]] = seq
    if not isinstance(seq, CommentedSeq):
        raise ConfigError(f"{where}: {'.'.join(path)} is not a list", hint="fix the file")
    entry = CommentedMap()
    for k, v in item.items():
        entry[k] = _styled(None, v)
    seq.append(entry)
    if keep is not None:
        while len(seq) > keep:
            del seq[0]
    out = io.StringIO()
    y.dump(data, out)
    return out.getvalue()


def changed_lines(old: str, new: str) -> list[str]:
    """The unified diff of two texts (without headers), for reports."""
    return [line for line in difflib.unified_diff(old.splitlines(), new.splitlines(),
                                                   lineterm="", n=0)
            if not line.startswith(("---", "+++"))]


def flatten(data: Any, prefix: Path_ = ()) -> dict[Path_, Any]:
    """Nested mappings as key path -> leaf (lists are leaves)."""
    if isinstance(data, Mapping) and data:
        out: dict[Path_, Any] = {}
        for k, v in data.items():
            out.update(flatten(v, (*prefix, str(k))))
        return out
    return {prefix: _plain(data)} if prefix else {}


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, str):
        return str(value)
    return value


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged onto ``base`` (mappings merged key by key, as Helm merges values)."""
    out = {k: _plain(v) for k, v in base.items()}
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = _plain(v)
    return out


# --------------------------------------------------------------------------------------------
# Images and versions


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


# --------------------------------------------------------------------------------------------
# Deviations and diffs


@dataclass(frozen=True)
class Deviation:
    """An intended difference: values under ``path`` (``*`` matches one key) may differ."""

    path: Path_
    reason: str
    environments: tuple[str, ...] = ()
    """Environments the deviation is about; empty: any."""

    def covers(self, path: Path_, env_a: str, env_b: str) -> bool:
        """Whether a difference at ``path`` between the two environments is documented."""
        if self.environments and not {env_a, env_b} <= set(self.environments):
            return False
        return len(path) >= len(self.path) and all(
            fnmatch.fnmatchcase(seg, pat) for seg, pat in zip(path, self.path, strict=False))


def parse_deviations(text: str) -> list[Deviation]:
    """Read DEVIATIONS.yaml: ``deviations: [{path: a.*.b, reason: ..., environments: [...]}]``.

    Raises:
        ConfigError: the file is not in that shape (names the entry).
    """
    data = load(text) or {}
    items = data.get("deviations") if isinstance(data, Mapping) else None
    if items is None:
        return []
    if not isinstance(items, list):
        raise ConfigError(f"{DEVIATIONS_FILE}: deviations is not a list",
                          hint="deviations: [{path: apps.*.replicas, reason: why}]")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or not item.get("path") or not item.get("reason"):
            raise ConfigError(f"{DEVIATIONS_FILE}: deviations[{i}] needs path and reason",
                              hint="e.g. {path: apps.*.replicas, reason: production has more}")
        envs = item.get("environments") or []
        out.append(Deviation(path=tuple(str(item["path"]).split(".")), reason=str(item["reason"]),
                             environments=tuple(str(e) for e in envs)))
    return out


class ValueDiff(BaseModel):
    """One key whose value differs between two environments."""

    path: str
    left: Any
    right: Any
    documented: bool
    reason: str | None = None


_MISSING = object()


def diff_values(left: Mapping[Path_, Any], right: Mapping[Path_, Any],
                deviations: Sequence[Deviation], env_left: str, env_right: str,
                ) -> list[ValueDiff]:
    """Every key path whose value differs (or exists on one side only), sorted by path."""
    out = []
    for path in sorted(left.keys() | right.keys()):
        a, b = left.get(path, _MISSING), right.get(path, _MISSING)
        if a == b:
            continue
        dev = next((d for d in deviations if d.covers(path, env_left, env_right)), None)
        out.append(ValueDiff(path=".".join(path), left=None if a is _MISSING else a,
                             right=None if b is _MISSING else b, documented=dev is not None,
                             reason=dev.reason if dev else None))
    return out


# --------------------------------------------------------------------------------------------
# Manifests (what charts/app renders; the lab applies these with server-side apply)


def render_app(app: str, namespace: str, values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Deployment and Service of an app from its effective values.

    Mirrors ``charts/app/templates`` (written by :func:`scaffold`) key for key, so that ArgoCD
    rendering the chart and k3sops applying these objects produce the same Deployment.

    Raises:
        ConfigError: the values lack ``image.repository`` or ``image.tag``.
    """
    image = values.get("image") or {}
    if not image.get("repository") or image.get("tag") in (None, ""):
        raise ConfigError(f"app {app}: image.repository and image.tag are needed",
                          hint=f"set apps.{app}.image in the environment's values file")
    labels = {"app.kubernetes.io/name": app}
    port = int(values.get("port") or 8080)
    container: dict[str, Any] = {
        "name": app, "image": join_image(str(image["repository"]), str(image["tag"])),
        "ports": [{"containerPort": port, "name": "http"}]}
    if values.get("resources"):
        container["resources"] = _plain(values["resources"])
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": namespace, "labels": dict(labels)},
        "spec": {"replicas": int(values.get("replicas", 1)),
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


# --------------------------------------------------------------------------------------------
# Builds (CI hook)


class Build(BaseModel):
    """A build CI published: an app's image at a version."""

    app: str
    version: str
    repository: str | None = None
    at: str | None = None
    source: str | None = None
    """Source commit or CI run the build came from."""


def parse_builds(text: str) -> dict[str, list[Build]]:
    """builds.yaml: ``builds: {app: [{version, repository, at, source}, ...]}``, oldest first."""
    data = load(text) or {}
    builds = data.get("builds") if isinstance(data, Mapping) else None
    out: dict[str, list[Build]] = {}
    for app, items in (builds or {}).items() if isinstance(builds, Mapping) else []:
        out[str(app)] = [Build(app=str(app), version=str(b["version"]),
                               repository=b.get("repository"),
                               at=None if b.get("at") is None else str(b.get("at")),
                               source=b.get("source"))
                         for b in items or [] if isinstance(b, Mapping) and b.get("version")]
    return out


# --------------------------------------------------------------------------------------------
# Scaffold

PLATFORM_STACK: dict[str, dict[str, Any]] = {
    "kube-prometheus-stack": {
        "namespace": "monitoring", "chart": "kube-prometheus-stack", "version": "77.0.0",
        "repo": "https://prometheus-community.github.io/helm-charts"},
    "loki": {"namespace": "monitoring", "chart": "loki", "version": "6.36.0",
             "repo": "https://grafana.github.io/helm-charts"},
    "longhorn": {"namespace": "longhorn-system", "chart": "longhorn", "version": "1.9.1",
                 "repo": "https://charts.longhorn.io"},
    "metallb": {"namespace": "metallb-system", "chart": "metallb", "version": "0.15.2",
                "repo": "https://metallb.github.io/metallb"},
    "ingress": {"namespace": "kube-system", "chart": "traefik", "version": "37.0.0",
                "repo": "https://traefik.github.io/charts"},
}
"""The platform's own stack as ArgoCD Applications of upstream Helm charts."""

# Per-environment sizes: (development, staging, production); see DEVIATIONS.yaml.
_SIZES = {"replicas": (1, 2, 3), "retention": ("3d", "7d", "30d"), "storage": ("10Gi", "20Gi",
          "100Gi"), "longhorn_replicas": (1, 2, 3), "loki_retention": ("72h", "168h", "720h")}


def _size(key: str, env: str, envs: Sequence[str]) -> Any:
    order = ("development", "staging", "production")
    idx = order.index(env) if env in order else min(len(envs) - 1, 2)
    return _SIZES[key][idx]


def _platform_values(component: str, env: str, envs: Sequence[str]) -> str:
    head = (f"# {component} values for {env} (ArgoCD Application {component}-{env}).\n"
            f"# Intended differences from other environments are listed in {DEVIATIONS_FILE}.\n")
    body = {
        "kube-prometheus-stack": (
            "prometheus:\n  prometheusSpec:\n"
            f"    retention: {_size('retention', env, envs)}  # how long metrics are kept\n"
            "    storageSpec:\n      volumeClaimTemplate:\n        spec:\n"
            "          storageClassName: longhorn\n"
            f"          resources: {{requests: {{storage: {_size('storage', env, envs)}}}}}\n"
            "alertmanager:\n  enabled: true\ngrafana:\n  enabled: true\n"
            "  sidecar:\n    dashboards: {enabled: true, label: grafana_dashboard}\n"),
        "loki": ("deploymentMode: SingleBinary\nloki:\n  limits_config:\n"
                 f"    retention_period: {_size('loki_retention', env, envs)}\n"
                 "singleBinary:\n  replicas: 1\n"),
        "longhorn": ("defaultSettings:\n"
                     f"  defaultReplicaCount: {_size('longhorn_replicas', env, envs)}"
                     "  # copies of each volume\n"
                     "persistence:\n  defaultClass: true\n"),
        "metallb": "controller:\n  enabled: true\nspeaker:\n  enabled: true\n",
        "ingress": ("deployment:\n"
                    f"  replicas: {_size('replicas', env, envs)}\n"
                    "service:\n  type: LoadBalancer  # an address from MetalLB's pool\n"),
    }[component]
    return head + body


def _env_values(env: str, namespace: str, platform: str, apps: Sequence[tuple[str, str, str]],
                envs: Sequence[str]) -> str:
    lines = [
        f"# Values of the {env} environment of platform {platform}.",
        "# An app's version is apps.<app>.image.tag: `k3sops env promote` and `k3sops env sync`",
        "# change that one line (comments and layout here are kept). Intended differences",
        f"# from the other environments are written down in {DEVIATIONS_FILE}.",
        f"namespace: {namespace}",
        "apps:" if apps else "apps: {}",
    ]
    for name, _repo, tag in apps:
        lines += [f"  {name}:",
                  "    image:",
                  f'      tag: "{tag}"  # the version running here',
                  f"    replicas: {_size('replicas', env, envs)}"]
    return "\n".join(lines) + "\n"


def _app_base(name: str, repository: str) -> str:
    return (f"# Base values of {name}, the same in every environment (overridden per environment\n"
            "# under apps.<app> in environments/<env>/values.yaml).\n"
            "app:\n"
            "  image:\n"
            f"    repository: {repository}\n"
            "  port: 8080          # containerPort, named http\n"
            "  service_port: 80\n"
            "  resources:\n"
            "    requests: {cpu: 50m, memory: 64Mi}\n"
            "    limits: {memory: 256Mi}\n")


_CHART_YAML = """apiVersion: v2
name: app
description: The consistent base of every application (Deployment and Service).
type: application
version: 1.0.0
"""

# Mirrors render_app: the app's values are its base (app:) merged with apps.<release>.
_MERGE = ("{{- $v := mergeOverwrite (deepCopy .Values.app) "
          "(index .Values.apps .Release.Name) -}}\n")
_CHART_DEPLOYMENT = _MERGE + """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  labels:
    app.kubernetes.io/name: {{ .Release.Name }}
spec:
  replicas: {{ $v.replicas | default 1 }}
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ .Release.Name }}
    spec:
      containers:
        - name: {{ .Release.Name }}
          image: "{{ $v.image.repository }}:{{ $v.image.tag }}"
          ports:
            - containerPort: {{ $v.port | default 8080 }}
              name: http
          {{- with $v.resources }}
          resources: {{- toYaml . | nindent 12 }}
          {{- end }}
"""

_CHART_SERVICE = _MERGE + """apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}
  labels:
    app.kubernetes.io/name: {{ .Release.Name }}
spec:
  selector:
    app.kubernetes.io/name: {{ .Release.Name }}
  ports:
    - name: http
      port: {{ $v.service_port | default 80 }}
      targetPort: {{ $v.port | default 8080 }}
"""


def _applications(env: str, namespace: str, apps: Iterable[str], repo: str, branch: str,
                  values_file: str, argocd_namespace: str, auto: bool) -> str:
    docs: list[dict[str, Any]] = []
    sync: dict[str, Any] = ({"automated": {"prune": True, "selfHeal": True}} if auto else {})
    for app in apps:
        docs.append({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": f"{app}-{env}", "namespace": argocd_namespace,
                         "labels": {"k3sops.io/app": app, "k3sops.io/environment": env}},
            "spec": {"project": "default",
                     "source": {"repoURL": repo, "targetRevision": branch, "path": CHART_PATH,
                                "helm": {"releaseName": app, "valueFiles": [
                                    f"../../{app_base_file(app)}", f"../../{values_file}"]}},
                     "destination": {"server": "https://kubernetes.default.svc",
                                     "namespace": namespace},
                     "syncPolicy": {**sync, "syncOptions": ["ServerSideApply=true"]}}})
    for comp, spec in PLATFORM_STACK.items():
        docs.append({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": f"{comp}-{env}", "namespace": argocd_namespace,
                         "labels": {"k3sops.io/platform": comp, "k3sops.io/environment": env}},
            "spec": {"project": "default",
                     "sources": [
                         {"repoURL": spec["repo"], "chart": spec["chart"],
                          "targetRevision": spec["version"],
                          "helm": {"releaseName": comp, "valueFiles": [
                              f"$values/{platform_values_file(comp, env)}"]}},
                         {"repoURL": repo, "targetRevision": branch, "ref": "values"}],
                     "destination": {"server": "https://kubernetes.default.svc",
                                     "namespace": spec["namespace"]},
                     "syncPolicy": {"syncOptions": ["CreateNamespace=true",
                                                    "ServerSideApply=true"]}}})
    head = (f"# ArgoCD Applications of {env}: one per app (charts/app with the app's base and\n"
            f"# {values_file}) and one per platform component. Written by `k3sops gitops init`.\n")
    return head + yaml.safe_dump_all(docs, sort_keys=False)


def _deviations(envs: Sequence[str]) -> str:
    return (
        "# Intended differences between environments. `k3sops env diff A B` marks a difference\n"
        "# documented when its key path starts with a path listed here (* matches one key);\n"
        "# `environments` limits an entry to those environments. Everything else that differs\n"
        "# is reported as undocumented: fix it, or write down why here.\n"
        "deviations:\n"
        "  - path: namespace\n"
        "    reason: each environment has its own namespace\n"
        "  - path: apps.*.image.tag\n"
        "    reason: versions move through the environments by promotion (env promote)\n"
        "  - path: apps.*.replicas\n"
        "    reason: production runs more replicas for availability; development one to save room\n"
        "  - path: platform.kube-prometheus-stack.prometheus.prometheusSpec\n"
        "    reason: metric retention and storage grow with the environment's importance\n"
        "  - path: platform.loki.loki.limits_config.retention_period\n"
        "    reason: log retention grows with the environment's importance\n"
        "  - path: platform.longhorn.defaultSettings.defaultReplicaCount\n"
        "    reason: production keeps three copies of each volume\n"
        "  - path: platform.ingress.deployment.replicas\n"
        "    reason: the ingress controller is sized like the apps\n"
        f"# environments here: {', '.join(envs)}\n")


def _readme(platform: str, envs: Sequence[str], values_path: str) -> str:
    return (
        f"# GitOps repository of {platform}\n\n"
        "ArgoCD deploys what is here. Environments: " + ", ".join(envs) + ".\n\n"
        f"- `{values_path}`: per environment, the apps' versions (`apps.<app>.image.tag`),\n"
        "  replicas and overrides; `apps/<app>/base.yaml`: what is the same everywhere.\n"
        "- `charts/app`: the one chart every app is rendered with.\n"
        "- `platform/<component>/values-<env>.yaml`: kube-prometheus-stack, Loki, Longhorn,\n"
        "  MetalLB and the ingress controller per environment.\n"
        "- `argocd/<env>/applications.yaml`: the ArgoCD Applications (apply once per cluster).\n"
        "- `DEVIATIONS.yaml`: intended differences between environments.\n"
        "- `builds.yaml`: builds published by CI (`k3sops gitops record-build APP VERSION`).\n"
        "- `approvals/<env>.yaml`: approvals (`k3sops env approve APP --to production`).\n\n"
        "Change versions with `k3sops env promote`, `env rollback` and `env sync`, not by hand:\n"
        "they check the gates and write structured commits (trailers Promoted-From,\n"
        "Promoted-To, Version, Approved-By).\n")


def scaffold(platform: str, repo: str, branch: str, values_path: str,
             environments: Mapping[str, tuple[str, bool]],
             apps: Sequence[tuple[str, str, str]], argocd_namespace: str = "argocd",
             ) -> dict[str, str]:
    """All files of a new GitOps repository, path -> content.

    Args:
        platform: platform name (for headers).
        repo: the repository URL ArgoCD pulls from.
        branch: the branch ArgoCD tracks.
        values_path: values file path with ``{env}``.
        environments: env -> (namespace, deploys automatically), in promotion order.
        apps: (name, image repository, initial tag) per application.
        argocd_namespace: namespace of ArgoCD's Application objects.
    """
    envs = list(environments)
    files: dict[str, str] = {
        "README.md": _readme(platform, envs, values_path),
        DEVIATIONS_FILE: _deviations(envs),
        BUILDS_FILE: ("# Builds published by CI, oldest first per app: "
                      "`k3sops gitops record-build APP VERSION`.\n"
                      "# `k3sops env sync --env development` deploys the newest one.\n"
                      "builds: {}\n"),
        f"{CHART_PATH}/Chart.yaml": _CHART_YAML,
        f"{CHART_PATH}/values.yaml": "app: {}\napps: {}\n",
        f"{CHART_PATH}/templates/deployment.yaml": _CHART_DEPLOYMENT,
        f"{CHART_PATH}/templates/service.yaml": _CHART_SERVICE,
    }
    for name, repository, _tag in apps:
        files[app_base_file(name)] = _app_base(name, repository)
    for env, (namespace, auto) in environments.items():
        vf = values_path.format(env=env)
        files[vf] = _env_values(env, namespace, platform, apps, envs)
        files[argocd_file(env)] = _applications(env, namespace, [a[0] for a in apps], repo,
                                                branch, vf, argocd_namespace, auto)
        for comp in PLATFORM_STACK:
            files[platform_values_file(comp, env)] = _platform_values(comp, env, envs)
    return files


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
