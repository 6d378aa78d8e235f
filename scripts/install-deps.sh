#!/usr/bin/env bash
# Install everything k3sops and its lab need on a fresh Debian 12 machine (idempotent, as root):
# Debian packages (Prometheus, Alertmanager, node-exporter, PostgreSQL, restic, etcd fallback,
# Chromium for the console's browser tests, umoci/skopeo/crun for the OCI image),
# uv and the locked Python environment in .venv. Go itself must already be installed (1.24+).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$1" ]; }
have /usr/bin/prometheus || need+=(prometheus)
have /usr/bin/prometheus-alertmanager || need+=(prometheus-alertmanager)
have /usr/bin/prometheus-node-exporter || need+=(prometheus-node-exporter)
ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || need+=(postgresql)
have /usr/bin/restic || need+=(restic)
have /usr/bin/etcd || need+=(etcd-server)
have git || need+=(git)
# Test hosts for the Ansible playbooks: a debootstrapped root per host running sshd.
have /usr/sbin/sshd || need+=(openssh-server)
have /usr/sbin/debootstrap || need+=(debootstrap)
# The web console's browser tests: Playwright (a dev package) drives Debian's Chromium, as
# it cannot download its own browser here.
have /usr/bin/chromium || need+=(chromium)
# The OCI image (scripts/build-image.sh): assembled by umoci from a debootstrapped root,
# inspected with skopeo, run with crun.
have /usr/bin/umoci || need+=(umoci)
have /usr/bin/skopeo || need+=(skopeo)
have /usr/bin/crun || need+=(crun)

if [ ${#need[@]} -gt 0 ]; then
  echo "install-deps: apt-get install ${need[*]}" >&2
  # Debian starts packaged services on install; the lab runs its own copies on other ports,
  # so keep the packaged ones from starting (policy-rc.d exit 101 = "do not start").
  added_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$added_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
fi

if ! command -v go >/dev/null 2>&1; then
  echo "install-deps: Go is not installed; the lab builds its binaries with Go 1.24+" >&2
  exit 1
fi

if ! command -v uv >/dev/null 2>&1; then
  python3 -m pip install --quiet --disable-pip-version-check uv
fi
uv sync --frozen --quiet
echo "install-deps: done (.venv ready)" >&2
