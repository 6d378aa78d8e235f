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

Modules: ``layout`` (file and key paths), ``values`` (round-trip edits, flatten, merge), ``apps``
(images, versions, rendered manifests), ``diff`` (environment diffs and DEVIATIONS.yaml),
``builds`` (builds.yaml), ``scaffold`` (``gitops init``'s files). Callers import from here.
"""

from k3sops.domain.gitops.apps import (
    AppVersion,
    app_values,
    app_versions,
    join_image,
    parse_app_spec,
    render_app,
    split_image,
)
from k3sops.domain.gitops.builds import Build, parse_builds
from k3sops.domain.gitops.diff import Deviation, ValueDiff, diff_values, parse_deviations
from k3sops.domain.gitops.layout import (
    BUILDS_FILE,
    CHART_PATH,
    DEVIATIONS_FILE,
    MAX_BUILDS,
    Path_,
    app_base_file,
    approvals_file,
    argocd_file,
    platform_values_file,
    tag_path,
)
from k3sops.domain.gitops.scaffold import PLATFORM_STACK, scaffold
from k3sops.domain.gitops.values import (
    append_to_list,
    changed_lines,
    deep_merge,
    flatten,
    get_path,
    load,
    set_values,
)

__all__ = [
    "BUILDS_FILE",
    "CHART_PATH",
    "DEVIATIONS_FILE",
    "MAX_BUILDS",
    "PLATFORM_STACK",
    "AppVersion",
    "Build",
    "Deviation",
    "Path_",
    "ValueDiff",
    "app_base_file",
    "app_values",
    "app_versions",
    "append_to_list",
    "approvals_file",
    "argocd_file",
    "changed_lines",
    "deep_merge",
    "diff_values",
    "flatten",
    "get_path",
    "join_image",
    "load",
    "parse_app_spec",
    "parse_builds",
    "parse_deviations",
    "platform_values_file",
    "render_app",
    "scaffold",
    "set_values",
    "split_image",
    "tag_path",
]
