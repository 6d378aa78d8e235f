"""The k3sops OCI image (issue 16): built by scripts/build-image.sh, inspected, run.

Needs no lab cluster, but root, debootstrap, umoci, skopeo and crun (scripts/install-deps.sh)
and, on a cold cache, the Debian and PyPI archives: marked ``lab`` so that unit runs skip it.
The image is built once per content (uv.lock, pyproject.toml, the script, src/: see
``kit.image.cached_image``); the first build on a machine takes 2-5 minutes (debootstrap and
downloads; bench/image_build.py), a rebuild with the script's caches warm 20-80 s with the
unpacking, a reuse a few seconds.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from kit import image as img
from packaging.markers import Marker
from packaging.utils import canonicalize_name

pytestmark = pytest.mark.lab

LABELS = ("title", "version", "revision", "created", "source", "licenses", "description")


@pytest.fixture(scope="module")
def built() -> img.Built:
    if os.geteuid() != 0:
        pytest.fail("the image build needs root (debootstrap, chroot)")
    if missing := img.missing_tools():
        pytest.fail(f"missing {', '.join(missing)}: run scripts/install-deps.sh")
    return img.cached_image()


@pytest.fixture(scope="module")
def bundle(built: img.Built) -> Path:
    return built.bundle


def _git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(img.ROOT), *args], capture_output=True, text=True,
                          timeout=60, check=False)


def _locked_runtime_packages() -> dict[str, str]:
    """uv.lock's run-time packages (no dev group) that apply on this platform: name -> version."""
    r = subprocess.run(["uv", "export", "--frozen", "--no-dev", "--no-hashes", "--no-header",
                        "--no-emit-project", "--format", "requirements-txt"], cwd=img.ROOT,
                       capture_output=True, text=True, timeout=120, check=True)
    out: dict[str, str] = {}
    for raw in r.stdout.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        req, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue  # e.g. colorama on Windows only
        name, _, ver = req.strip().partition("==")
        out[canonicalize_name(name.split("[")[0])] = ver.strip()
    return out


def test_inspect_shows_labels_user_and_entrypoint(built: img.Built) -> None:
    config = img.inspect(built)["config"]
    labels = config["Labels"]
    assert {f"org.opencontainers.image.{k}" for k in LABELS} <= set(labels)
    assert labels["org.opencontainers.image.title"] == "k3sops"
    assert labels["org.opencontainers.image.version"] == img.version() == built.tag
    # The image may come from the cache, built at an earlier commit: that commit must exist and,
    # unless the label says -dirty, hold exactly the sources of this checkout.
    revision = labels["org.opencontainers.image.revision"]
    commit = revision.removesuffix("-dirty")
    assert _git("cat-file", "-e", f"{commit}^{{commit}}").returncode == 0, revision
    if commit == revision:
        assert _git("diff", "--quiet", commit, "--", "src", "pyproject.toml",
                    "uv.lock").returncode == 0, f"{revision} is not these sources"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/opt/k3sops/bin/k3sops"]
    env = dict(e.split("=", 1) for e in config["Env"])
    assert env["HOME"] == config["WorkingDir"] == "/home/k3sops"
    assert env["K3SOPS_STATE_DIR"] == "/var/lib/k3sops"


def test_package_list_is_the_locked_runtime_set(built: img.Built, bundle: Path) -> None:
    inside = (bundle / "rootfs/usr/share/k3sops/packages.txt").read_text()
    assert (built.out / "packages.txt").read_text() == inside
    listed = {canonicalize_name(n): v for n, _, v in
              (line.partition("==") for line in inside.splitlines())}
    assert listed.pop("k3sops") == img.version()
    assert listed == _locked_runtime_packages()
    assert "pytest" not in listed and "mypy" not in listed  # no dev group


def test_image_runs_k3sops_as_its_user(built: img.Built, bundle: Path) -> None:
    entry = img.inspect(built)["config"]["Entrypoint"]
    ran = img.run_in(bundle, [*entry, "--version"])
    print(f"runtime: {ran.runtime}; refused first: {ran.refused}")
    assert ran.proc.returncode == 0, ran.proc.stderr
    assert ran.proc.stdout.strip() == f"k3sops {img.version()}"
    helped = img.run_in(bundle, [*entry, "check", "--help"])
    assert helped.proc.returncode == 0, helped.proc.stderr
    assert "Usage: k3sops check" in helped.proc.stdout
    who = img.run_in(bundle, ["/usr/bin/id", "-u"])
    assert who.proc.stdout.strip() == "65532"
    # Not the build machine's interpreter: the root's own Debian python3.11.
    py = img.run_in(bundle, ["/opt/k3sops/bin/python", "-c",
                             "import sys, k3sops; print(sys.base_prefix, k3sops.__file__)"])
    assert py.proc.stdout.split() == [
        "/usr", "/opt/k3sops/lib/python3.11/site-packages/k3sops/__init__.py"], py.proc.stderr


def test_image_does_real_work_with_its_compiled_packages(built: img.Built, bundle: Path) -> None:
    """Beyond --help: the rules the chart ships rendered in the image, and every package with
    compiled code (manylinux wheels on Debian's glibc) imported by the root's python."""
    entry = img.inspect(built)["config"]["Entrypoint"]
    rendered = img.run_in(bundle, [*entry, "alerts", "render", "--format", "prometheusrule"])
    assert rendered.proc.returncode == 0, rendered.proc.stderr
    docs = [d for d in yaml.safe_load_all(rendered.proc.stdout) if d]
    assert docs and {d["kind"] for d in docs} == {"PrometheusRule"}
    assert all(d["spec"]["groups"] for d in docs)
    native = img.run_in(bundle, [
        "/opt/k3sops/bin/python", "-c",
        "import psycopg, cryptography.hazmat.bindings._rust, pydantic_core, yaml, ruamel.yaml;"
        "print(psycopg.pq.__impl__, yaml.__with_libyaml__)"])
    assert native.proc.stdout.split() == ["binary", "True"], native.proc.stderr


def test_writable_paths_belong_to_the_image_user(bundle: Path) -> None:
    rootfs = bundle / "rootfs"
    for path in ("var/lib/k3sops", "home/k3sops"):
        assert (rootfs / path).stat().st_uid == 65532, path
    assert (rootfs / "tmp").stat().st_mode & 0o1777 == 0o1777


def test_bytecode_is_used_not_stale(bundle: Path) -> None:
    """The root is read-only under the chart: a .pyc that Python finds stale is recompiled on
    every start (in memory, not written). Layers keep whole-second mtimes, so the image holds
    unchecked-hash .pyc, which no mtime can invalidate."""
    r = img.run_in(bundle, ["/opt/k3sops/bin/python", "-v", "-c",
                            "import k3sops.cli.tree, k3sops.services.check, k3sops.serve.app"])
    assert r.proc.returncode == 0, r.proc.stderr[-2000:]
    stale = [line for line in r.proc.stderr.splitlines() if "bytecode is stale" in line]
    loaded = [line for line in r.proc.stderr.splitlines()
              if line.startswith("# code object from '/opt/k3sops/")]
    assert not stale, stale[:5]
    assert len(loaded) > 300
