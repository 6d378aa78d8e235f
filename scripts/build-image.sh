#!/usr/bin/env bash
# Build the k3sops OCI image from this checkout, with no base image pulled from anywhere:
#   1. a debootstrapped Debian bookworm minbase root (python3, ca-certificates, git, restic),
#      cached by its package list in $CACHE/base-<hash>;
#   2. k3sops' wheel (built here) and its locked run-time dependencies (uv.lock, no dev group,
#      hashes checked) installed into a virtualenv /opt/k3sops made by the root's own python3,
#      inside a chroot; bytecode compiled as unchecked-hash .pyc (the root filesystem is
#      read-only in the chart, and mtime-checked .pyc go stale when a layer rounds mtimes);
#   3. a non-root user k3sops (65532:65532), /usr/share/k3sops/{packages,debian-packages}.txt;
#   4. assembled with umoci into an OCI layout OUT/k3sops, tag VERSION (pyproject's version).
# Needs root (debootstrap and chroot), debootstrap, umoci, uv, python3; skopeo for --archive.
# Usage: scripts/build-image.sh [--out DIR] [--tag TAG] [--archive oci|docker] [--cache DIR]
#                               [--source URL] [--extra-packages a,b] [--rebuild-base]
#   (defaults: --out dist/image, --tag the version, --cache ~/.cache/k3sops/image)
# Exit codes: 0 built; 1 a step failed (its output is shown); 2 bad usage or a missing tool.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

die() { echo "build-image: error: $1" >&2; exit "${2:-1}"; }
say() { echo "build-image: $*" >&2; }

OUT=$REPO/dist/image
CACHE=${K3SOPS_IMAGE_CACHE:-$HOME/.cache/k3sops/image}
TAG=""
ARCHIVE=""
SOURCE=""
EXTRA=""
REBUILD_BASE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --tag) TAG=${2:?--tag needs a value}; shift 2 ;;
    --archive) ARCHIVE=${2:?--archive needs oci or docker}; shift 2 ;;
    --cache) CACHE=${2:?--cache needs a directory}; shift 2 ;;
    --source) SOURCE=${2:?--source needs a URL}; shift 2 ;;
    --extra-packages) EXTRA=${2:?--extra-packages needs a comma-separated list}; shift 2 ;;
    --rebuild-base) REBUILD_BASE=1; shift ;;
    -h|--help) awk 'NR > 1 && !/^#/ {exit} NR > 1 {sub(/^# ?/, ""); print}' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" 2 ;;
  esac
done
case "$ARCHIVE" in ""|oci|docker) ;; *) die "--archive must be oci or docker, not '$ARCHIVE'" 2 ;; esac
[ -z "$TAG" ] || [[ "$TAG" =~ ^[A-Za-z0-9_][A-Za-z0-9._-]{0,127}$ ]] || die "--tag '$TAG' is not a valid tag" 2
[[ "$EXTRA" =~ ^[a-z0-9.+,-]*$ ]] || die "--extra-packages: Debian package names, comma-separated" 2

[ "$(id -u)" = 0 ] || die "must run as root: debootstrap and chroot need it (try: sudo $0)" 2
for tool in debootstrap umoci uv python3 chroot git flock; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "'$tool' not found: run scripts/install-deps.sh (it installs umoci, skopeo, crun)" 2
done
if [ -n "$ARCHIVE" ]; then
  command -v skopeo >/dev/null 2>&1 || die "--archive needs skopeo: run scripts/install-deps.sh" 2
fi
[ -f uv.lock ] || die "no uv.lock in $REPO: the image installs the locked dependencies" 2

VERSION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
TAG=${TAG:-$VERSION}
REVISION=$(git rev-parse HEAD 2>/dev/null) || die "$REPO is not a git checkout: the image's revision label needs the commit" 2
# An image built from uncommitted files says so in its revision label.
if [ -n "$(git status --porcelain -- src pyproject.toml uv.lock)" ]; then REVISION="$REVISION-dirty"; fi
if [ -z "$SOURCE" ]; then
  SOURCE=$(git remote get-url origin 2>/dev/null || echo "k3sops git repository, commit ${REVISION}")
fi
CREATED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
DESCRIPTION=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["description"])')
LICENSE=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["license"])')

# --- 1. the base root, cached by its package list --------------------------------------------
PACKAGES="python3,ca-certificates,git,restic${EXTRA:+,$EXTRA}"
KEY=$(printf 'bookworm minbase %s\n' "$PACKAGES" | sha256sum | cut -c1-12)
BASE=$CACHE/base-$KEY
mkdir -p "$CACHE"
# One build at a time per cache: they share the base root, uv's cache and the work directory.
exec 9>"$CACHE/.lock"
flock -w 1800 9 || die "another build-image.sh holds $CACHE/.lock"
if [ "$REBUILD_BASE" = 1 ]; then rm -rf "$BASE"; fi
if [ ! -e "$BASE/.k3sops-ready" ]; then
  say "debootstrap bookworm minbase + $PACKAGES into $BASE (once; a few minutes)"
  rm -rf "$BASE.tmp"
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$BASE.tmp" \
    >"$CACHE/debootstrap.log" 2>&1 ||
    { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
  # Nothing an image needs: package lists, downloaded .debs, logs, manuals.
  rm -rf "$BASE.tmp"/var/lib/apt/lists/* "$BASE.tmp"/var/cache/apt/* "$BASE.tmp"/var/log/* \
    "$BASE.tmp"/usr/share/man/* "$BASE.tmp"/usr/share/info/* "$BASE.tmp"/debootstrap
  touch "$BASE.tmp/.k3sops-ready"
  mv "$BASE.tmp" "$BASE"
fi

# --- 2. the virtualenv, in a copy of the base --------------------------------------------------
WORK=$CACHE/work
ROOTFS=$WORK/rootfs
STAGE=/tmp/k3sops-build        # inside the chroot
rm -rf "$WORK"
mkdir -p "$WORK"
say "copying the base root"
cp -a "$BASE" "$ROOTFS"
rm -f "$ROOTFS/.k3sops-ready"
mkdir -p "$ROOTFS$STAGE" "$CACHE/uv-cache"
# uv's download cache lives outside the root between builds; moved in for the install (a
# rename, no copy and no mount) and moved back out whatever happens.
restore_cache() {
  if [ -d "$ROOTFS$STAGE/uv-cache" ]; then
    rm -rf "$CACHE/uv-cache" && mv "$ROOTFS$STAGE/uv-cache" "$CACHE/uv-cache"
  fi
}
trap restore_cache EXIT
mv "$CACHE/uv-cache" "$ROOTFS$STAGE/uv-cache"

say "building the k3sops wheel and the locked requirements"
uv build --quiet --wheel --out-dir "$WORK/wheel" >/dev/null 2>"$WORK/uv-build.log" ||
  { cat "$WORK/uv-build.log" >&2; die "uv build failed"; }
WHEEL=$(ls "$WORK"/wheel/k3sops-*.whl)
cp "$WHEEL" "$ROOTFS$STAGE/"
uv export --quiet --frozen --no-dev --no-emit-project --no-header --format requirements-txt \
  >"$ROOTFS$STAGE/requirements.txt" || die "uv export failed: is uv.lock up to date with pyproject.toml?"
# The chroot needs uv's binary itself: pyenv's `uv` on PATH is a shell shim.
UV_BIN=$(command -v uv)
is_elf() { [ -f "$1" ] && [ "$(head -c4 "$1" | od -An -c | tr -d ' ')" = '177ELF' ]; }
is_elf "$UV_BIN" || UV_BIN=$(pyenv which uv 2>/dev/null || true)
is_elf "$UV_BIN" || die "no uv binary the chroot can run (found $(command -v uv), a script)" 2
cp "$UV_BIN" "$ROOTFS$STAGE/uv"
cp -L /etc/resolv.conf "$ROOTFS/etc/resolv.conf"
# Downloads trust what this machine trusts (it may sit behind a TLS-inspecting proxy); the
# image keeps Debian's own CA set.
HOST_CA=${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}
[ -f "$HOST_CA" ] || die "no CA bundle at $HOST_CA (set SSL_CERT_FILE)" 2
cp -L "$HOST_CA" "$ROOTFS$STAGE/ca.crt"

say "installing $(grep -c '==' "$ROOTFS$STAGE/requirements.txt") locked packages into /opt/k3sops (chroot)"
chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root LANG=C.UTF-8 \
  UV_CACHE_DIR=$STAGE/uv-cache UV_LINK_MODE=copy UV_NO_PROGRESS=1 \
  SSL_CERT_FILE=$STAGE/ca.crt /bin/sh -ec "
    python3 -m venv --without-pip /opt/k3sops
    $STAGE/uv pip install --quiet --python /opt/k3sops/bin/python --require-hashes --no-deps \
      -r $STAGE/requirements.txt
    $STAGE/uv pip install --quiet --python /opt/k3sops/bin/python --no-deps \
      $STAGE/$(basename "$WHEEL")
    /opt/k3sops/bin/python -m compileall -q -j0 --invalidation-mode unchecked-hash /opt/k3sops
  " >"$WORK/install.log" 2>&1 || { tail -30 "$WORK/install.log" >&2; die "installing into the root failed"; }
restore_cache
trap - EXIT
rm -rf "${ROOTFS:?}$STAGE"
# Runtimes supply their own resolv.conf; leave none of the build machine's behind.
: >"$ROOTFS/etc/resolv.conf"

# --- 3. user, writable paths, package lists ----------------------------------------------------
chroot "$ROOTFS" /bin/sh -ec '
  groupadd -K GID_MAX=65532 -g 65532 k3sops
  useradd -K UID_MAX=65532 -u 65532 -g 65532 -d /home/k3sops -m -s /usr/sbin/nologin k3sops
  install -d -o 65532 -g 65532 -m 0750 /var/lib/k3sops
  install -d -m 0755 /usr/share/k3sops
' || die "creating the k3sops user failed"
chroot "$ROOTFS" /opt/k3sops/bin/python -c '
import importlib.metadata as m
for d in sorted(m.distributions(), key=lambda d: d.metadata["Name"].lower()):
    name = d.metadata["Name"]
    print(f"{name}=={d.version}")
' >"$ROOTFS/usr/share/k3sops/packages.txt" || die "listing the Python packages failed"
chroot "$ROOTFS" dpkg-query -W -f '${Package}=${Version}\n' \
  >"$ROOTFS/usr/share/k3sops/debian-packages.txt" || die "listing the Debian packages failed"
grep -qx "k3sops==$VERSION" "$ROOTFS/usr/share/k3sops/packages.txt" ||
  die "k3sops $VERSION is not in the image's virtualenv (see $WORK/install.log)"
# Not needed at run time: translations (the image runs in C.UTF-8) and documentation other than
# the packages' copyright files (kept: they carry the licences).
rm -rf "$ROOTFS"/var/log/* "$ROOTFS"/var/cache/debconf/*-old "$ROOTFS"/root/.cache \
  "$ROOTFS"/usr/share/locale/*
find "$ROOTFS/usr/share/doc" -type f ! -name copyright -delete
find "$ROOTFS/usr/share/doc" -depth -type d -empty -delete

# --- 4. the OCI image --------------------------------------------------------------------------
LAYOUT=$OUT/k3sops
mkdir -p "$OUT"
# An archive of an earlier build would sit beside this image as if it were this one.
rm -rf "$LAYOUT" "$OUT/k3sops-$TAG.oci.tar" "$OUT/k3sops-$TAG.docker.tar"
say "assembling $LAYOUT:$TAG with umoci"
umoci init --layout "$LAYOUT"
umoci new --image "$LAYOUT:$TAG"
umoci insert --image "$LAYOUT:$TAG" --history.created "$CREATED" \
  --history.created_by "scripts/build-image.sh (debootstrap bookworm minbase + k3sops $VERSION)" \
  "$ROOTFS" / || die "umoci insert failed"
label() { printf -- '--config.label=org.opencontainers.image.%s=%s\n' "$1" "$2"; }
mapfile -t LABELS < <(
  label title k3sops; label version "$VERSION"; label revision "$REVISION"
  label created "$CREATED"; label source "$SOURCE"; label licenses "$LICENSE"
  label description "$DESCRIPTION")
umoci config --image "$LAYOUT:$TAG" --no-history --created "$CREATED" \
  --architecture amd64 --os linux \
  --config.user 65532:65532 --config.workingdir /home/k3sops \
  --config.entrypoint /opt/k3sops/bin/k3sops --config.cmd --help \
  --config.env PATH=/opt/k3sops/bin:/usr/local/bin:/usr/bin:/bin \
  --config.env HOME=/home/k3sops --config.env K3SOPS_STATE_DIR=/var/lib/k3sops \
  --config.env LANG=C.UTF-8 --config.env PYTHONDONTWRITEBYTECODE=1 \
  --config.env PYTHONUNBUFFERED=1 \
  "${LABELS[@]}" \
  --manifest.annotation "org.opencontainers.image.version=$VERSION" \
  --manifest.annotation "org.opencontainers.image.revision=$REVISION" ||
  die "umoci config failed"
umoci gc --layout "$LAYOUT"
cp "$ROOTFS/usr/share/k3sops/packages.txt" "$OUT/packages.txt"
cp "$ROOTFS/usr/share/k3sops/debian-packages.txt" "$OUT/debian-packages.txt"

case "$ARCHIVE" in
  oci) skopeo copy --quiet "oci:$LAYOUT:$TAG" "oci-archive:$OUT/k3sops-$TAG.oci.tar:k3sops:$TAG" ;;
  docker) skopeo copy --quiet "oci:$LAYOUT:$TAG" "docker-archive:$OUT/k3sops-$TAG.docker.tar:k3sops:$TAG" ;;
esac
rm -rf "$WORK"
say "built oci:$LAYOUT:$TAG ($(du -sh "$LAYOUT/blobs" | cut -f1) compressed; Python packages: $OUT/packages.txt)"
echo "oci:$LAYOUT:$TAG"
