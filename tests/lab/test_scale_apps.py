"""`k3sops scale app|autoscale|status|resources|pvc` and `k3sops capacity` against the lab.

Real: the API server (its validation and admission plugins), the controllers that create pods
and run HPAs, kwok's pods and its kubelet resource metrics, Prometheus' series. Fake: the
Longhorn manager (none runs here): the test creates the longhorn.io Volume object a manager
would keep, through the real API server (the CRD is real), and no CSI resizer runs, so an
accepted expansion stays pending — which is what k3sops must report. GitOps right-sizing
commits to a real bare git remote made by the test (``deploy: none``: git is the outcome).

Everything happens in scratch namespaces (and cluster-scoped PVs named after them), deleted
afterwards.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab


def _k3sops(lab: Lab, *args: str, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k3sops", *args], env=env or lab.env,
                          capture_output=True, text=True, timeout=240)


def _apply(lab: Lab, obj: dict[str, Any]) -> None:
    lab.kubectl("apply", "-f", "-", input=json.dumps(obj))


def _deployment(ns: str, app: str, replicas: int, *, annotations: dict[str, str] | None = None,
                cpu: str = "50m", mem: str = "64Mi") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": app, "namespace": ns},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": {"app": app},
                                           "annotations": annotations or {}},
                              "spec": {"terminationGracePeriodSeconds": 0, "containers": [
                                  {"name": "c", "image": "busybox", "resources": {
                                      "requests": {"cpu": cpu, "memory": mem},
                                      "limits": {"memory": "256Mi"}}}]}}}}


def _get(lab: Lab, *args: str) -> dict[str, Any]:
    return dict(json.loads(lab.kubectl("get", *args, "-o", "json").stdout))


def _running(lab: Lab, ns: str, app: str) -> list[dict[str, Any]]:
    pods = _get(lab, "pods", "-n", ns, "-l", f"app={app}")["items"]
    return [p for p in pods if p["status"].get("phase") == "Running"
            and not p["metadata"].get("deletionTimestamp")]


@pytest.fixture
def scratch(lab: Lab) -> Iterator[str]:
    """A throwaway namespace, deleted afterwards."""
    ns = f"k3sops-scale-{uuid.uuid4().hex[:6]}"
    lab.kubectl("create", "namespace", ns)
    try:
        yield ns
    finally:
        lab.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_scale_app_creates_real_pods_through_the_controllers(lab: Lab, scratch: str,
                                                             tmp_path: Path) -> None:
    """Dry run changes nothing; --apply makes the ReplicaSet controller create the pods."""
    _apply(lab, _deployment(scratch, "shop", 1))
    assert wait_for(lambda: len(_running(lab, scratch, "shop")) == 1, timeout=90)
    common = ("-n", scratch, "--state-dir", str(tmp_path))

    plan = _k3sops(lab, "-o", "json", "scale", "app", "shop", "--replicas", "3", *common)
    assert plan.returncode == 0, plan.stderr
    assert [s["result"] for s in json.loads(plan.stdout)["steps"]] == ["planned"]
    assert _get(lab, "deployment", "shop", "-n", scratch)["spec"]["replicas"] == 1

    done = _k3sops(lab, "-o", "json", "scale", "app", "shop", "--replicas", "3", *common,
                   "--apply")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [s["result"] for s in out["steps"]] == ["ok"]
    assert "3/3 replicas ready" in out["notes"]
    pods = _running(lab, scratch, "shop")
    assert len(pods) == 3
    # Made by the controllers, not by us: owned by the Deployment's ReplicaSet, on kwok nodes.
    assert {o["kind"] for p in pods for o in p["metadata"]["ownerReferences"]} == {"ReplicaSet"}
    assert all(p["spec"].get("nodeName") for p in pods)
    audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["what"]["target"] == f"{scratch}/deployments/shop"
    assert audit[-1]["result"] == "ok"


def test_autoscale_creates_the_exact_hpa_and_guards_manual_scaling(
        lab: Lab, scratch: str, tmp_path: Path) -> None:
    """The HPA has exactly the asked spec; scale app then refuses unless --force."""
    _apply(lab, _deployment(scratch, "api", 2))
    common = ("-n", scratch, "--state-dir", str(tmp_path))
    plan = _k3sops(lab, "-o", "json", "scale", "autoscale", "api", "--cpu-percent", "80",
                   "--min", "2", "--max", "10", *common)
    assert plan.returncode == 0, plan.stderr
    assert json.loads(plan.stdout)["action"] == "create"
    assert lab.kubectl("get", "hpa", "api", "-n", scratch, check=False).returncode != 0

    r = _k3sops(lab, "-o", "json", "scale", "autoscale", "api", "--cpu-percent", "80",
                "--min", "2", "--max", "10", *common, "--apply")
    assert r.returncode == 0, r.stderr
    hpa = json.loads(lab.kubectl("get", "horizontalpodautoscalers.v2.autoscaling", "api", "-n",
                                 scratch, "-o", "json").stdout)
    assert hpa["apiVersion"] == "autoscaling/v2"
    spec = hpa["spec"]
    assert spec["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                      "name": "api"}
    assert (spec["minReplicas"], spec["maxReplicas"]) == (2, 10)
    assert spec["metrics"] == [{"type": "Resource", "resource": {
        "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]

    again = _k3sops(lab, "-o", "json", "scale", "autoscale", "api", "--cpu-percent", "80",
                    "--min", "2", "--max", "10", *common, "--apply")
    assert json.loads(again.stdout)["action"] == "none"
    assert json.loads(again.stdout)["notes"] == []  # the container has a CPU request
    _apply(lab, _deployment(scratch, "other", 1))
    other = _k3sops(lab, "scale", "autoscale", "deployment/other", "--hpa-name", "api", *common,
                    "--apply")
    assert other.returncode == 1
    assert f"HPA {scratch}/api exists and targets Deployment/api" in other.stderr
    missing = _k3sops(lab, "scale", "autoscale", "nothere", *common)
    assert missing.returncode == 1 and "no Deployment or StatefulSet 'nothere'" in missing.stderr
    upd = _k3sops(lab, "-o", "json", "scale", "autoscale", "api", "--cpu-percent", "60",
                  "--min", "2", "--max", "4", *common, "--apply")
    assert upd.returncode == 0, upd.stderr
    assert set(json.loads(upd.stdout)["changed_fields"]) == {"maxReplicas", "metrics"}
    spec = _get(lab, "horizontalpodautoscalers.v2.autoscaling", "api", "-n", scratch)["spec"]
    assert spec["maxReplicas"] == 4
    assert spec["metrics"][0]["resource"]["target"]["averageUtilization"] == 60

    refused = _k3sops(lab, "scale", "app", "api", "--replicas", "5", *common, "--apply")
    assert refused.returncode == 1
    assert "HorizontalPodAutoscaler api" in refused.stderr and "--force" in refused.stderr
    assert _get(lab, "deployment", "api", "-n", scratch)["spec"]["replicas"] == 2
    forced = _k3sops(lab, "-o", "json", "scale", "app", "api", "--replicas", "3", *common,
                     "--apply", "--force", "--no-wait")
    assert forced.returncode == 0, forced.stderr
    assert any("may change the count again" in n for n in json.loads(forced.stdout)["notes"])

    bad = _k3sops(lab, "scale", "autoscale", "api", "--min", "5", "--max", "2", *common)
    assert bad.returncode == 2 and "--max 2 is below --min 5" in bad.stderr

    def listed() -> dict[str, Any] | None:
        st = _k3sops(lab, "-o", "json", "scale", "status", "-n", scratch)
        assert st.returncode == 0, st.stderr
        hs = json.loads(st.stdout)["hpas"]
        return hs[0] if hs and hs[0]["warnings"] else None

    # The lab has no metrics API: the real HPA controller reports ScalingActive=False.
    h = wait_for(listed, timeout=90, every=3)
    assert h is not None, "the HPA controller never reported a condition"
    assert (h["name"], h["target"], h["min_replicas"], h["max_replicas"]) == (
        "api", "Deployment/api", 2, 4)
    assert any(w.startswith("not scaling: ScalingActive=False") for w in h["warnings"])


def _pv(name: str, sc: str, size: str, ns: str, claim: str, csi: bool) -> dict[str, Any]:
    source: dict[str, Any] = ({"csi": {"driver": "driver.longhorn.io", "volumeHandle": name}}
                              if csi else {"hostPath": {"path": f"/nonexistent/{name}"}})
    return {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce"],
                     "storageClassName": sc, "persistentVolumeReclaimPolicy": "Retain",
                     "claimRef": {"namespace": ns, "name": claim}, **source}}


def _pvc(ns: str, name: str, sc: str, size: str, volume: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": sc,
                     "volumeName": volume, "resources": {"requests": {"storage": size}}}}


@pytest.fixture
def volumes(lab: Lab, scratch: str) -> Iterator[list[str]]:
    """Names of PVs (cluster-scoped) and Longhorn volumes the test creates; removed after."""
    names: list[str] = []
    yield names
    for n in names:
        lab.kubectl("delete", "pv", n, "--wait=false", check=False)
        lab.kubectl("delete", "volumes.longhorn.io", n, "-n", "longhorn-system",
                    "--wait=false", check=False)


def _bound(lab: Lab, ns: str, name: str) -> bool:
    return bool(_get(lab, "pvc", name, "-n", ns)["status"].get("phase") == "Bound")


def test_pvc_expansion_refused_early_and_by_the_api_server(
        lab: Lab, scratch: str, volumes: list[str], tmp_path: Path) -> None:
    """local-path does not allow expansion: k3sops says so first; forced, the API refuses."""
    pv = f"{scratch}-data"
    volumes.append(pv)
    _apply(lab, _pv(pv, "local-path", "1Gi", scratch, "data", csi=False))
    _apply(lab, _pvc(scratch, "data", "local-path", "1Gi", pv))
    assert wait_for(lambda: _bound(lab, scratch, "data"), timeout=60), "PVC never bound"
    common = ("-n", scratch, "--state-dir", str(tmp_path))

    early = _k3sops(lab, "scale", "pvc", "data", "--to", "2Gi", *common, "--apply")
    assert early.returncode == 1
    assert "storageclass-allows-expansion" in early.stderr
    assert "allowVolumeExpansion: false" in early.stderr
    assert not (tmp_path / "audit.jsonl").exists()  # refused before any request was sent

    forced = _k3sops(lab, "scale", "pvc", "data", "--to", "2Gi", *common, "--apply", "--force")
    assert forced.returncode == 1
    # The API server's own refusal (PersistentVolumeClaimResize admission), reported as such.
    assert "the API server" in forced.stderr and "refused" in forced.stderr
    assert "storageclass that provisions the pvc must support resize" in forced.stderr
    assert "credentials" not in forced.stderr
    pvc = _get(lab, "pvc", "data", "-n", scratch)
    assert pvc["spec"]["resources"]["requests"]["storage"] == "1Gi"
    audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert audit[-1]["result"] == "failed" and "must support resize" in audit[-1]["error"]


def test_pvc_expansion_on_longhorn_checks_the_volume_and_reports_the_resize_state(
        lab: Lab, scratch: str, volumes: list[str], tmp_path: Path) -> None:
    """Longhorn's class allows expansion; the Volume object is read; no resizer runs here."""
    pv = f"{scratch}-lh"
    volumes.append(pv)
    _apply(lab, _pv(pv, "longhorn", "1Gi", scratch, "lh", csi=True))
    _apply(lab, _pvc(scratch, "lh", "longhorn", "1Gi", pv))
    assert wait_for(lambda: _bound(lab, scratch, "lh"), timeout=60), "PVC never bound"
    common = ("-n", scratch, "--state-dir", str(tmp_path))

    missing = _k3sops(lab, "scale", "pvc", "lh", "--to", "2Gi", *common)
    assert missing.returncode == 1
    assert f"Longhorn volume longhorn-system/{pv} not found" in missing.stderr

    _apply(lab, {"apiVersion": "longhorn.io/v1beta2", "kind": "Volume",
                 "metadata": {"name": pv, "namespace": "longhorn-system"},
                 "spec": {"size": str(2**30), "numberOfReplicas": 3, "frontend": "blockdev"}})
    lab.kubectl("patch", "volumes.longhorn.io", pv, "-n", "longhorn-system",
                "--subresource=status", "--type=merge", "-p", json.dumps(
                    {"status": {"state": "attached", "robustness": "healthy"}}), check=False)

    shrink = _k3sops(lab, "scale", "pvc", "lh", "--to", "512Mi", *common)
    assert shrink.returncode == 1 and "larger" in shrink.stderr

    plan = _k3sops(lab, "-o", "json", "scale", "pvc", "lh", "--to", "2Gi", *common)
    assert plan.returncode == 0, plan.stderr
    checks = {c["name"]: c for c in json.loads(plan.stdout)["checks"]}
    assert all(c["ok"] for c in checks.values()), checks
    assert set(checks) == {"storageclass-allows-expansion", "larger", "bound",
                           "longhorn-online-expansion"}

    done = _k3sops(lab, "-o", "json", "scale", "pvc", "lh", "--to", "2Gi", *common, "--apply",
                   "--follow", "3s")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["result"] == "ok"
    assert out["state"].startswith("pending: spec updated, no resize controller")
    assert _get(lab, "pvc", "lh", "-n", scratch)["spec"]["resources"]["requests"][
        "storage"] == "2Gi"


def _series_ready(lab: Lab, ns: str, need: int) -> bool:
    """Every container of ``ns`` has ``need`` memory samples in Prometheus over 3 minutes."""
    q = urllib.parse.urlencode({"query": f'count_over_time(container_memory_working_set_bytes'
                                         f'{{namespace="{ns}"}}[3m])'})
    url = f"{lab.layout.url('prometheus')}/api/v1/query?{q}"  # http, on loopback
    with urllib.request.urlopen(url, timeout=10) as resp:  # noqa: S310
        result = json.load(resp)["data"]["result"]
    return bool(result) and min(float(x["value"][1]) for x in result) >= need


def test_resources_recommendation_comes_from_real_prometheus_series(
        lab: Lab, scratch: str, tmp_path: Path) -> None:
    """kwok reports the annotated usage; Prometheus scrapes it; the strategy sizes from it."""
    usage = {"kwok.x-k8s.io/usage-cpu": "200m", "kwok.x-k8s.io/usage-memory": "300Mi"}
    _apply(lab, _deployment(scratch, "batch", 2, annotations=usage))
    _apply(lab, _deployment(scratch, "shop", 1, annotations=usage))
    # kwok's oomkilled stage (the lab's fault label): the container keeps dying OOMKilled.
    oom = _deployment(scratch, "cache", 1, annotations={**usage,
                                                        "kwok.x-k8s.io/usage-memory": "200Mi"})
    oom["spec"]["template"]["metadata"]["labels"]["k3sops.io/fault"] = "oomkilled"
    _apply(lab, oom)
    assert wait_for(lambda: len(_running(lab, scratch, "batch")) == 2, timeout=90)
    assert wait_for(lambda: len(_running(lab, scratch, "shop")) == 1, timeout=90)
    # 15s scrapes: eight samples per pod take two minutes, enough for 1m rates to settle.
    assert wait_for(lambda: _series_ready(lab, scratch, 8), timeout=240, every=5), \
        "Prometheus never got the kwok kubelet series"
    args = ("scale", "resources", "batch", "-n", scratch, "--window", "3m", "--step", "15s",
            "--min-samples", "5", "--state-dir", str(tmp_path))
    r = _k3sops(lab, "-o", "json", *args)
    assert r.returncode == 0, r.stderr
    rec = json.loads(r.stdout)["recommendations"][0]
    assert rec["status"] == "ok" and rec["ref"]["container"] == "c"
    assert rec["current"] == {"cpu_request": 0.05, "cpu_limit": None,
                              "memory_request": 64 * 2**20, "memory_limit": 256 * 2**20}
    new = rec["recommended"]
    assert 0.18 <= new["cpu_request"] <= 0.22  # the rate of the counter kwok integrates
    assert new["cpu_limit"] is None
    assert rec["memory_peak"] == 300 * 2**20
    assert new["memory_request"] == new["memory_limit"] == math.ceil(300 * 1.15) * 2**20

    # After OOM kills the peak is not the need: the 200Mi peak + 15 % (230Mi) is raised to
    # the 256Mi limit + 25 % = 320Mi; the kill is read from the pod's lastState.
    r = _k3sops(lab, "-o", "json", "scale", "resources", "cache", "-n", scratch, "--window",
                "3m", "--step", "15s", "--min-samples", "5")
    assert r.returncode == 0, r.stderr
    cache = json.loads(r.stdout)["recommendations"][0]
    assert cache["oom_kills"] >= 1, cache
    assert any("OOM kill" in x for x in cache["reasons"])
    assert cache["memory_peak"] == 200 * 2**20
    assert cache["recommended"]["memory_limit"] == 320 * 2**20

    # Applied with a platform whose development environment is this namespace and whose
    # GitOps values file has an app `shop` (not `batch`): batch is patched in the cluster,
    # shop is changed in git only (ArgoCD would deploy it), with the file's comments kept.
    env = _gitops_platform(lab, tmp_path, scratch)
    applied = _k3sops(lab, "-o", "json", "scale", "resources", "-n", scratch, "--window", "3m",
                      "--step", "15s", "--min-samples", "5", "--state-dir", str(tmp_path),
                      "--apply", env=env)
    assert applied.returncode == 0, applied.stderr
    changes = {c["target"]: c for c in json.loads(applied.stdout)["changes"]}
    assert changes[f"{scratch}/deployments/batch"]["via"] == "cluster"
    assert changes[f"{scratch}/deployments/shop"]["via"] == "gitops"
    assert {c["result"] for c in changes.values()} == {"ok"}
    res = _get(lab, "deployment", "batch", "-n", scratch)["spec"]["template"]["spec"][
        "containers"][0]["resources"]
    assert res["requests"]["memory"] == res["limits"]["memory"] == "345Mi"
    assert "cpu" not in res.get("limits", {})
    assert res["requests"]["cpu"].endswith("m")
    # shop: unchanged in the cluster, changed in git.
    shop = _get(lab, "deployment", "shop", "-n", scratch)["spec"]["template"]["spec"][
        "containers"][0]["resources"]
    assert shop["requests"] == {"cpu": "50m", "memory": "64Mi"}
    committed = _git(tmp_path, "--git-dir", str(tmp_path / "remote.git"), "show",
                     "main:environments/development/values.yaml")
    assert "# development values: comments survive" in committed
    assert 'tag: "1.36"  # pinned' in committed
    got = yaml.safe_load(committed)["apps"]["shop"]["resources"]
    assert got["requests"]["memory"] == got["limits"]["memory"] == "345Mi"
    assert got["requests"]["cpu"] == res["requests"]["cpu"]
    assert got["limits"]["cpu"] is None
    assert "batch" not in yaml.safe_load(committed)["apps"]


VALUES = """\
# development values: comments survive
apps:
  shop:
    image:
      repository: busybox
      tag: "1.36"  # pinned
    resources:
      requests:
        cpu: 50m
        memory: 64Mi
"""


def _gitops_platform(lab: Lab, tmp_path: Path, ns: str) -> dict[str, str]:
    """A bare GitOps remote seeded with VALUES; the lab's platform with development = ``ns``."""
    remote = tmp_path / "remote.git"
    _git(tmp_path, "init", "-q", "--bare", "--initial-branch", "main", str(remote))
    _git(tmp_path, "clone", "-q", str(remote), str(tmp_path / "seed"))
    values = tmp_path / "seed" / "environments" / "development" / "values.yaml"
    values.parent.mkdir(parents=True)
    values.write_text(VALUES)
    _git(tmp_path / "seed", "add", ".")
    _git(tmp_path / "seed", "-c", "user.name=t", "-c", "user.email=t@example.org", "commit",
         "-q", "-m", "seed")
    _git(tmp_path / "seed", "push", "-q", "origin", "main")
    doc = yaml.safe_load(Path(lab.env["K3SOPS_CONFIG"]).read_text())
    doc["environments"]["development"]["namespaces"] = [ns]
    doc["gitops"] = {"repo": str(remote), "branch": "main", "deploy": "none"}
    cfg = tmp_path / "platform.yaml"
    cfg.write_text(yaml.safe_dump(doc, sort_keys=False))
    return {**lab.env, "K3SOPS_CONFIG": str(cfg)}


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout


def test_resources_without_prometheus_exits_4_and_names_it(lab: Lab, scratch: str,
                                                           tmp_path: Path) -> None:
    """Prometheus unreachable: current values still shown, the source named, exit 4."""
    _apply(lab, _deployment(scratch, "lone", 1))
    platform = Path(lab.env["K3SOPS_CONFIG"]).read_text()
    dead = platform.replace(lab.layout.url("prometheus"), "http://127.0.0.1:9")
    assert dead != platform
    cfg = tmp_path / "platform.yaml"
    cfg.write_text(dead)
    env = {**lab.env, "K3SOPS_CONFIG": str(cfg)}
    r = _k3sops(lab, "-o", "json", "scale", "resources", "lone", "-n", scratch, env=env)
    assert r.returncode == 4, r.stderr
    out = json.loads(r.stdout)
    assert out["recommendations"][0]["status"] == "insufficient-data"
    assert [s["name"] for s in out["sources"] if not s["ok"]] == ["prometheus"]
    assert "prometheus" in r.stderr

    c = _k3sops(lab, "-o", "json", "capacity", env=env)
    assert c.returncode == 4, c.stderr
    fc = json.loads(c.stdout)["forecast"]
    assert all(f["status"] == "no-data" and f["missing"].startswith("prometheus") for f in fc)


def test_capacity_counts_requests_per_node_and_environment(lab: Lab) -> None:
    """Per node and per environment, the requests are those of the pods the API lists."""
    r = _k3sops(lab, "-o", "json", "capacity", "--window", "10m", "--step", "1m")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    nodes = {n["metadata"]["name"] for n in _get(lab, "nodes")["items"]}
    assert {n["name"] for n in out["nodes"]} == nodes
    prod = next(e for e in out["environments"] if e["name"] == "production")
    pods = [p for p in _get(lab, "pods", "-n", "production")["items"]
            if p["status"].get("phase") in ("Pending", "Running") and p["spec"].get("nodeName")]
    assert prod["pods"] == len(pods)
    want = sum(float(c["resources"]["requests"]["cpu"].rstrip("m")) / 1000
               for p in pods for c in p["spec"]["containers"])
    assert prod["cpu"]["requests"] == pytest.approx(want)
    alloc = sum(n["cpu"]["allocatable"] for n in out["nodes"])
    assert out["cluster_cpu"]["allocatable"] == pytest.approx(alloc)
    for f in out["forecast"]:
        assert f["method"].startswith("least-squares fit over 10m")
        assert f["status"] in ("ok", "not-growing", "no-data", "full")
