"""Every chart `k3sops gitops init` writes, through the real Helm (built by `k3sops lab build`).

The app chart (charts/app) passes `helm lint --strict` and `helm template` with each
environment's values; what it renders passes a server-side dry-run on the lab's API server, and
is the same set of objects as the Python renderer `env promote/sync --apply` uses
(``services.env.deploy.render_env``), also for edge values (0 replicas, digests, missing or
unquoted tags: where Helm fails, the renderer refuses too). The platform stack's Applications
pass a dry-run against the lab's ArgoCD CRDs; the upstream charts they name (kube-prometheus-
stack, Loki, Longhorn, MetalLB, traefik) cannot be downloaded here, so their values files are
checked to exist and be YAML mappings, not rendered.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kit.helm import helm_path

from conftest import Lab
from k3sops.adapters import git
from k3sops.config import parse_platform
from k3sops.domain import gitops as g
from k3sops.errors import ConfigError
from k3sops.lab.build import find_go_root, module_version
from k3sops.services import gitops as svc
from k3sops.services.context import Settings
from k3sops.services.env.deploy import render_env

pytestmark = pytest.mark.lab

# Names no lab object has: a dry-run then shows "created", and never patches a lab Deployment.
APPS = ["helmchk-web=example/web:1.27", "helmchk-api=registry.example/acme/api:2.0.1"]
APP_NAMES = [a.split("=")[0] for a in APPS]

Key = tuple[str, str, str, str]


@dataclass(frozen=True)
class Repo:
    """A scaffolded GitOps repository: its work tree, context and environments' namespaces."""

    tree: Path
    ctx: svc.GitOpsContext
    namespaces: dict[str, str]
    helm: Path
    helm_env: dict[str, str]

    def helm_run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the lab's helm in the tree (its caches under the test's tmp, not $HOME)."""
        proc = subprocess.run([str(self.helm), *args], cwd=self.tree, env=self.helm_env,
                              capture_output=True, text=True, timeout=60, check=False)
        if check:
            assert proc.returncode == 0, f"helm {' '.join(args)}:\n{proc.stdout}{proc.stderr}"
        return proc

    def template(self, app: str, namespace: str, *values: str,
                 check: bool = True) -> subprocess.CompletedProcess[str]:
        """``helm template APP charts/app -n NS -f ...`` as ArgoCD renders the Application."""
        files = [arg for v in values for arg in ("-f", v)]
        return self.helm_run("template", app, g.CHART_PATH, "-n", namespace, *files,
                             check=check)


@pytest.fixture(scope="module")
def repo(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    """`k3sops gitops init` (the CLI) with the lab's environments, pushed to a bare remote."""
    root = tmp_path_factory.mktemp("helm-charts")
    remote = root / "remote.git"
    git.init_remote(remote, "main")
    doc = yaml.safe_load(lab.layout.platform_file.read_text())
    doc["gitops"] = {"repo": str(remote), "branch": "main", "deploy": "none"}
    platform = root / "platform.yaml"
    platform.write_text(yaml.safe_dump(doc, sort_keys=False))
    args = [a for spec in APPS for a in ("--app", spec)]
    proc = lab.k3sops("--config", str(platform), "-o", "json", "gitops", "init",
                      str(root / "tree"), *args, "--push", str(remote))
    assert proc.returncode == 0, proc.stderr
    settings = Settings(kubeconfig=None, context=None,
                        platform=parse_platform(platform.read_text()))
    ctx = svc.open_context(settings, {}, root, root / "state", user="tester")
    namespaces = {env: ctx.namespace(env) for env in ctx.order}
    helm_env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root),
                **{f"HELM_{k}_HOME": str(root / "helm" / k.lower())
                   for k in ("CACHE", "CONFIG", "DATA")}}
    yield Repo(tree=root / "tree", ctx=ctx, namespaces=namespaces,
               helm=helm_path(lab.binaries), helm_env=helm_env)


def _objects(docs: list[Any]) -> dict[Key, Any]:
    """Objects by (apiVersion, kind, namespace, name), as plain JSON data."""
    out = {}
    for doc in docs:
        if doc:
            meta = doc["metadata"]
            key = (doc["apiVersion"], doc["kind"], meta.get("namespace", ""), meta["name"])
            assert key not in out, f"{key} rendered twice"
            out[key] = json.loads(json.dumps(doc))
    return out


def _rendered(proc: subprocess.CompletedProcess[str]) -> dict[Key, Any]:
    return _objects(list(yaml.safe_load_all(proc.stdout)))


def test_lab_helm_is_the_pinned_version(repo: Repo) -> None:
    pinned = module_version(find_go_root(os.environ) / "helm" / "go.mod", "helm.sh/helm/v4")
    assert repo.helm_run("version", "--template", "{{.Version}}").stdout == pinned


def test_app_chart_lints_renders_and_passes_a_server_dry_run(lab: Lab, repo: Repo) -> None:
    """Lint (alone and per environment), render per app and environment, dry-run on the server."""
    assert "0 chart(s) failed" in repo.helm_run("lint", "--strict", g.CHART_PATH).stdout
    for env, ns in repo.namespaces.items():
        values = repo.ctx.gitops.values_file(env)
        docs: list[str] = []
        for app in APP_NAMES:
            base = g.app_base_file(app)
            repo.helm_run("lint", "--strict", g.CHART_PATH, "-f", base, "-f", values)
            proc = repo.template(app, ns, base, values)
            assert set(_rendered(proc)) == {("apps/v1", "Deployment", ns, app),
                                            ("v1", "Service", ns, app)}
            docs.append(proc.stdout)
        dry = lab.kubectl("apply", "--dry-run=server", "-f", "-", input="\n---\n".join(docs),
                          check=False)
        assert dry.returncode == 0, dry.stderr
        created = {line.split()[0] for line in dry.stdout.splitlines()
                   if line.endswith("created (server dry run)")}
        assert created == {f"{kind}/{app}" for app in APP_NAMES
                           for kind in ("deployment.apps", "service")}, dry.stdout


def test_platform_stack_applications_pass_a_server_dry_run(lab: Lab, repo: Repo) -> None:
    """Each environment's ArgoCD Applications against the lab's CRDs; their values files exist."""
    for env in repo.namespaces:
        text = (repo.tree / g.argocd_file(env)).read_text()
        dry = lab.kubectl("apply", "--dry-run=server", "-f", "-", input=text, check=False)
        assert dry.returncode == 0, dry.stderr
        apps = [d for d in yaml.safe_load_all(text) if d]
        assert dry.stdout.count("created (server dry run)") == len(apps), dry.stdout
        platform = [a for a in apps if "sources" in a["spec"]]
        assert {a["metadata"]["labels"]["k3sops.io/platform"] for a in platform} == \
            set(g.PLATFORM_STACK)
        for app in platform:
            chart_src, values_src = app["spec"]["sources"]
            assert values_src["ref"] == "values"
            for vf in chart_src["helm"]["valueFiles"]:
                values = yaml.safe_load((repo.tree / vf.removeprefix("$values/")).read_text())
                assert isinstance(values, dict) and values, vf


def test_python_renderer_equals_helm_template(repo: Repo) -> None:
    """render_env (what `env ... --apply` applies) against the chart, in every environment."""
    with svc.workspace(repo.ctx) as clone:
        for env, ns in repo.namespaces.items():
            python = _objects(render_env(repo.ctx, clone, env, APP_NAMES))
            helm: dict[Key, Any] = {}
            for app in APP_NAMES:
                helm |= _rendered(repo.template(app, ns, g.app_base_file(app),
                                                repo.ctx.gitops.values_file(env)))
            assert python == helm
            assert len(helm) == 2 * len(APP_NAMES)


BASE = """app:
  image: {repository: example/web}
  replicas: 2
  port: 8080
  service_port: 80
  resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 256Mi}}
"""
DIGEST = "sha256:" + "ab" * 32

# Values of apps.web in an environment (YAML), and whether Helm renders them (else both refuse).
EDGE_CASES = {
    "scaled to zero": ('image: {tag: "1.0"}\nreplicas: 0', True),
    "digest": (f'image: {{tag: "{DIGEST}"}}', True),
    "null replicas": ('image: {tag: "1.0"}\nreplicas: null', True),
    "quoted replicas": ('image: {tag: "1.0"}\nreplicas: "3"', True),
    "other repository and port": (
        'image: {repository: registry.example/team/web, tag: "2.1"}\nport: 9090', True),
    "zero port falls back": ('image: {tag: "1.0"}\nport: 0\nservice_port: 0', True),
    "resources replaced and merged": (
        'image: {tag: "1.0"}\nresources: {requests: {cpu: 1}, limits: null}', True),
    "no resources": ('image: {tag: "1.0"}\nresources: {}', True),
    "unquoted numeric tag": ("image: {tag: 20240101}", False),
    "unquoted float tag": ("image: {tag: 1.28}", False),
    "empty tag": ('image: {tag: ""}', False),
    "no image": ("replicas: 1", False),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_renderer_equals_helm_on_edge_values(repo: Repo, tmp_path: Path, case: str) -> None:
    """The same files through Helm and through the loader, merge and renderer render_env uses."""
    web_values, renders = EDGE_CASES[case]
    base = tmp_path / "base.yaml"
    base.write_text(BASE)
    env = tmp_path / "values.yaml"
    env.write_text("namespace: edge\napps:\n  web:\n" +
                   "".join(f"    {line}\n" for line in web_values.splitlines()))
    proc = repo.template("web", "edge", str(base), str(env), check=False)
    effective = g.app_values(g.load(base.read_text()), g.load(env.read_text()), "web")
    if not renders:
        assert proc.returncode != 0 and "apps.web.image" in proc.stderr, proc.stdout
        with pytest.raises(ConfigError, match=r"image\.repository and image\.tag"):
            g.render_app("web", "edge", effective)
        return
    assert proc.returncode == 0, proc.stderr
    assert _objects(g.render_app("web", "edge", effective)) == _rendered(proc)


PLATFORM_CHARTS = "K3SOPS_PLATFORM_CHARTS"


def test_platform_stack_values_render_with_the_upstream_charts(lab: Lab, repo: Repo) -> None:
    """The platform stack's values through its upstream charts, when they are at hand.

    The charts cannot be downloaded here (no chart repository is reachable), so this runs only
    when ``K3SOPS_PLATFORM_CHARTS`` names a directory holding them unpacked, one per chart name
    (kube-prometheus-stack, loki, longhorn, metallb, traefik) with their dependencies in
    ``charts/``. Each environment's values pass `helm lint --strict` and `helm template`, and
    the objects pass a server-side dry-run in a scratch namespace.
    """
    root = os.environ.get(PLATFORM_CHARTS)
    if not root:
        pytest.skip(f"{PLATFORM_CHARTS} is not set: the upstream charts cannot be fetched here")
    for comp, spec in g.PLATFORM_STACK.items():
        chart = Path(root) / spec["chart"]
        assert (chart / "Chart.yaml").is_file(), f"{chart}: no chart {spec['chart']} here"
        ns = f"helmchk-{comp}"
        lab.kubectl("create", "namespace", ns)
        try:
            for env in repo.namespaces:
                values = str(repo.tree / g.platform_values_file(comp, env))
                repo.helm_run("lint", "--strict", str(chart), "-f", values)
                out = repo.helm_run("template", comp, str(chart), "-n", ns, "--skip-tests",
                                    "-f", values).stdout
                dry = lab.kubectl("apply", "--dry-run=server", "-f", "-", input=out,
                                  check=False, timeout=120)
                assert dry.returncode == 0, f"{comp} {env}: {dry.stderr[-2000:]}"
                count = sum(1 for d in yaml.safe_load_all(out) if d)
                assert dry.stdout.count("(server dry run)") == count, dry.stdout
        finally:
            lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)
