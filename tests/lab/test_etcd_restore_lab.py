"""K3s etcd snapshots over SSH and `backup restore --etcd` (cluster reset) run by Ansible.

Real: the test hosts (network namespaces with their own Debian root and sshd, tests/hosts.py),
Ansible (ansible-runner, the packaged etcd-restore.yml), restic, and an etcd snapshot taken
from the lab's real etcd with etcdctl. Stand-ins: the k3s binary cannot run here and the test
hosts have no systemd, so each host gets a stand-in ``k3s`` (``server --cluster-reset
--cluster-reset-restore-path=P`` checks the snapshot exists, refuses while "running", moves
the old db aside and records the restored file's sha256) and a stand-in ``systemctl``
(``stop``/``start k3s`` flip a running marker); both log every call with a timestamp, from
which the test reads the order across hosts. ``k3s etcd-snapshot save --name N`` of the
stand-in copies a REAL snapshot of the lab's etcd (uploaded by the test) to
``<data-dir>/server/db/snapshots/N-<node>-<unix time>`` as K3s names it, and ``ls -o json``
prints the records in K3s' own JSON shape, so what k3sops fetches and stores is a real etcd
snapshot that etcdutl can read.

The backup's "verified" mark is a verification record written with the backup core's tag
scheme (the verify command itself belongs to the backup core and is tested there).
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from kit.backup import backup_context

from conftest import Lab
from hosts import HostPool, TestHost
from k3sops.adapters.audit import AuditLog
from k3sops.domain import backups
from k3sops.errors import PlanRejected, Unreachable
from k3sops.services import context
from k3sops.services.backup import etcd as k3s_snapshot
from k3sops.services.backup import etcd_restore as svc
from k3sops.services.backup.context import VERIFICATION_FILE, BackupContext
from k3sops.services.backup.etcd import backup_etcd
from k3sops.services.backup.repository import find
from k3sops.services.backup.verify import verify

pytestmark = pytest.mark.lab

LOG = "/var/log/k3sops-standin.log"
DATA = "/var/lib/rancher/k3s"
STATE = "/var/lib/k3sops-standin"

SYSTEMCTL = f"""#!/bin/sh
# stand-in for systemctl (no systemd in the test hosts): logs, flips a running marker
echo "$(date +%s.%N) systemctl $*" >> {LOG}
mkdir -p {STATE}
case "$1" in
  stop) rm -f {STATE}/running ;;
  start) touch {STATE}/running ;;
esac
"""

K3S = f"""#!/bin/sh
# stand-in for k3s (the binary cannot run here)
echo "$(date +%s.%N) k3s $*" >> {LOG}
data={DATA}
path=""
for a in "$@"; do
  case "$a" in
    --data-dir=*) data="${{a#--data-dir=}}" ;;
    --cluster-reset-restore-path=*) path="${{a#--cluster-reset-restore-path=}}" ;;
  esac
done
if [ "$1" = etcd-snapshot ] && [ "$2" = save ]; then
  [ "$3" = --name ] || {{ echo "usage: save --name NAME" >&2; exit 2; }}
  mkdir -p "$data/server/db/snapshots"
  out="$data/server/db/snapshots/$4-$(hostname)-$(date +%s)"
  cp /opt/k3sops-standin/etcd.db "$out" && echo "Snapshot $(basename "$out") saved." >&2
  exit $?
fi
if [ "$1" = etcd-snapshot ] && [ "$2" = ls ]; then
  sep=""
  printf '{{'
  for f in "$data"/server/db/snapshots/*; do
    [ -f "$f" ] || continue
    n=$(basename "$f")
    printf '%s"local-%s":{{"name":"%s","location":"file://%s","nodeName":"%s",' \
      "$sep" "$n" "$n" "$f" "$(hostname)"
    printf '"createdAt":"2026-11-26T13:00:00Z","size":%s,"status":"successful",' \
      "$(stat -c %s "$f")"
    printf '"compressed":false}}'
    sep=","
  done
  printf '}}\n'
  exit 0
fi
if [ "$1" = server ] && [ "$2" = --cluster-reset ]; then
  [ -f {STATE}/running ] && {{ echo "k3s is still running" >&2; exit 1; }}
  [ -s "$path" ] || {{ echo "snapshot $path not found" >&2; exit 1; }}
  [ -d "$data/server/db/etcd" ] && mv "$data/server/db/etcd" "$data/server/db/etcd-old-1"
  mkdir -p "$data/server/db/etcd"
  sha256sum "$path" | cut -d' ' -f1 > "$data/server/db/etcd/restored-from.sha256"
  echo "Managed etcd cluster membership has been reset, restart without --cluster-reset now."
  exit 0
fi
exit 0
"""


def _prepare(host: TestHost, *, token: bool = True) -> None:
    # Over SSH, not into the overlay's upper dir: a mounted overlay may not see such writes.
    for path, text in (("/usr/local/bin/systemctl", SYSTEMCTL), ("/usr/local/bin/k3s", K3S)):
        r = host.run(f"cat > {path} <<'K3SOPS_EOF'\n{text}K3SOPS_EOF\nchmod 755 {path}")
        assert r.returncode == 0, r.stderr
    r = host.run(f"mkdir -p {DATA}/server/db/etcd/member {STATE} && touch {STATE}/running "
                 f"&& echo old > {DATA}/server/db/etcd/member/old"
                 + (f" && echo 'K10abc::server:s3cr3t' > {DATA}/server/token "
                    f"&& chmod 600 {DATA}/server/token" if token else ""))
    assert r.returncode == 0, r.stderr


def _calls(host: TestHost) -> list[tuple[float, str, str]]:
    text = host.read(LOG) or ""
    out = []
    for line in text.splitlines():
        ts, _, rest = line.partition(" ")
        out.append((float(ts), host.name, rest))
    return out


def _lab_snapshot(lab: Lab, path: Path) -> Path:
    etcdctl = lab.binaries["etcd"].parent / "etcdctl"
    subprocess.run([str(etcdctl), f"--endpoints={lab.layout.url('etcd')}", "snapshot", "save",
                    str(path)], check=True, capture_output=True, timeout=60)
    return path


EtcdBackup = tuple[BackupContext, str, str]


@pytest.fixture
def etcd_backup(lab: Lab, tmp_path: Path) -> EtcdBackup:
    """A Completed etcd backup of the lab's real etcd (through the backup core's etcd path)."""
    ctx = backup_context(lab, tmp_path)
    done = backup_etcd(ctx, snapshot_file=_lab_snapshot(lab, tmp_path / "etcd.db"))
    m = done.manifest
    assert m.status == "Completed" and m.sha256
    return ctx, m.id, m.sha256


def _verify(ctx: BackupContext, backup_id: str, ok: bool) -> None:
    """ok: the backup core's real verify (restic check, sha256, a scratch-etcd drill);
    not ok: a failed verification record, as a failed verify leaves one."""
    if ok:
        report = verify(ctx, backup_id)
        assert [r.ok for r in report.records] == [True], report
        return
    entry = find(ctx, backup_id)
    record = backups.VerificationRecord(backup_id=backup_id, at=dt.datetime.now(dt.UTC),
                                        ok=False)
    ctx.restic.backup_bytes(record.model_dump_json().encode(), VERIFICATION_FILE,
                            backups.verification_tags(record, entry))


def _inventory(pool: HostPool, hosts: list[TestHost], tmp_path: Path) -> Path:
    return pool.inventory(tmp_path / "hosts.yaml", servers=hosts)


def test_restore_runs_in_order_across_three_servers(test_hosts: HostPool, etcd_backup: EtcdBackup,
                                                    tmp_path: Path) -> None:
    ctx, bid, sha = etcd_backup
    _verify(ctx, bid, ok=True)
    hosts = test_hosts.hosts(3)
    for h in hosts:
        _prepare(h)
    inv = _inventory(test_hosts, hosts, tmp_path)
    audit = AuditLog(ctx.state / "audit.jsonl")

    plan = svc.restore(ctx, bid, inv, yes=False)
    assert plan.plan.ok, [c for c in plan.plan.preflight if not c.ok]
    assert not plan.applied
    assert [c.check for c in plan.plan.preflight if c.host == "host2"] == [
        "reachable", "token", "k3s-binary"]
    assert all(not _calls(h) for h in hosts), "a dry run touched a server"
    assert audit.read() == []

    report = svc.restore(ctx, bid, inv, yes=True)
    assert [o.result for o in report.steps] == ["ok"] * 10
    calls = sorted(c for h in hosts for c in _calls(h))
    seq = [(host, what.split(" --cluster-reset-restore-path")[0]) for _, host, what in calls]
    stops = [i for i, (_, w) in enumerate(seq) if w == "systemctl stop k3s"]
    reset = seq.index(("host1", "k3s server --cluster-reset"))
    starts = [(h, i) for i, (h, w) in enumerate(seq) if w == "systemctl start k3s"]
    assert len(stops) == 3 and max(stops) < reset
    assert next(h for h, _ in starts) == "host1" and {h for h, _ in starts} == {
        "host1", "host2", "host3"}
    assert min(i for _, i in starts) > reset
    # files: the snapshot on host1 with the manifest's sha256, restored; others' db removed
    restored = hosts[0].read(f"{DATA}/server/db/etcd/restored-from.sha256")
    assert restored is not None and restored.strip() == sha
    assert hosts[0].read(f"{DATA}/server/db/etcd-old-1/member/old") == "old\n"
    assert hosts[0].stat(report.plan.restore_path) == ("600", "root:root")
    for h in hosts[1:]:
        assert h.stat(f"{DATA}/server/db") is None
        assert h.read(f"{DATA}/server/token") is not None  # the token stays
    actions = [(r["what"]["action"], r["what"]["target"], r["result"]) for r in audit.read()]
    assert actions[0] == ("etcd-copy-snapshot", "host1", "ok")
    assert actions[4] == ("etcd-cluster-reset", "host1", "ok")
    assert "s3cr3t" not in audit.path.read_text()


def _nothing_changed(hosts: list[TestHost]) -> None:
    for h in hosts:
        assert _calls(h) == [], f"{h.name} was touched"
        assert h.read(f"{DATA}/server/db/etcd/member/old") == "old\n"
        assert h.stat(f"{DATA}/server/db/restore") is None


def test_missing_token_is_refused_before_anything(test_hosts: HostPool, etcd_backup: EtcdBackup,
                                                  tmp_path: Path) -> None:
    ctx, bid, _ = etcd_backup
    _verify(ctx, bid, ok=True)
    hosts = test_hosts.hosts(3)
    for h in hosts:
        _prepare(h, token=h.name != "host2")
    with pytest.raises(PlanRejected, match=r"token@host2") as e:
        svc.restore(ctx, bid, _inventory(test_hosts, hosts, tmp_path), yes=True)
    assert "nothing was changed" in str(e.value)
    _nothing_changed(hosts)


@pytest.mark.parametrize("verified", [None, False])
def test_unverified_snapshot_is_refused(test_hosts: HostPool, etcd_backup: EtcdBackup,
                                        tmp_path: Path, verified: bool | None) -> None:
    ctx, bid, _ = etcd_backup
    if verified is not None:
        _verify(ctx, bid, ok=verified)
    hosts = test_hosts.hosts(2)
    for h in hosts:
        _prepare(h)
    with pytest.raises(PlanRejected, match="snapshot-verified"):
        svc.restore(ctx, bid, _inventory(test_hosts, hosts, tmp_path), yes=True)
    _nothing_changed(hosts)


def test_unreachable_server_is_refused(test_hosts: HostPool, etcd_backup: EtcdBackup,
                                       tmp_path: Path) -> None:
    ctx, bid, _ = etcd_backup
    _verify(ctx, bid, ok=True)
    hosts = test_hosts.hosts(3)
    for h in hosts:
        _prepare(h)
    test_hosts.stop(hosts[2])
    try:
        with pytest.raises(PlanRejected, match="reachable@host3"):
            svc.restore(ctx, bid, _inventory(test_hosts, hosts, tmp_path), yes=True)
    finally:
        test_hosts.start(hosts[2])
    _nothing_changed(hosts)


def _upload(pool: HostPool, host: TestHost, local: Path, remote: str) -> None:
    assert host.run(f"mkdir -p {Path(remote).parent}").returncode == 0
    subprocess.run(["scp", *pool.ssh_options(), str(local), f"root@{host.address}:{remote}"],
                   check=True, capture_output=True, timeout=60)


def test_k3s_snapshot_is_fetched_stored_and_restorable(lab: Lab, test_hosts: HostPool,
                                                       tmp_path: Path) -> None:
    """save on a server over SSH -> fetched -> restic (Completed) -> a real etcd snapshot."""
    hosts = test_hosts.hosts(2)
    real = _lab_snapshot(lab, tmp_path / "lab.db")
    for h in hosts:
        _prepare(h)
        _upload(test_hosts, h, real, "/opt/k3sops-standin/etcd.db")
    inv = _inventory(test_hosts, hosts, tmp_path)
    ctx = backup_context(lab, tmp_path)
    # An older snapshot as K3s' controller records it, to be listed beside the new one.
    old = {"apiVersion": "k3s.cattle.io/v1", "kind": "ETCDSnapshotFile",
           "metadata": {"name": "local-etcd-snapshot-host1-1795600000-0a1b2c",
                        "labels": {"etcd.k3s.cattle.io/snapshot-storage-node": "host1"}},
           "spec": {"snapshotName": "etcd-snapshot-host1-1795600000", "nodeName": "host1",
                    "location": "file:///var/lib/rancher/k3s/server/db/snapshots/"
                                "etcd-snapshot-host1-1795600000", "metadata": {}},
           "status": {"creationTime": "2026-11-25T12:00:00Z", "readyToUse": True,
                      "size": "2048"}}
    settings = context.Settings(kubeconfig=lab.layout.kubeconfig, context=None, platform=None)
    objects = context.kube(settings, {}, Path.home())
    lab.kubectl("apply", "-f", "-", input=json.dumps(old))
    try:
        result = k3s_snapshot.backup_k3s(ctx, inv, objects=objects)
    finally:
        lab.kubectl("delete", "etcdsnapshotfiles.k3s.cattle.io", old["metadata"]["name"],
                    "--ignore-not-found", check=False)
        objects.close()
    assert result.node == "host1"
    assert result.manifest.status == "Completed" and result.manifest.kind == "etcd"
    assert result.snapshot is not None
    assert result.snapshot.name.startswith("k3sops-k3sops-lab-")
    assert result.snapshot.name.split("-")[-2] == "host1"  # K3s' NAME-<node>-<unix time>
    assert result.server_path == f"{DATA}/server/db/snapshots/{result.snapshot.name}"
    assert result.manifest.facts["hash_trailer"] is True
    assert result.manifest.facts["total_keys"] > 0
    assert [o.name for o in result.objects] == ["etcd-snapshot-host1-1795600000"]
    assert result.manifest.size == real.stat().st_size
    # what the repository holds is the real etcd snapshot: etcdutl reads it
    back = tmp_path / "back.db"
    with back.open("wb") as f:
        ctx.restic.dump_to(result.manifest.snapshot_ids[0], result.manifest.filename, f)
    assert back.read_bytes() == real.read_bytes()
    etcdutl = lab.binaries["etcd"].parent / "etcdutl"
    status = subprocess.run([str(etcdutl), "snapshot", "status", str(back), "-w", "json"],
                            check=True, capture_output=True, text=True, timeout=60)
    assert json.loads(status.stdout)["totalKey"] > 0
    assert not any("etcd-snapshot save" in c[2] for c in _calls(hosts[1]))


def test_k3s_snapshot_on_an_unreachable_server_stores_nothing(lab: Lab, test_hosts: HostPool,
                                                              tmp_path: Path) -> None:
    hosts = test_hosts.hosts(1)
    _prepare(hosts[0])
    inv = _inventory(test_hosts, hosts, tmp_path)
    ctx = backup_context(lab, tmp_path)
    test_hosts.stop(hosts[0])
    try:
        with pytest.raises(Unreachable, match="host1"):
            k3s_snapshot.backup_k3s(ctx, inv)
    finally:
        test_hosts.start(hosts[0])
    assert backups.entries_from_snapshots(ctx.restic.snapshots()) == []


def _cli(ctx: BackupContext, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "k3sops", *args, "--state-dir", str(ctx.state)],
                          env=ctx.env, capture_output=True, text=True, timeout=600)


def test_cli_k3s_snapshot_then_restore_it(lab: Lab, test_hosts: HostPool,
                                          tmp_path: Path) -> None:
    """As a user: `backup etcd` (K3s way: platform.yaml has ansible: and no backup.etcd),
    `backup verify`, `backup restore --etcd ID` planned, then run with --yes."""
    hosts = test_hosts.hosts(2)
    real = _lab_snapshot(lab, tmp_path / "lab.db")
    for h in hosts:
        _prepare(h)
        _upload(test_hosts, h, real, "/opt/k3sops-standin/etcd.db")
    inv = _inventory(test_hosts, hosts, tmp_path)
    ctx = backup_context(lab, tmp_path, inventory=inv, etcd=False)
    r = _cli(ctx, "-o", "json", "backup", "etcd")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["node"] == "host1" and out["manifest"]["status"] == "Completed"
    bid = out["manifest"]["id"]
    refused = _cli(ctx, "backup", "restore", "--etcd", bid, "--yes")
    assert refused.returncode == 1 and "never verified" in refused.stderr
    assert all(not any("systemctl" in c[2] for c in _calls(h)) for h in hosts)
    v = _cli(ctx, "backup", "verify", bid)
    assert v.returncode == 0, v.stderr
    plan = _cli(ctx, "-o", "json", "backup", "restore", "--etcd", bid)
    assert plan.returncode == 0, plan.stderr
    assert [s["result"] for s in json.loads(plan.stdout)["steps"]] == ["planned"] * 7
    done = _cli(ctx, "-o", "json", "backup", "restore", "--etcd", bid, "--yes",
                "--restore-on", "host2")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert [s["result"] for s in report["steps"]] == ["ok"] * 7
    assert report["plan"]["restore_host"] == "host2"
    restored = hosts[1].read(f"{DATA}/server/db/etcd/restored-from.sha256")
    assert restored is not None and restored.strip() == out["manifest"]["sha256"]
    assert hosts[0].stat(f"{DATA}/server/db") is None
    password = ctx.env["K3SOPS_TEST_BACKUP_MORE_PW"]
    for run in (r, refused, v, plan, done):
        assert "s3cr3t" not in run.stdout + run.stderr  # the K3s token is never read
        assert password not in run.stdout + run.stderr
