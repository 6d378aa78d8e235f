"""The lab's helm (built by `k3sops lab build` from helm.sh/helm/v4, like kube-apiserver)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest


def helm_path(binaries: Mapping[str, Path]) -> Path:
    """The helm binary among the lab's binaries (``lab.binaries``, from installed_binaries).

    Fails the test (not a skip: CI builds helm) when it is missing or not executable.
    """
    path = binaries.get("helm")
    if path is None or not path.is_file():
        pytest.fail("helm is not among the lab's binaries: run `k3sops lab build` (it builds "
                    "helm from lab/go/helm and caches it by version)", pytrace=False)
    return path
