"""A new GitOps repository's files (``k3sops gitops init``): chart, values, ArgoCD Applications."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from k3sops.domain.gitops.layout import (
    BUILDS_FILE,
    CHART_PATH,
    DEVIATIONS_FILE,
    app_base_file,
    argocd_file,
    platform_values_file,
)

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
        # The chart refuses to render without a schema and a storage; retention is only
        # enforced by the compactor; k3sops queries without X-Scope-OrgID (one tenant).
        "loki": ("deploymentMode: SingleBinary\nloki:\n"
                 "  auth_enabled: false  # one tenant: queried without X-Scope-OrgID\n"
                 "  commonConfig:\n    replication_factor: 1\n"
                 "  storage:\n    type: filesystem  # on the single binary's volume (Longhorn)\n"
                 "  schemaConfig:\n    configs:\n"
                 '      - {from: "2024-04-01", store: tsdb, object_store: filesystem, '
                 "schema: v13,\n         index: {prefix: loki_index_, period: 24h}}\n"
                 "  compactor:\n    retention_enabled: true  # retention_period is enforced here\n"
                 "    delete_request_store: filesystem\n"
                 "  limits_config:\n"
                 f"    retention_period: {_size('loki_retention', env, envs)}\n"
                 "singleBinary:\n  replicas: 1\n"
                 "# SingleBinary: the simple-scalable targets run nothing\n"
                 "read:\n  replicas: 0\nwrite:\n  replicas: 0\nbackend:\n  replicas: 0\n"
                 "# the memcached caches request ~10Gi of memory by default: too big here\n"
                 "chunksCache:\n  enabled: false\nresultsCache:\n  enabled: false\n"),
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

# Mirrors render_app (apps.py) key for key; a test renders both and compares the objects. The
# app's values are its base (app:) merged with apps.<release>; a missing part is an empty map.
_MERGE = ("{{- $v := mergeOverwrite (deepCopy (.Values.app | default dict)) "
          "(index (.Values.apps | default dict) .Release.Name | default dict) -}}\n")
# The image must be two non-empty strings: Helm reads an unquoted 20240101 as a float and would
# render nginx:2.0240101e+07 (render_app refuses the same values). A sha256: version is a digest.
_IMAGE = """{{- $image := $v.image | default dict -}}
{{- $at := printf "apps.%s.image" .Release.Name -}}
{{- $repository := required (printf "%s.repository is required" $at) $image.repository -}}
{{- $tag := required (printf "%s.tag is required" $at) $image.tag -}}
{{- if not (and (kindIs "string" $repository) (kindIs "string" $tag)) -}}
{{- fail (printf "%s: repository and tag must be strings (quote the tag)" $at) -}}
{{- end -}}
"""
_CHART_DEPLOYMENT = _MERGE + _IMAGE + """apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  namespace: {{ .Release.Namespace }}
  labels:
    app.kubernetes.io/name: {{ .Release.Name }}
spec:
  {{- /* 0 is a valid count (scaled down): only a missing or null value means 1 */}}
  replicas: {{ if kindIs "invalid" $v.replicas }}1{{ else }}{{ $v.replicas }}{{ end }}
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
          image: "{{ $repository }}{{ if hasPrefix "sha256:" $tag }}@{{ else }}:{{ end }}{{ $tag }}"
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
  namespace: {{ .Release.Namespace }}
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
