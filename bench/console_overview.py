"""The console's overview page: server time and browser load time, as ratios to floors.

Issue 15, "Done when": page load of the overview measured on the lab (server time and browser
load time). This grows a lab to ``--nodes``/``--pods`` bench objects (check_scale's objects),
starts ``k3sops serve`` against it, logs a ServiceAccount in through ``/ui/login`` and times,
in one run:

* ``/healthz``: the HTTP round trip floor (no auth, no work);
* the first ``/ui/`` after the service is ready: it waits for the service's first judged
  report (once per start; what a user opening the console on a fresh replica waits);
* ``/api/v1/report?period=daily``: the service's kept report as JSON (the data floor);
* ``/ui/``: the overview rendered from that same kept report (the trend, charts, store reads);
* the browser: Debian's Chromium via Playwright loads ``/ui/`` and reports its navigation
  timing (``responseEnd``: the HTML arrived; ``loadEventEnd``: the page with its stylesheet
  is loaded).

Both pages read the report the service keeps current in the background (issue 14), so a page
never judges the cluster itself; what judging costs is ``bench/serve_check.py``'s background
run. It prints the medians and the ratios (overview / JSON report, overview / healthz,
browser load / server time), writes ``results/console_overview-<date>.json``, and asserts
nothing.

```sh
.venv/bin/python bench/console_overview.py --lab-dir /tmp/lab-console-bench --port-base 26000 \\
    --nodes 100 --pods 3000
```
"""

from __future__ import annotations

import json
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_report import grown_lab, lab_parser, reader_token, start_serve

BENCH = Path(__file__).resolve().parent
NS = "bench-console"
CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")


def _login(client: httpx2.Client, token: str) -> str:
    """The session cookie's value after logging in through the form (cookies sent by hand:
    they are Secure and this client speaks plain HTTP to 127.0.0.1)."""
    form = client.get("/ui/login")
    anon = form.cookies["k3sops_login"]
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if csrf is None:
        raise SystemExit("no CSRF token on the login form")
    r = client.post("/ui/login", data={"csrf": csrf.group(1), "token": token},
                    headers={"Cookie": f"k3sops_login={anon}"})
    if r.status_code != 303:
        raise SystemExit(f"login: {r.status_code}")
    return str(r.cookies["k3sops_session"])


def _timed(get: Callable[[], httpx2.Response]) -> float:
    t = time.monotonic()
    r = get()
    took = time.monotonic() - t
    if r.status_code != 200:
        raise SystemExit(f"{r.request.url}: {r.status_code} {r.text[:200]}")
    return took


def _browser(url: str, session: str, repeat: int) -> dict[str, list[float]]:
    """Navigation timing of ``/ui/`` in Chromium, seconds: HTML arrived, page loaded."""
    from playwright.sync_api import sync_playwright

    exe = next((c for c in CHROMIUM if Path(c).exists()), None)
    if exe is None:
        raise SystemExit("no system Chromium (apt package chromium)")
    out: dict[str, list[float]] = {"response_end": [], "load_event_end": []}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            context = b.new_context(viewport={"width": 1280, "height": 900})
            context.add_cookies([{"name": "k3sops_session", "value": session, "url": url,
                                  "httpOnly": True, "secure": True, "sameSite": "Strict"}])
            page = context.new_page()
            page.goto(url + "/ui/")  # warm-up: the stylesheet cached as a user's would be
            for _ in range(repeat):
                page.goto(url + "/ui/", wait_until="load")
                if not page.url.endswith("/ui/"):
                    raise SystemExit(f"the browser was sent to {page.url}")
                t = page.evaluate("(() => { const n = performance.getEntriesByType("
                                  "'navigation')[0]; return [n.responseEnd - n.startTime, "
                                  "n.loadEventEnd - n.startTime]; })()")
                out["response_end"].append(t[0] / 1000)
                out["load_event_end"].append(t[1] / 1000)
        finally:
            b.close()
    return out


def _median(xs: list[float]) -> float:
    return round(statistics.median(xs), 4)


def main() -> int:
    args = lab_parser(__doc__.splitlines()[0]).parse_args()

    def say(m: str) -> None:
        print(m, file=sys.stderr, flush=True)

    lab, grow, settled = grown_lab(args, say)
    with lab.client() as http:
        token = reader_token(http, NS, ("reports", "alerts"))
    port = args.port_base + 760
    url = f"http://127.0.0.1:{port}"
    proc, _, _ = start_serve(args, port, "bench-console")
    try:
        times: dict[str, list[float]] = {"healthz": [], "api_report": [], "ui": []}
        with httpx2.Client(base_url=url, timeout=600) as client:
            session = _login(client, token)
            cookie = {"Cookie": f"k3sops_session={session}"}
            bearer = {"Authorization": f"Bearer {token}"}
            first_ui = _timed(lambda: client.get("/ui/", headers=cookie))
            html_bytes = len(client.get("/ui/", headers=cookie).content)
            for _ in range(args.repeat):
                times["healthz"].append(_timed(lambda: client.get("/healthz")))
                times["api_report"].append(_timed(lambda: client.get(
                    "/api/v1/report?period=daily", headers=bearer)))
                times["ui"].append(_timed(lambda: client.get("/ui/", headers=cookie)))
        say("browser: Chromium navigation timing")
        nav = _browser(url, session, args.repeat)
    finally:
        proc.terminate()
        proc.wait(60)
    med = {k: _median(v) for k, v in {**times, **nav}.items()}
    result = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"), "nodes": args.nodes,
        "pods": args.pods, "settled": settled, "grow": grow, "overview_html_bytes": html_bytes,
        "first_ui_after_ready": round(first_ui, 3),
        "seconds": {k: [round(x, 4) for x in v] for k, v in {**times, **nav}.items()},
        "medians": med,
        "ratios": {
            "ui_over_api_report": round(med["ui"] / med["api_report"], 2),
            "ui_over_healthz": round(med["ui"] / med["healthz"], 1),
            "browser_load_over_ui": round(med["load_event_end"] / med["ui"], 2),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"console_overview-{result['at'][:10]}.json").write_text(
        json.dumps(result, indent=2))
    print(f"{'objects':>28}: {settled}")
    print(f"{'first /ui/ after ready':>28}: {first_ui:.3f} s  (waits for the first report)")
    for name, what in (("healthz", "HTTP floor"), ("api_report", "the kept report as JSON"),
                       ("ui", "overview from the kept report"),
                       ("response_end", "browser: HTML arrived"),
                       ("load_event_end", "browser: page loaded")):
        print(f"{name:>28}: {med[name]:.4f} s  ({what})")
    for name, ratio in result["ratios"].items():
        print(f"{name:>28}: {ratio}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
