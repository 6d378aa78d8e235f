"""GitOps repository content (pure): scaffold, round-trip values edits, deviations, manifests.

ArgoCD cannot run here: its Application status is read from the four Application objects
recorded in tests/data/check-dev-lab.json (created against the lab's real CRD with the status
ArgoCD 3.1's application controller writes; see tests/unit/test_checks_workloads.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from k3sops.domain import gitops as g
from k3sops.errors import ConfigError
from k3sops.services.env.deploy import argocd_synced
from k3sops.services.gitops import argo_status

pytestmark = pytest.mark.unit

DATA = Path(__file__).parent.parent / "data"
ENVS = {"development": ("development", True), "staging": ("staging", False),
        "production": ("production", False)}
APPS = [("web", "nginx", "1.27"), ("api", "ghcr.io/acme/api", "2.0.1")]


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return g.scaffold("lab", "https://git.example/deploy.git", "main",
                      "environments/{env}/values.yaml", ENVS, APPS)


def test_scaffold_layout(files: dict[str, str]) -> None:
    for env in ENVS:
        assert f"environments/{env}/values.yaml" in files
        assert f"argocd/{env}/applications.yaml" in files
        for comp in ("kube-prometheus-stack", "loki", "longhorn", "metallb", "ingress"):
            assert f"platform/{comp}/values-{env}.yaml" in files
    for app in ("web", "api"):
        assert f"apps/{app}/base.yaml" in files
    assert {"DEVIATIONS.yaml", "builds.yaml", "README.md", "charts/app/Chart.yaml",
            "charts/app/templates/deployment.yaml"} <= set(files)
    for path, text in files.items():
        if path.endswith(".yaml") and "/templates/" not in path:
            list(yaml.safe_load_all(text))  # every YAML file parses


def test_scaffold_argocd_applications(files: dict[str, str]) -> None:
    docs = list(yaml.safe_load_all(files["argocd/production/applications.yaml"]))
    by_name = {d["metadata"]["name"]: d for d in docs}
    web = by_name["web-production"]
    assert web["spec"]["destination"]["namespace"] == "production"
    assert web["spec"]["source"]["helm"]["valueFiles"] == [
        "../../apps/web/base.yaml", "../../environments/production/values.yaml"]
    assert "automated" not in web["spec"]["syncPolicy"]  # production syncs by promotion only
    dev = yaml.safe_load_all(files["argocd/development/applications.yaml"])
    assert "automated" in next(dev)["spec"]["syncPolicy"]
    kps = by_name["kube-prometheus-stack-production"]
    assert kps["spec"]["sources"][0]["helm"]["valueFiles"] == [
        "$values/platform/kube-prometheus-stack/values-production.yaml"]
    assert {d["metadata"]["name"] for d in docs} >= {
        "loki-production", "longhorn-production", "metallb-production", "ingress-production"}


def test_version_edit_changes_exactly_one_line_and_keeps_comments(files: dict[str, str]) -> None:
    old = files["environments/staging/values.yaml"]
    new = g.set_values(old, {g.tag_path("web"): "1.28"})
    assert g.changed_lines(old, new) == [
        "@@ -9 +9 @@",
        '-      tag: "1.27"  # the version running here',
        '+      tag: "1.28"  # the version running here']
    assert g.load(new)["apps"]["web"]["image"]["tag"] == "1.28"  # a string, not 1.28 the float


def test_round_trip_keeps_foreign_formatting() -> None:
    text = ("# header\nnamespace: prod   # ns\n\napps:\n    web:\n        image:\n"
            "            tag: '1.0'\n        replicas: 3\n    list:\n        - a\n        - b\n")
    new = g.set_values(text, {("apps", "web", "image", "tag"): "1.1"})
    assert g.changed_lines(text, new) == ["@@ -7 +7 @@", "-            tag: '1.0'",
                                          "+            tag: '1.1'"]


def test_set_values_creates_keys_and_refuses_crossing_a_scalar() -> None:
    text = "apps:\n  web:\n    replicas: 2  # keep\n"
    new = g.set_values(text, {("apps", "web", "resources", "requests", "cpu"): "250m"})
    assert "replicas: 2  # keep" in new
    assert g.load(new)["apps"]["web"]["resources"]["requests"]["cpu"] == "250m"
    with pytest.raises(ConfigError, match=r"apps\.web\.replicas is not a mapping"):
        g.set_values(text, {("apps", "web", "replicas", "x"): 1})


def test_set_values_quotes_strings_that_would_read_as_numbers() -> None:
    new = g.set_values("apps:\n  web:\n    image:\n      tag: latest\n",
                       {g.tag_path("web"): "2.0"})
    assert g.load(new)["apps"]["web"]["image"]["tag"] == "2.0"


def test_builds_append_newest_last(files: dict[str, str]) -> None:
    text = files["builds.yaml"]
    for v in ("1.28", "1.29"):
        text = g.append_to_list(text, ("builds", "web"), {"version": v, "repository": "nginx"})
    assert [b.version for b in g.parse_builds(text)["web"]] == ["1.28", "1.29"]
    assert text.startswith("# Builds published by CI")
    many = text
    for i in range(30):
        many = g.append_to_list(many, ("builds", "web"), {"version": f"2.{i}"}, keep=20)
    builds = g.parse_builds(many)["web"]
    assert len(builds) == 20 and builds[-1].version == "2.29"


def test_env_diff_documented_and_undocumented(files: dict[str, str]) -> None:
    devs = g.parse_deviations(files["DEVIATIONS.yaml"])
    stg = g.flatten(g.load(files["environments/staging/values.yaml"]))
    prod_text = g.set_values(files["environments/production/values.yaml"],
                             {("apps", "web", "env", "LOG_LEVEL"): "warn"})
    prod = g.flatten(g.load(prod_text))
    diffs = {d.path: d for d in g.diff_values(stg, prod, devs, "staging", "production")}
    assert diffs["apps.web.replicas"].documented
    assert diffs["namespace"].documented
    log = diffs["apps.web.env.LOG_LEVEL"]
    assert not log.documented and log.left is None and log.right == "warn"
    assert "apps.web.image.tag" not in diffs  # equal in both


def test_deviation_limited_to_environments() -> None:
    devs = g.parse_deviations("deviations:\n- path: apps.*.replicas\n  reason: r\n"
                              "  environments: [staging, production]\n")
    assert devs[0].covers(("apps", "web", "replicas"), "staging", "production")
    assert not devs[0].covers(("apps", "web", "replicas"), "development", "production")
    with pytest.raises(ConfigError, match="needs path and reason"):
        g.parse_deviations("deviations:\n- path: x\n")


def test_render_app_matches_the_lab_shape(files: dict[str, str]) -> None:
    base = g.load(files["apps/web/base.yaml"])
    env = g.load(g.set_values(files["environments/staging/values.yaml"],
                              {g.tag_path("web"): "1.28"}))
    dep, svc = g.render_app("web", "staging", g.app_values(base, env, "web"))
    c = dep["spec"]["template"]["spec"]["containers"][0]
    assert c["image"] == "nginx:1.28" and c["name"] == "web"
    assert dep["spec"]["replicas"] == 2
    assert dep["spec"]["selector"] == {"matchLabels": {"app.kubernetes.io/name": "web"}}
    assert c["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                              "limits": {"memory": "256Mi"}}
    assert svc["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 8080}]
    with pytest.raises(ConfigError, match=r"image\.repository and image\.tag"):
        g.render_app("web", "x", {"image": {"repository": "nginx"}})


def test_render_app_follows_the_chart_on_edge_values() -> None:
    """The rules charts/app has (tests/lab/test_helm_charts.py checks them against Helm)."""
    image = {"repository": "example/web", "tag": "1.0"}
    dep, svc = g.render_app("web", "ns", {"image": image, "replicas": 0, "port": 0})
    assert dep["spec"]["replicas"] == 0 and dep["metadata"]["namespace"] == "ns"
    assert svc["spec"]["ports"][0]["targetPort"] == 8080
    for replicas, want in ((None, 1), ("3", 3), (2.0, 2)):
        dep, _ = g.render_app("web", "ns", {"image": image, "replicas": replicas})
        assert dep["spec"]["replicas"] == want
    digest = "sha256:" + "0" * 64
    dep, _ = g.render_app("web", "ns", {"image": {**image, "tag": digest}})
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == f"example/web@{digest}"
    with pytest.raises(ConfigError, match=r"must be strings.*float") as err:
        g.render_app("web", "ns", {"image": {**image, "tag": 1.28}})
    assert 'tag: "1.28"' in (err.value.hint or "")
    with pytest.raises(ConfigError, match="not a whole number"):
        g.render_app("web", "ns", {"image": image, "replicas": "two"})


@pytest.mark.parametrize(("image", "split"), [
    ("nginx:1.27", ("nginx", "1.27")),
    ("registry:5000/team/app:1.2", ("registry:5000/team/app", "1.2")),
    ("registry:5000/team/app", ("registry:5000/team/app", "latest")),
    ("ghcr.io/a/b@sha256:abc", ("ghcr.io/a/b", "sha256:abc")),
])
def test_split_image(image: str, split: tuple[str, str]) -> None:
    assert g.split_image(image) == split
    if split[1] != "latest":
        assert g.join_image(*split) == image


def test_app_spec() -> None:
    assert g.parse_app_spec("web=nginx:1.27") == ("web", "nginx", "1.27")
    with pytest.raises(ConfigError):
        g.parse_app_spec("Web=nginx")


def test_argocd_status_from_recorded_applications() -> None:
    objs = {o["metadata"]["name"]: o for o in json.loads(
        (DATA / "check-dev-lab.json").read_text())["objects"]["applications.argoproj.io"]}
    st = argo_status(objs["shop-staging"])
    assert (st.sync, st.health) == ("OutOfSync", "Healthy")
    ok, why = argocd_synced([objs["monitoring"]], "0f9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a2f1e")
    assert ok, why
    ok, why = argocd_synced([objs["monitoring"]], "1111111111111111111111111111111111111111")
    assert not ok and "waiting for 111111111111" in why
    ok, why = argocd_synced([objs["shop-development"]], None)
    assert not ok and "health Degraded" in why
