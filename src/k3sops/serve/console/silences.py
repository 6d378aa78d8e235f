"""The Alerts page's silences: list, create and expire through Alertmanager's API (issue 15).

Each action is `k3sops alerts silence | unsilence | silences`' own service function
(:mod:`k3sops.services.alertmanager`), so the console keeps the CLI's rules: at least one
matcher, never one that mutes everything, a comment required, a new silence never revives an
old id. The author is the user the API server named at login (TokenReview), not a form field.
RBAC on ``silences.k3sops.io``: ``get`` to list, ``create`` to create, ``delete`` to expire.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from k3sops.errors import ExitCode, K3sopsError

if TYPE_CHECKING:
    from k3sops.serve.auth import User
    from k3sops.serve.console.pages import Console

MAX_MATCHERS = 20
"""Matchers read from the form (one a line)."""


def listing(console: Console, user: User) -> dict[str, Any]:
    """What the alerts page shows of the silences.

    ``may``: the user's get/create/delete; ``silences``: active and pending ones; ``error``:
    why Alertmanager could not be read.
    """
    from k3sops.services import alertmanager

    may = {verb: console.may(user, verb, "silences") for verb in ("get", "create", "delete")}
    out: dict[str, Any] = {"may": may, "silences": [], "error": None}
    if not may["get"]:
        return out
    try:
        out["silences"] = alertmanager.list_silences(console.ctx.reports.settings,
                                                     dict(os.environ), Path.home()).silences
    except K3sopsError as e:
        out["error"] = e.message
    return out


def _refusal(e: K3sopsError) -> Exception:
    from k3sops.serve.console.pages import Refused

    return Refused(400 if e.exit_code == ExitCode.USAGE else 502, e.message)


def routes(ui: APIRouter, console: Console) -> None:
    """``POST /silences`` (create) and ``POST /silences/expire``."""
    from k3sops.serve.console.pages import check_csrf, read_form
    from k3sops.services import alertmanager

    settings = console.ctx.reports.settings

    async def act(request: Request, verb: str, work: Callable[[User, dict[str, str]], Any],
                  ) -> Any:
        form = await read_form(request)
        s, user = await run_in_threadpool(console.user, request, verb, "silences")
        check_csrf(s, form)
        try:
            return await run_in_threadpool(work, user, form)
        except K3sopsError as e:
            raise _refusal(e) from None

    @ui.post("/silences")
    async def create(request: Request) -> Response:
        """A new silence by the logged-in user (`k3sops alerts silence`)."""
        def work(user: User, form: dict[str, str]) -> Any:
            matchers = [m.strip() for m in form.get("matchers", "").splitlines()
                        if m.strip()][:MAX_MATCHERS]
            return alertmanager.create_silence(
                settings, dict(os.environ), Path.home(), matchers=matchers,
                duration=form.get("duration", "2h").strip() or "2h", author=user.name,
                comment=form.get("comment", "").strip()[:1000], now=datetime.now(UTC))
        done = await act(request, "create", work)
        return RedirectResponse("/ui/alerts?" + urlencode({"silenced": done.id}),
                                status_code=303)

    @ui.post("/silences/expire")
    async def expire(request: Request) -> Response:
        """Expire a silence now (`k3sops alerts unsilence`)."""
        def work(user: User, form: dict[str, str]) -> Any:
            return alertmanager.expire_silence(settings, dict(os.environ), Path.home(),
                                               form.get("id", "").strip()[:64])
        done = await act(request, "delete", work)
        return RedirectResponse("/ui/alerts?" + urlencode({"expired": done.id}),
                                status_code=303)
