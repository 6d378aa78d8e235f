"""The k3sops OCI image for tests and bench: build (cached), inspect, measure, run it.

``cached_image()`` builds the image with ``scripts/build-image.sh`` once per content: the
build's output and the image unpacked as a runtime bundle are kept in
``~/.cache/k3sops/image/test-<key>``, where the key digests uv.lock, pyproject.toml, the
build script and every file under src/ (so a commit that changes none of them reuses the image;
the script's own cache keeps the debootstrapped root and uv's downloads).

``run_in()`` runs a command in an unpacked bundle the way a node would: with crun, read-only
root filesystem, the image's user, environment and working directory. This machine mounts
cgroup v1 controllers plus a cgroup2 hierarchy at /sys/fs/cgroup/unified ("hybrid"), which
crun 1.8 refuses outright ("cgroups in hybrid mode not supported, drop all controllers from
cgroupv2"); ``runtime()`` records that refusal and tries crun again in a private mount
namespace where the cgroup2 mount is unmounted (crun then sees plain cgroup v1; nothing changes
outside that namespace). Only when crun still refuses does it fall back to chroot as the
image's user (no read-only root then), and the result says which way ran and what refused.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tomllib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hosts import file_lock

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "scripts" / "build-image.sh"
CACHE = Path.home() / ".cache" / "k3sops" / "image"
TOOLS = ("debootstrap", "umoci", "skopeo", "crun", "uv", "chroot", "unshare")


def version() -> str:
    """The project's version: the image's tag and its version label."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return str(data["project"]["version"])


def missing_tools() -> list[str]:
    """The tools the image build and run need that this machine lacks."""
    return [t for t in TOOLS if shutil.which(t) is None]


def content_key() -> str:
    """Digest of what the image's behaviour is built from (lock, metadata, script, sources).

    Not README.md: it is only the wheel's long description, and every helper edits it.
    """
    h = hashlib.sha256()
    files = [ROOT / "uv.lock", ROOT / "pyproject.toml", SCRIPT]
    files += sorted(p for p in (ROOT / "src").rglob("*")
                    if p.is_file() and "__pycache__" not in p.parts)
    for p in files:
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class Built:
    """An image on disk: its OCI layout, tag, and the build script's output directory."""

    out: Path
    tag: str
    seconds: float | None = None  # None when it came from the cache

    @property
    def layout(self) -> Path:
        return self.out / "k3sops"

    @property
    def bundle(self) -> Path:
        """The runtime bundle ``cached_image`` unpacked next to the layout."""
        return self.out / "bundle"

    @property
    def ref(self) -> str:
        """The image's transport reference for skopeo (``oci:DIR:TAG``)."""
        return f"oci:{self.layout}:{self.tag}"


def build(out: Path, *extra: str, env: dict[str, str] | None = None,
          timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    """Run scripts/build-image.sh into ``out`` (its stderr holds the progress lines)."""
    return subprocess.run(["bash", str(SCRIPT), "--out", str(out), *extra], env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def cached_image() -> Built:
    """The image of the current sources, built once per content key (older ones removed)."""
    key = content_key()
    out = CACHE / f"test-{key}"
    ready = out / ".ready"
    with file_lock(CACHE / ".test-lock"):
        if not ready.exists():
            for old in CACHE.glob("test-*"):
                shutil.rmtree(old, ignore_errors=True)
            r = build(out)
            if r.returncode != 0:
                raise AssertionError(f"build-image.sh failed ({r.returncode}):\n{r.stderr}")
            # Unpacked once with it: writing 400 MB of files takes 10-60 s on a busy machine.
            unpack(Built(out, version()), out / "bundle")
            ready.touch()
    return Built(out, version())


def inspect(image: Built) -> dict[str, Any]:
    """``skopeo inspect --config``: the image's OCI config (labels, user, entrypoint ...)."""
    r = subprocess.run(["skopeo", "inspect", "--config", image.ref], capture_output=True,
                       text=True, timeout=60, check=True)
    config: dict[str, Any] = json.loads(r.stdout)
    return config


def manifest(image: Built) -> dict[str, Any]:
    """The image's OCI manifest (layers with their compressed sizes)."""
    r = subprocess.run(["skopeo", "inspect", "--raw", image.ref], capture_output=True,
                       text=True, timeout=60, check=True)
    m: dict[str, Any] = json.loads(r.stdout)
    return m


def compressed_size(image: Built) -> int:
    """Bytes a node downloads: the compressed layers and the config."""
    m = manifest(image)
    return int(sum(layer["size"] for layer in m["layers"]) + m["config"]["size"])


def tree_size(path: Path) -> int:
    """Apparent size in bytes of a directory tree (``du -sb``)."""
    r = subprocess.run(["du", "-sb", str(path)], capture_output=True, text=True, timeout=300,
                       check=True)
    return int(r.stdout.split()[0])


def unpack(image: Built, bundle: Path) -> Path:
    """``umoci unpack`` the image into a runtime bundle (config.json + rootfs); return it."""
    subprocess.run(["umoci", "unpack", "--image", f"{image.layout}:{image.tag}", str(bundle)],
                   capture_output=True, text=True, timeout=600, check=True)
    return bundle


@dataclass
class ImageRun:
    """One command run in the image: how it ran, what refused first, what it printed."""

    runtime: str
    proc: subprocess.CompletedProcess[str]
    refused: list[str] = field(default_factory=list)


CRUN = "crun"
CRUN_PRIVATE_NS = "crun in a private mount namespace without the cgroup2 mount"
CHROOT = "chroot as the image's user"


def _configure(bundle: Path, argv: Sequence[str]) -> dict[str, Any]:
    config_path = bundle / "config.json"
    config: dict[str, Any] = json.loads(config_path.read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = list(argv)
    config["root"]["readonly"] = True  # as the chart runs it
    config_path.write_text(json.dumps(config, indent=1))
    return config


def _exec(how: str, bundle: Path, argv: Sequence[str],
          timeout: float) -> subprocess.CompletedProcess[str]:
    config = _configure(bundle, argv)
    if how == CHROOT:
        proc = config["process"]
        user = f"{proc['user']['uid']}:{proc['user']['gid']}"
        return subprocess.run(["chroot", f"--userspec={user}", str(bundle / "rootfs"),
                               "/usr/bin/env", "-i", *proc["env"], "/bin/sh", "-c",
                               'cd "$0" && exec "$@"', proc.get("cwd", "/"), *argv],
                              capture_output=True, text=True, timeout=timeout, check=False)
    cid = f"k3sops-image-{uuid.uuid4().hex[:12]}"
    run = ["crun", "run", "--bundle", str(bundle), cid]
    if how == CRUN_PRIVATE_NS:
        run = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'umount /sys/fs/cgroup/unified && exec "$@"', "sh", *run]
    try:
        return subprocess.run(run, capture_output=True, text=True, timeout=timeout,
                              check=False, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(["crun", "delete", "--force", cid], capture_output=True, check=False)


_chosen: dict[Path, tuple[str, tuple[str, ...]]] = {}


def runtime(bundle: Path) -> tuple[str, tuple[str, ...]]:
    """How this machine runs the bundle, and the exact errors of the ways that refused.

    Each way is probed with ``/bin/true`` in the image (so a failing command under test is
    never mistaken for a refusing runtime); the first that runs it is kept for the bundle.
    """
    if bundle not in _chosen:
        refused: list[str] = []
        how = CHROOT
        for way in (CRUN, CRUN_PRIVATE_NS):
            probe = _exec(way, bundle, ["/bin/true"], timeout=60)
            if probe.returncode == 0:
                how = way
                break
            refused.append(f"{way}: exit {probe.returncode}: {probe.stderr.strip()}")
        _chosen[bundle] = (how, tuple(refused))
    return _chosen[bundle]


def run_in(bundle: Path, argv: Sequence[str], timeout: float = 120) -> ImageRun:
    """Run ``argv`` (absolute program path first) in the unpacked image, as a node would."""
    how, refused = runtime(bundle)
    return ImageRun(how, _exec(how, bundle, argv, timeout), list(refused))
