"""Promotion in the lab's own environments: the ``web`` Deployments of development and staging.

The lab shapes ``web`` (nginx:1.27) in each of development, staging and production. This test
scaffolds a GitOps repository (a bare remote) for exactly that shape, takes a new build into
development, promotes it to staging, and rolls both back: k3sops server-side applies onto the
lab's existing Deployments and the real controllers roll them out (kwok makes the pods Ready).
ArgoCD cannot run here (no Application objects): ``gitops.deploy`` is ``apply``. The original
images are restored at the end, whatever happens, and the rollouts waited for.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab

ENVS = ("development", "staging", "production")


def _deployment(lab: Lab, env: str) -> dict[str, Any]:
    return dict(json.loads(lab.kubectl("get", "deployment", "web", "-n", env, "-o",
                                       "json").stdout))


def _image(lab: Lab, env: str) -> str:
    return str(_deployment(lab, env)["spec"]["template"]["spec"]["containers"][0]["image"])


def _done(lab: Lab, env: str, image: str) -> bool:
    d = _deployment(lab, env)
    st, want = d.get("status") or {}, d["spec"]["replicas"]
    return (_image(lab, env) == image and st.get("observedGeneration") == d["metadata"][
        "generation"] and st.get("updatedReplicas") == want == st.get("availableReplicas")
        and st.get("replicas") == want)


def test_build_promote_and_rollback_in_the_lab_environments(lab: Lab, tmp_path: Path) -> None:
    originals = {env: _image(lab, env) for env in ENVS}
    assert set(originals.values()) == {"nginx:1.27"}, originals
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "--initial-branch", "main", str(remote)],
                   check=True)
    doc = yaml.safe_load(lab.layout.platform_file.read_text())
    for env in ENVS:
        doc["environments"][env]["promotion"]["healthy_for"] = "3s"
    doc["gitops"] = {"repo": str(remote), "deploy": "apply", "rollout_timeout": "120s"}
    platform = tmp_path / "platform.yaml"
    platform.write_text(yaml.safe_dump(doc, sort_keys=False))
    env = {**lab.env, "K3SOPS_STATE_DIR": str(tmp_path / "state")}

    def k3sops(*args: str) -> Any:
        r = subprocess.run([sys.executable, "-m", "k3sops", "-c", str(platform), "-o", "json",
                            *args], env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, f"{args}: rc {r.returncode}\n{r.stdout}\n{r.stderr}"
        return json.loads(r.stdout)

    try:
        k3sops("gitops", "init", str(tmp_path / "tree"), "--app", "web=nginx:1.27",
               "--push", str(remote))
        status = k3sops("env", "status", "web")
        assert all(a["in_sync"] and a["running_version"] == "1.27" for a in status["apps"])

        k3sops("gitops", "record-build", "web", "1.28")
        dev = k3sops("env", "sync", "--env", "development", "--apply")
        assert dev["deploy"]["state"] == "rolled-out" and _done(lab, "development", "nginx:1.28")
        time.sleep(4)  # healthy_for: 3s
        stg = k3sops("env", "promote", "web", "--to", "staging", "--apply")
        assert stg["deploy"]["state"] == "rolled-out", stg
        assert _done(lab, "staging", "nginx:1.28")
        assert _image(lab, "production") == "nginx:1.27"

        for name in ("staging", "development"):
            back = k3sops("env", "rollback", "web", "--env", name, "--apply")
            assert back["version"] == "1.27" and back["deploy"]["state"] == "rolled-out"
            assert _done(lab, name, "nginx:1.27")
    finally:
        for name, image in originals.items():
            if _image(lab, name) != image:
                lab.kubectl("set", "image", "deployment/web", "-n", name, f"web={image}",
                            check=False)
            wait_for(lambda n=name, i=image: _done(lab, n, i), timeout=120)
    assert {name: _image(lab, name) for name in ENVS} == originals
    assert all(_done(lab, name, originals[name]) for name in ENVS)
