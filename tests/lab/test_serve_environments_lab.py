"""`GET /api/v1/environments` end to end: a real GitOps repository, real rollouts, the service.

Scratch development, staging and production namespaces; a bare git remote scaffolded by
`k3sops gitops init` with two apps; every environment synced with ``deploy: apply`` (the real
Deployment controller rolls the apps out, kwok makes the pods Ready); then a new web build in
development, an api build promoted to staging, and web's development Deployment edited by
hand (running differs from git). `k3sops serve` runs with its own least-privilege ServiceAccount
(tests/lab/kit/serve.py) on a platform.yaml naming that repository, and its answer must show
apps x environments (version in git vs running), the next promotions with their policy, and
an approval recorded with `k3sops env approve` counted once the answer is refreshed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kit.serve import PORT_OFFSET, Rbac, Running, accounts, can, get, kill, start

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab

ENVS = ("development", "staging", "production")
TAG = uuid.uuid4().hex[:5]
NS = f"t-serve-env-{TAG}"
OFFSET = PORT_OFFSET + 20  # its own port: another serve module's may be closing


@dataclass
class GitOps:
    """The CLI's platform file (admin kubeconfig) and its environment."""

    lab: Lab
    platform: Path
    env: dict[str, str]
    ns: dict[str, str]

    def ok(self, *args: str) -> Any:
        r = subprocess.run([sys.executable, "-m", "k3sops", "-c", str(self.platform), "-o",
                            "json", *args], env=self.env, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, f"{args}: rc {r.returncode}\n{r.stdout}\n{r.stderr}"
        return json.loads(r.stdout) if r.stdout.strip() else None


def _environments(doc: dict[str, Any], ns: dict[str, str], remote: Path) -> None:
    """The lab's three environments moved to scratch namespaces, with a GitOps repository."""
    promotion = {"development": {"policy": "auto"}, "staging": {"policy": "manual"},
                 "production": {"policy": "approval", "approvers": ["ops-lead", "cto"],
                                "required_approvals": 2}}
    for env in ENVS:
        doc["environments"][env]["namespaces"] = [ns[env]]
        doc["environments"][env]["promotion"] = {**promotion[env], "healthy_for": "3s"}
    doc["gitops"] = {"repo": str(remote), "branch": "main", "deploy": "apply",
                     "rollout_timeout": "120s"}


@pytest.fixture(scope="module")
def gitops(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitOps]:
    tmp = tmp_path_factory.mktemp("serve-env-git")
    ns = {env: f"t-serve-env-{TAG}-{env[:4]}" for env in ENVS}
    for n in ns.values():
        lab.kubectl("create", "namespace", n)
    try:
        remote = tmp / "remote.git"
        subprocess.run(["git", "init", "-q", "--bare", "--initial-branch", "main",
                        str(remote)], check=True)
        doc = yaml.safe_load(lab.layout.platform_file.read_text())
        _environments(doc, ns, remote)
        platform = tmp / "platform.yaml"
        platform.write_text(yaml.safe_dump(doc, sort_keys=False))
        g = GitOps(lab=lab, platform=platform, ns=ns,
                   env={**lab.env, "K3SOPS_STATE_DIR": str(tmp / "state")})
        g.ok("gitops", "init", str(tmp / "tree"), "--app", "web=example/web:1.0", "--app",
             "api=example/api:2.0", "--push", str(remote))
        for env in ENVS:
            assert g.ok("env", "sync", "--env", env, "--apply")["deploy"]["state"] \
                == "rolled-out"
        # web 1.1 built and running in development; api 2.1 built, then promoted to staging
        g.ok("gitops", "record-build", "web", "1.1", "--source", "ci-1")
        g.ok("gitops", "record-build", "api", "2.1", "--source", "ci-2")
        assert g.ok("env", "sync", "--env", "development", "--apply")["deploy"]["state"] \
            == "rolled-out"
        time.sleep(4)  # development healthy for healthy_for (3s) before it promotes
        done = g.ok("env", "promote", "api", "--to", "staging", "--apply")
        assert done["applied"] is True, done
        # a hand edit outside git: development's running web differs from its git version
        lab.kubectl("set", "image", "deployment/web", "-n", ns["development"],
                    "*=example/web:1.1-hotfix")
        yield g
    finally:
        for n in ns.values():
            lab.kubectl("delete", "namespace", n, "--wait=false", check=False)


@pytest.fixture(scope="module")
def rbac(lab: Lab, gitops: GitOps, tmp_path_factory: pytest.TempPathFactory,
         ) -> Iterator[Rbac]:
    with accounts(lab, NS, tmp_path_factory.mktemp("serve-env")) as r:
        doc = yaml.safe_load(r.platform.read_text())
        cli = yaml.safe_load(gitops.platform.read_text())
        doc["environments"], doc["gitops"] = cli["environments"], cli["gitops"]
        r.platform.write_text(yaml.safe_dump(doc, sort_keys=False))
        yield r


@pytest.fixture(scope="module")
def service(lab: Lab, rbac: Rbac) -> Iterator[Running]:
    s = start(lab, rbac, OFFSET)
    yield s
    kill(s)


def _body(s: Running) -> dict[str, Any]:
    r = get(s, "/api/v1/environments", s.tokens["reader"])
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_apps_by_environment_and_the_next_promotions(service: Running, rbac: Rbac,
                                                     gitops: GitOps) -> None:
    assert get(service, "/api/v1/environments").status_code == 401
    assert get(service, "/api/v1/environments", service.tokens["nobody"]).status_code == 403

    body = _body(service)
    assert body["reason"] is None, body["reason"]
    assert [(e["name"], e["policy"], e["namespaces"]) for e in body["environments"]] == [
        (env, p, [gitops.ns[env]]) for env, p in zip(ENVS, ("auto", "manual", "approval"),
                                                       strict=True)]
    rows = {(a["app"], a["env"]): a for a in body["apps"]}
    assert {k: (a["git_version"], a["running_version"], a["in_sync"], a["error"])
            for k, a in rows.items()} == {
        ("web", "development"): ("1.1", "1.1-hotfix", False, None),
        ("web", "staging"): ("1.0", "1.0", True, None),
        ("web", "production"): ("1.0", "1.0", True, None),
        ("api", "development"): ("2.1", "2.1", True, None),
        ("api", "staging"): ("2.1", "2.1", True, None),
        ("api", "production"): ("2.0", "2.0", True, None)}
    assert all(a["rollout"].startswith("complete") for k, a in rows.items()
               if k != ("web", "development")), rows

    def pending(b: dict[str, Any]) -> list[tuple[Any, ...]]:
        return [(n["app"], n["source"], n["target"], n["version"], n["target_version"],
                 n["policy"], n["required_approvals"], n["approved_by"],
                 n["missing_approvals"]) for n in b["next_promotions"]]

    assert pending(body) == [
        ("web", "development", "staging", "1.1", "1.0", "manual", 0, [], 0),
        ("api", "staging", "production", "2.1", "2.0", "approval", 2, [], 2)]
    prod = body["next_promotions"][1]
    assert prod["approvers"] == ["ops-lead", "cto"] and prod["healthy_for"] == "3s"

    # read from the watch cache: the service's account may list and watch Deployments, not get
    assert not can(gitops.lab, NS, "k3sops-serve", "get", "deployments", gitops.ns["staging"])
    assert can(gitops.lab, NS, "k3sops-serve", "list", "deployments", gitops.ns["staging"])

    # the service keeps its clone of the GitOps repository in its own state directory
    assert (rbac.tmp / f"state-{OFFSET}" / "gitops").is_dir()

    gitops.ok("env", "approve", "api", "--to", "production", "--as", "ops-lead", "--note",
              "CAB-9")
    # the answer is kept for the views' ttl (30 s): the approval shows on a later answer
    counted = wait_for(lambda: pending(_body(service))[1][7:] == (["ops-lead"], 1),
                       timeout=90, every=3)
    assert counted, pending(_body(service))
    assert pending(_body(service))[0] == pending(body)[0]  # web's is unchanged
    assert service.tokens["reader"] not in service.log.read_text()
