"""A real browser for the console's tests: Playwright driving Debian's Chromium.

Playwright cannot download its own browser here, so it launches the system's
(``scripts/install-deps.sh`` installs the ``chromium`` package). Tests that need it skip,
naming what is missing, only when that browser or the playwright package is absent.
Screenshots go to ``$K3SOPS_ARTIFACTS`` (default ``/tmp/k3sops-screenshots``), never into
the repository.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Debian's /usr/bin/chromium is a shell wrapper; Playwright needs the binary itself.
CANDIDATES = ("/usr/lib/chromium/chromium", "/usr/bin/chromium")
WIDTHS = (1280, 390)
"""The widths every page is screenshotted at: a laptop and a phone."""


def chromium_path() -> str | None:
    """The system Chromium's executable, or None."""
    for candidate in CANDIDATES:
        if os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("chromium")
    return found


def artifacts_dir() -> Path:
    """Where screenshots are written (created)."""
    where = Path(os.environ.get("K3SOPS_ARTIFACTS") or "/tmp/k3sops-screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium (Playwright's Browser), closed after the module."""
    exe = chromium_path()
    if exe is None:
        pytest.skip("no system Chromium (/usr/lib/chromium/chromium): "
                    "run scripts/install-deps.sh (apt package chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("the playwright package is not installed: uv sync (dev group)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True,
                              args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield b
        finally:
            b.close()


def shoot(page: Any, name: str) -> list[Path]:
    """Screenshots of ``page`` at each of :data:`WIDTHS` (full page); the files written."""
    out = []
    for width in WIDTHS:
        page.set_viewport_size({"width": width, "height": 900})
        path = artifacts_dir() / f"{name}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        out.append(path)
    page.set_viewport_size({"width": WIDTHS[0], "height": 900})
    return out


# Walks the page's elements that hold text of their own and returns those whose text colour
# against the first opaque background behind them is below the ratio (WCAG 2 relative
# luminance). SVG text is left out (its colour is its fill, checked by eye).
_CONTRAST_JS = """(minimum) => {
  const rgb = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = (el) => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.9)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const bad = [];
  for (const el of document.body.querySelectorAll('*')) {
    if (el.closest('svg')) continue;
    const own = [...el.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !el.getClientRects().length) continue;
    const fg = lum(rgb(getComputedStyle(el).color).slice(0, 3));
    const bg = lum(background(el));
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    if (ratio < minimum) bad.push(`${el.tagName}.${el.className}: ${ratio.toFixed(2)}`);
  }
  return bad;
}"""


def contrast_failures(page: Any, minimum: float = 4.5) -> list[str]:
    """Elements of ``page`` whose text contrast is below ``minimum`` (WCAG AA: 4.5)."""
    found: list[str] = page.evaluate(_CONTRAST_JS, minimum)
    return found


def page_faults(page: Any, paths: list[str] | tuple[str, ...]) -> list[str]:
    """What is wrong with each page at 1280 and 390 px: text under 4.5:1 contrast, a page
    wider than the window (tables scroll inside their card), a Content-Security-Policy
    violation the browser reported; empty when nothing is."""
    faults: list[str] = []
    page.on("console", lambda m: faults.append(f"CSP: {m.text}")
            if "Content Security Policy" in m.text else None)
    for path in paths:
        page.goto(path)
        for width in (1280, 390):
            page.set_viewport_size({"width": width, "height": 900})
            faults += [f"{path} at {width} px: {f}" for f in contrast_failures(page)]
            wide = page.evaluate("document.documentElement.scrollWidth")
            if wide > width:
                faults.append(f"{path} at {width} px: {wide} px wide")
        page.set_viewport_size({"width": 1280, "height": 900})
    return faults


def login(browser: Any, url: str, token: str, first: str = "/ui/login") -> Any:
    """A new 1280 px browser context logged in to the console at ``url`` with ``token``: its
    page after the login form. ``first``: the page asked for first — another page than the
    login form must send a browser without a session there."""
    context = browser.new_context(base_url=url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(first)
    assert page.url.endswith("/ui/login"), page.url  # no session: the login page
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    return page
