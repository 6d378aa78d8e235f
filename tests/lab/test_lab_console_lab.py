"""`k3sops lab console`: the README's one command that opens the console against the lab.

It runs for real on the lab: creates the console's ServiceAccount and ClusterRole, writes an
8-hour token to a file only its owner reads (never to the terminal), and becomes `k3sops
serve`; the test logs in with that token through the login form and reads the overview.
"""

from __future__ import annotations

import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from kit.serve import PORT_OFFSET

from conftest import Lab, wait_for

pytestmark = pytest.mark.lab
OFFSET = PORT_OFFSET + 36  # this module's own port


@pytest.fixture
def console(lab: Lab, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str, Path]]:
    port = int(lab.env["K3SOPS_LAB_PORT_BASE"]) + OFFSET
    log = tmp_path / "console.log"
    env = {**lab.env, "K3SOPS_STATE_DIR": str(tmp_path / "state")}
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "k3sops", "lab", "console", "--listen",
                                 f"127.0.0.1:{port}"], env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        yield proc, f"http://127.0.0.1:{port}", log
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        lab.kubectl("delete", "clusterrole,clusterrolebinding", "k3sops-lab-console",
                    check=False)
        lab.kubectl("delete", "namespace", "k3sops", "--wait=false", check=False)


def test_lab_console_creates_the_account_and_serves_the_console(
        lab: Lab, console: tuple[subprocess.Popen[bytes], str, Path]) -> None:
    proc, url, log = console
    token_file = lab.layout.run_dir / "console.token"

    def ready() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx2.get(f"{url}/readyz", timeout=5).status_code == 200
        except httpx2.HTTPError:
            return False
    assert wait_for(ready, timeout=120, every=1), log.read_text()
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert f"log in with the token in {token_file}" in log.read_text()

    with httpx2.Client(base_url=url, timeout=60) as client:
        # cookies by hand: they are Secure and this client speaks plain HTTP
        form = client.get("/ui/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf, form.text
        login = client.post("/ui/login", data={"csrf": csrf.group(1), "token": token},
                            headers={"Cookie": f"k3sops_login={form.cookies['k3sops_login']}"})
        assert login.status_code == 303, login.text
        cookie = {"Cookie": f"k3sops_session={login.cookies['k3sops_session']}"}
        page = client.get("/ui/", headers=cookie)
        assert page.status_code == 200
        assert "system:serviceaccount:k3sops:console" in page.text
        # every page's right is granted: none answers 403
        for path in ("/ui/findings", "/ui/alerts", "/ui/backups", "/ui/environments",
                     "/ui/capacity"):
            assert client.get(path, headers=cookie).status_code == 200, path
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0
    assert token not in log.read_text()
