"""Helm (the lab's, kit.helm) and the k3sops chart (deploy/helm/k3sops) for the chart's tests."""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from kit.helm import helm_path

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "deploy" / "helm" / "k3sops"


def helm_binary() -> Path:
    """The lab's helm (`k3sops lab build` builds it), as the lab fixture finds its binaries."""
    from k3sops.errors import LabError
    from k3sops.lab.build import installed_binaries
    from k3sops.lab.layout import LabLayout

    try:
        found = installed_binaries(LabLayout.from_env(os.environ, Path.home()), os.environ)
    except LabError as e:  # a failure, not a skip: CI builds the lab's binaries
        pytest.fail(str(e), pytrace=False)
    return helm_path(found)


def helm(*args: str, kubeconfig: Path | None = None, check: bool = True,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run helm with its HOME and caches (kube discovery too) in /tmp/k3sops-helm."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": "/tmp/k3sops-helm",
           "HELM_CACHE_HOME": "/tmp/k3sops-helm/cache",
           "HELM_CONFIG_HOME": "/tmp/k3sops-helm/config",
           "HELM_DATA_HOME": "/tmp/k3sops-helm/data"}
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    result = subprocess.run([str(helm_binary()), *args], capture_output=True, text=True,
                            env=env, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args[:2])} failed: {result.stderr.strip()}")
    return result


def set_args(values: Mapping[str, Any]) -> list[str]:
    """``--set-json KEY=JSON`` for each value (so numbers, lists and maps keep their type)."""
    import json

    return [a for k, v in values.items() for a in ("--set-json", f"{k}={json.dumps(v)}")]


def template(values: Mapping[str, Any], *, release: str = "k3sops", namespace: str = "k3sops",
             extra: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The chart's objects as `helm template` renders them with these values."""
    text = _render(("template", release, str(CHART), "-n", namespace, *set_args(values),
                    *extra))
    return [d for d in yaml.safe_load_all(text) if d]


@functools.cache
def _render(args: tuple[str, ...]) -> str:
    # the tests render the same variants several times: helm runs once per variant
    return helm(*args).stdout


def by_kind(objects: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """The objects of one kind."""
    return [o for o in objects if o["kind"] == kind]


def pod_specs(objects: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``kind/name`` -> the pod spec of every workload (Deployment, CronJob) rendered."""
    out: dict[str, dict[str, Any]] = {}
    for o in objects:
        if o["kind"] == "Deployment":
            out[f"Deployment/{o['metadata']['name']}"] = o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            out[f"CronJob/{o['metadata']['name']}"] = (
                o["spec"]["jobTemplate"]["spec"]["template"]["spec"])
    return out
