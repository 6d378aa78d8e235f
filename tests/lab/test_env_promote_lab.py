"""Promotion through GitOps against the lab: real git (a bare remote), real rollouts, real gates.

Each test gets three scratch namespaces (its development, staging and production), a bare git
remote scaffolded by `k3sops gitops init`, and a platform.yaml copied from the lab's (same
kubeconfig, Prometheus and Alertmanager) with ``gitops.deploy: apply``: k3sops renders the
manifests and server-side applies them; the real Deployment controller and scheduler roll them
out and kwok makes the pods Ready. Health gates read the real Alertmanager and Prometheus.
ArgoCD cannot run here, so no Application objects exist (its status is tested with recorded
payloads in tests/unit/test_gitops.py). The scratch namespaces are deleted afterwards and any
alert posted is resolved: the lab is left as it was found.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab

ENVS = ("development", "staging", "production")
TAG_LINE = '      tag: "{}"  # the version running here'


@dataclass
class Env:
    """One test's GitOps set-up."""

    lab: Lab
    root: Path
    remote: Path
    platform: Path
    ns: dict[str, str]
    env: dict[str, str]

    def k3sops(self, *args: str, output: str = "json") -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "k3sops", "-c", str(self.platform),
                               "-o", output, *args], env=self.env, capture_output=True,
                              text=True, timeout=300)

    def ok(self, *args: str) -> Any:
        r = self.k3sops(*args)
        assert r.returncode == 0, f"{args}: rc {r.returncode}\n{r.stdout}\n{r.stderr}"
        return json.loads(r.stdout) if r.stdout.strip() else None

    def git(self, *args: str) -> str:
        return subprocess.run(["git", *args], cwd=self.remote, capture_output=True, text=True,
                              check=True).stdout

    def values(self, env: str) -> str:
        return self.git("show", f"main:environments/{env}/values.yaml")

    def deployment(self, env: str) -> dict[str, Any]:
        r = self.lab.kubectl("get", "deployment", "web", "-n", self.ns[env], "-o", "json")
        return dict(json.loads(r.stdout))

    def image(self, env: str) -> str:
        return str(self.deployment(env)["spec"]["template"]["spec"]["containers"][0]["image"])

    def set_promotion(self, env: str, **settings: Any) -> None:
        doc = yaml.safe_load(self.platform.read_text())
        doc["environments"][env]["promotion"].update(settings)
        self.platform.write_text(yaml.safe_dump(doc, sort_keys=False))

    def audit(self) -> list[dict[str, Any]]:
        path = self.root / "state" / "audit.jsonl"
        return [json.loads(x) for x in path.read_text().splitlines()]


def _rolled_out(e: Env, env: str, image: str) -> bool:
    d = e.deployment(env)
    st, want = d.get("status") or {}, d["spec"]["replicas"]
    return (e.image(env) == image and st.get("observedGeneration") == d["metadata"]["generation"]
            and st.get("updatedReplicas") == want == st.get("availableReplicas")
            and st.get("replicas") == want)


@pytest.fixture
def gitops(lab: Lab, tmp_path: Path) -> Iterator[Env]:
    """Scratch namespaces, a scaffolded bare remote, web 1.27 deployed in all three."""
    tag = uuid.uuid4().hex[:5]
    ns = {env: f"k3sops-env-{tag}-{env[:4]}" for env in ENVS}
    for n in ns.values():
        lab.kubectl("create", "namespace", n)
    try:
        remote = tmp_path / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "--initial-branch", "main", str(remote)],
                       check=True)
        doc = yaml.safe_load(lab.layout.platform_file.read_text())
        for env in ENVS:
            doc["environments"][env]["namespaces"] = [ns[env]]
            doc["environments"][env]["promotion"]["healthy_for"] = "3s"
        doc["gitops"] = {"repo": str(remote), "branch": "main", "deploy": "apply",
                         "rollout_timeout": "120s"}
        platform = tmp_path / "platform.yaml"
        platform.write_text(yaml.safe_dump(doc, sort_keys=False))
        env = {**lab.env, "K3SOPS_STATE_DIR": str(tmp_path / "state")}
        e = Env(lab=lab, root=tmp_path, remote=remote, platform=platform, ns=ns, env=env)
        e.ok("gitops", "init", str(tmp_path / "tree"), "--app", "web=nginx:1.27",
             "--push", str(remote))
        for name in ENVS:
            report = e.ok("env", "sync", "--env", name, "--apply")
            assert report["deploy"]["state"] == "rolled-out", report
        yield e
    finally:
        for n in ns.values():
            lab.kubectl("delete", "namespace", n, "--wait=false", check=False)


def _new_build_in_development(e: Env, version: str = "1.28") -> None:
    e.ok("gitops", "record-build", "web", version, "--source", "ci-run-1")
    report = e.ok("env", "sync", "--env", "development", "--apply")
    assert report["changes"] == {"web": version}
    assert report["deploy"]["state"] == "rolled-out"
    assert _rolled_out(e, "development", f"nginx:{version}")
    time.sleep(4)  # development must be healthy for healthy_for (3s) before it promotes


def _rolled_out_by_controllers(e: Env, done: dict[str, Any]) -> None:
    """Staging rolled out by the real controllers: a new ReplicaSet at 1.28, all ready."""
    assert done["deploy"] == {**done["deploy"], "mode": "apply", "state": "rolled-out"}
    assert all(v["passed"] for v in done["verification"])
    assert _rolled_out(e, "staging", "nginx:1.28")
    rs = json.loads(e.lab.kubectl("get", "rs", "-n", e.ns["staging"], "-o", "json").stdout)
    images = {r["spec"]["template"]["spec"]["containers"][0]["image"]:
              (r["status"].get("readyReplicas") or 0) for r in rs["items"]}
    assert images == {"nginx:1.27": 0, "nginx:1.28": 2}
    shown = json.loads(e.lab.kubectl("get", "deployment", "web", "-n", e.ns["staging"], "-o",
                                     "json", "--show-managed-fields").stdout)
    managers = {(m["manager"], m["operation"]) for m in shown["metadata"]["managedFields"]}
    assert ("k3sops", "Apply") in managers  # server-side apply, field manager k3sops


def test_promote_approve_rollback_through_git_and_real_rollouts(gitops: Env) -> None:
    e = gitops
    _new_build_in_development(e)

    # staging: one explicit command; exactly the version line changes, comments kept
    before = e.values("staging")
    plan = e.ok("env", "promote", "web", "--to", "staging")
    assert plan["applied"] is False and plan["refusals"] == []
    assert e.values("staging") == before  # a plan changes nothing
    done = e.ok("env", "promote", "web", "--to", "staging", "--apply")
    assert {g["name"]: g["status"] for g in done["gates"]} == {
        "rollout": "pass", "healthy-for": "pass", "alerts": "pass", "error-rate": "no-data",
        "p95-latency": "no-data"}
    after = e.values("staging")
    assert [x for x in after.splitlines() if x not in before.splitlines()] == \
        [TAG_LINE.format("1.28")]
    assert [x for x in before.splitlines() if x not in after.splitlines()] == \
        [TAG_LINE.format("1.27")]
    assert e.git("show", "--name-only", "--format=", done["commit"]).split() == \
        ["environments/staging/values.yaml"]
    body = e.git("log", "-1", "--format=%B", done["commit"])
    for trailer in ("Promoted-From: development", "Promoted-To: staging", "Version: 1.28",
                    "Previous-Version: 1.27"):
        assert trailer in body

    _rolled_out_by_controllers(e, done)

    # production without approval: refused with the command that satisfies it, nothing changes
    time.sleep(4)
    prod_before = e.values("production")
    refused = e.k3sops("env", "promote", "web", "--to", "production", "--apply")
    assert refused.returncode == 3, refused.stderr
    assert "k3sops env approve web --to production --version 1.28" in refused.stderr
    assert json.loads(refused.stdout)["refusals"][0]["rule"] == "approval"
    assert e.values("production") == prod_before
    assert e.image("production") == "nginx:1.27"

    # an approval by someone not listed is refused; by ops-lead it is recorded in git
    stranger = e.k3sops("env", "approve", "web", "--to", "production", "--as", "mallory")
    assert stranger.returncode == 3 and "--as ops-lead" in stranger.stderr
    approval = e.ok("env", "approve", "web", "--to", "production", "--as", "ops-lead",
                    "--note", "CAB-7")
    assert approval["approval"]["version"] == "1.28"
    assert "by: ops-lead" in e.git("show", "main:approvals/production.yaml")

    prod = e.ok("env", "promote", "web", "--to", "production", "--apply")
    assert prod["approvals"][0]["by"] == "ops-lead"
    assert "Approved-By: ops-lead at" in e.git("log", "-1", "--format=%B", prod["commit"])
    assert _rolled_out(e, "production", "nginx:1.28")

    # rollback: back to the previous version from git history, rolled out the same way
    back = e.ok("env", "rollback", "web", "--env", "production", "--apply")
    assert (back["previous_version"], back["version"]) == ("1.28", "1.27")
    assert TAG_LINE.format("1.27") in e.values("production")
    assert e.values("production") == prod_before
    assert _rolled_out(e, "production", "nginx:1.27")

    status = e.ok("env", "status", "web")
    assert {(a["env"], a["git_version"], a["running_version"], a["in_sync"])
            for a in status["apps"]} == {("development", "1.28", "1.28", True),
                                         ("staging", "1.28", "1.28", True),
                                         ("production", "1.27", "1.27", True)}
    actions = [(a["what"]["action"], a["result"]) for a in e.audit()]
    for expected in (("record-build", "ok"), ("sync", "ok"), ("promote", "ok"),
                     ("promote", "refused"), ("approve", "refused"), ("approve", "ok"),
                     ("rollback", "ok"), ("rollback-deploy", "ok")):
        assert expected in actions
    subjects = e.git("log", "--format=%s", "main").splitlines()
    assert subjects[:4] == ["rollback web in production to 1.27 (from 1.28)",
                            "promote web 1.28 to production (from staging)",
                            "approve web 1.28 for production",
                            "promote web 1.28 to staging (from development)"]


def _post_alert(lab: Lab, labels: dict[str, str], ends: str | None = None) -> None:
    url = yaml.safe_load(
        lab.layout.platform_file.read_text())["monitoring"]["alertmanager"]["url"]
    alert: dict[str, Any] = {"labels": labels, "annotations": {"summary": "k3sops env test"}}
    if ends:
        alert["endsAt"] = ends
    httpx2.post(f"{url}/api/v2/alerts", json=[alert], timeout=10).raise_for_status()


def _refused(e: Env, rule: str) -> dict[str, Any]:
    r = e.k3sops("env", "promote", "web", "--to", "staging", "--apply")
    assert r.returncode == 3, (r.stdout, r.stderr)
    report = json.loads(r.stdout)
    assert rule in [x["rule"] for x in report["refusals"]], report["refusals"]
    assert TAG_LINE.format("1.27") in e.values("staging")
    return dict(report)


def test_gates_refuse_an_unhealthy_source(gitops: Env) -> None:
    e = gitops
    _new_build_in_development(e)

    # a firing alert for the app in the source (posted to the real Alertmanager)
    labels = {"alertname": "K3sopsEnvTestAlert", "namespace": e.ns["development"],
              "deployment": "web", "severity": "warning"}
    _post_alert(e.lab, labels)
    try:
        seen = wait_for(lambda: e.k3sops("env", "promote", "web", "--to", "staging")
                        .returncode == 3, timeout=30)
        assert seen
        report = _refused(e, "gate:alerts")
        gate = next(g for g in report["gates"] if g["name"] == "alerts")
        assert "K3sopsEnvTestAlert" in gate["detail"]
    finally:
        _post_alert(e.lab, labels, ends="2020-01-01T00:00:00Z")
    assert wait_for(lambda: e.k3sops("env", "promote", "web", "--to", "staging")
                    .returncode == 0, timeout=30)

    # error rate above its threshold, from a real Prometheus query
    e.set_promotion("staging", error_rate_query="vector(42)")
    report = _refused(e, "gate:error-rate")
    gate = next(g for g in report["gates"] if g["name"] == "error-rate")
    assert (gate["status"], gate["value"], gate["threshold"]) == ("fail", 42.0, 5.0)

    # no such series and missing_metrics: fail -> a named no-data result that refuses
    e.set_promotion("staging", error_rate_query='sum(rate(http_requests_total{job="web"}[5m]))',
                    missing_metrics="fail")
    report = _refused(e, "gate:p95-latency")
    assert {g["name"]: g["status"] for g in report["gates"]}["p95-latency"] == "no-data"
    e.set_promotion("staging", missing_metrics="pass")

    # not healthy for long enough
    e.set_promotion("staging", healthy_for="1h")
    _refused(e, "gate:healthy-for")
    e.set_promotion("staging", healthy_for="3s")

    # a rollout that cannot finish (new pods cannot be scheduled)
    e.lab.kubectl("patch", "deployment", "web", "-n", e.ns["development"], "--type", "merge",
                  "-p", '{"spec":{"template":{"spec":{"nodeSelector":{"k3sops.io/none":"x"}}}}}')
    report = _refused(e, "gate:rollout")
    gate = next(g for g in report["gates"] if g["name"] == "rollout")
    assert gate["status"] == "fail" and "replica" in gate["detail"]


def test_skipping_and_versions_the_source_never_ran_are_refused(gitops: Env) -> None:
    e = gitops
    _new_build_in_development(e)
    skip = e.k3sops("env", "promote", "web", "--from", "development", "--to", "production")
    assert skip.returncode == 3
    assert "skips staging" in skip.stderr and "k3sops env promote web --to staging" in skip.stderr

    never = e.k3sops("env", "promote", "web", "--to", "staging", "--version", "9.9")
    assert never.returncode == 3 and "never ran web 9.9" in never.stderr
    before = e.k3sops("env", "promote", "web", "--to", "staging", "--version", "1.27")
    assert before.returncode == 3 and "ran web 1.27 before but runs 1.28 now" in before.stderr

    dev = e.k3sops("env", "promote", "web", "--to", "development")
    assert dev.returncode == 3 and "k3sops env sync --env development --apply" in dev.stderr

    # drift: development runs something git does not say
    e.lab.kubectl("set", "image", "deployment/web", "-n", e.ns["development"], "web=nginx:6.6")
    assert wait_for(lambda: _rolled_out(e, "development", "nginx:6.6"), timeout=90)
    drift = e.k3sops("env", "promote", "web", "--to", "staging")
    assert drift.returncode == 3 and "did not come from git" in drift.stderr
    assert TAG_LINE.format("1.27") in e.values("staging")


def test_env_list_and_diff(gitops: Env) -> None:
    e = gitops
    envs = e.ok("env", "list")["environments"]
    assert [(x["name"], x["policy"], x["promotes_from"]) for x in envs] == [
        ("development", "auto", None), ("staging", "manual", "development"),
        ("production", "approval", "staging")]
    e.ok("gitops", "set", "web", "env.LOG_LEVEL=debug", "--env", "staging",
         "--reason", "debug a customer issue")
    diff = e.ok("env", "diff", "staging", "production")
    by_path = {d["path"]: d for d in diff["differences"]}
    assert by_path["apps.web.replicas"]["documented"] is True
    assert by_path["apps.web.env.LOG_LEVEL"] == {
        "path": "apps.web.env.LOG_LEVEL", "left": "debug", "right": None, "documented": False,
        "reason": None}
    assert diff["undocumented"] == 1
    strict = e.k3sops("env", "diff", "staging", "production", "--strict")
    assert strict.returncode == 3


def _fake_argocd(e: Env, app: str, env: str, stop: threading.Event) -> None:
    """Stand-in for ArgoCD's application controller (ArgoCD cannot run here).

    When the tracked branch moves, it does what ArgoCD does with this repository: deploys the
    version the environment's values now name and writes sync (revision, Synced) and health
    (Healthy once the rollout is done) into the Application's status, in ArgoCD's own shape.
    """
    seen = e.git("rev-parse", "main").strip()
    while not stop.wait(0.5):
        head = e.git("rev-parse", "main").strip()
        if head == seen:
            continue
        tag = yaml.safe_load(e.values(env))["apps"][app]["image"]["tag"]
        e.lab.kubectl("set", "image", f"deployment/{app}", "-n", e.ns[env],
                      f"{app}=nginx:{tag}")
        wait_for(lambda t=tag: _rolled_out(e, env, f"nginx:{t}"), timeout=60)
        status = {"status": {"sync": {"status": "Synced", "revision": head},
                             "health": {"status": "Healthy"}}}
        e.lab.kubectl("patch", "application", f"{app}-{env}", "-n", "argocd", "--type",
                      "merge", "-p", json.dumps(status))
        seen = head


def test_argocd_mode_follows_the_application_status(gitops: Env) -> None:
    """deploy: argocd waits for the Application to sync the pushed commit and be Healthy.

    The Application object is real (the lab's ArgoCD CRD); its status is written by a
    stand-in controller thread (_fake_argocd), since ArgoCD itself cannot run here.
    """
    e = gitops
    _new_build_in_development(e)
    doc = yaml.safe_load(e.platform.read_text())
    doc["gitops"]["deploy"] = "argocd"
    e.platform.write_text(yaml.safe_dump(doc, sort_keys=False))
    head = e.git("rev-parse", "main").strip()
    application = {
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
        "metadata": {"name": "web-staging", "namespace": "argocd"},
        "spec": {"project": "default",
                 "source": {"repoURL": str(e.remote), "targetRevision": "main",
                            "path": "charts/app"},
                 "destination": {"server": "https://kubernetes.default.svc",
                                 "namespace": e.ns["staging"]}},
        "status": {"sync": {"status": "Synced", "revision": head},
                   "health": {"status": "Healthy"}}}
    e.lab.kubectl("apply", "-f", "-", input=json.dumps(application))
    stop = threading.Event()
    controller = threading.Thread(target=_fake_argocd, args=(e, "web", "staging", stop))
    controller.start()
    try:
        before = e.ok("env", "status", "web")
        argo = {a["env"]: a["argocd"] for a in before["apps"]}
        assert argo["development"] is None  # no Application: live rollout status only
        assert argo["staging"] == {"name": "web-staging", "sync": "Synced", "health": "Healthy",
                                   "revision": head, "operation": None}
        done = e.ok("env", "promote", "web", "--to", "staging", "--apply")
        assert done["deploy"]["mode"] == "argocd" and done["deploy"]["state"] == "rolled-out"
        assert done["deploy"]["argocd"][0]["revision"] == done["commit"]
        assert _rolled_out(e, "staging", "nginx:1.28")
        after = {a["env"]: a for a in e.ok("env", "status", "web")["apps"]}
        assert after["staging"]["argocd"]["revision"] == done["commit"]
        assert after["staging"]["in_sync"] is True
    finally:
        stop.set()
        controller.join(30)
        e.lab.kubectl("delete", "application", "web-staging", "-n", "argocd", check=False)
