"""The console's overview page: server time and browser load time, as ratios to floors.

Issue 15, "Done when": page load of the overview measured on the lab (server time and browser
load time). This grows a lab to ``--nodes``/``--pods`` bench objects (check_scale's objects),
starts ``k3sops serve`` against it, logs a ServiceAccount in through ``/ui/login`` and times,
in one run:

* ``/healthz``: the HTTP round trip floor (no auth, no work);
* ``/api/v1/report?period=daily``: the same judged report as JSON (the data floor);
* ``/ui/`` cold: the console judges the report again (its 10 s reuse has expired) and renders;
* ``/ui/`` warm: within those 10 s (rendering only: the trend, charts, store reads);
* the browser: Debian's Chromium via Playwright loads ``/ui/`` and reports its navigation
  timing (``responseEnd``: the HTML arrived; ``loadEventEnd``: the page with its stylesheet
  is loaded).

It prints the medians and the ratios (cold overview / JSON report, warm overview / healthz,
browser load / warm server time), writes ``results/console_overview-<date>.json``, and
asserts nothing.

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
REPORT_TTL = 10.0  # k3sops.serve.console.pages.REPORT_TTL
CHROMIUM = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")


def _login(client: httpx2.Client, token: str) -> str:
    """The session cookie's value after logging in through the form (sent by hand: the
    cookie is Secure and this client speaks plain HTTP to 127.0.0.1)."""
    form = client.get("/ui/login")
    anon = form.cookies["k3sops_session"]
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if csrf is None:
        raise SystemExit("no CSRF token on the login form")
    r = client.post("/ui/login", data={"csrf": csrf.group(1), "token": token},
                    headers={"Cookie": f"k3sops_session={anon}"})
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
        times: dict[str, list[float]] = {"healthz": [], "api_report": [], "ui_cold": [],
                                         "ui_warm": []}
        with httpx2.Client(base_url=url, timeout=600) as client:
            session = _login(client, token)
            cookie = {"Cookie": f"k3sops_session={session}"}
            bearer = {"Authorization": f"Bearer {token}"}
            client.get("/api/v1/report?period=daily", headers=bearer).raise_for_status()
            html_bytes = len(client.get("/ui/", headers=cookie).content)
            for _ in range(args.repeat):
                times["healthz"].append(_timed(lambda: client.get("/healthz")))
                times["api_report"].append(_timed(lambda: client.get(
                    "/api/v1/report?period=daily", headers=bearer)))
                time.sleep(REPORT_TTL + 0.5)  # the console's judged report has expired
                times["ui_cold"].append(_timed(lambda: client.get("/ui/", headers=cookie)))
                times["ui_warm"].append(_timed(lambda: client.get("/ui/", headers=cookie)))
        say("browser: Chromium navigation timing")
        nav = _browser(url, session, args.repeat)
    finally:
        proc.terminate()
        proc.wait(60)
    med = {k: _median(v) for k, v in {**times, **nav}.items()}
    result = {
        "at": datetime.now(UTC).isoformat(timespec="seconds"), "nodes": args.nodes,
        "pods": args.pods, "settled": settled, "grow": grow, "overview_html_bytes": html_bytes,
        "seconds": {k: [round(x, 4) for x in v] for k, v in {**times, **nav}.items()},
        "medians": med,
        "ratios": {
            "ui_cold_over_api_report": round(med["ui_cold"] / med["api_report"], 2),
            "ui_warm_over_healthz": round(med["ui_warm"] / med["healthz"], 1),
            "browser_load_over_ui_warm": round(med["load_event_end"] / med["ui_warm"], 2),
        },
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"console_overview-{result['at'][:10]}.json").write_text(
        json.dumps(result, indent=2))
    print(f"{'objects':>28}: {settled}")
    for name, what in (("healthz", "HTTP floor"), ("api_report", "the same report as JSON"),
                       ("ui_cold", "overview, report judged again"),
                       ("ui_warm", "overview, report reused"),
                       ("response_end", "browser: HTML arrived"),
                       ("load_event_end", "browser: page loaded")):
        print(f"{name:>28}: {med[name]:.4f} s  ({what})")
    for name, ratio in result["ratios"].items():
        print(f"{name:>28}: {ratio}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
