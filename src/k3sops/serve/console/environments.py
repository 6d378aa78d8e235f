"""The console's Environments page and its approve form (issue 15).

The page shows ``/api/v1/environments``' answer (:class:`~k3sops.serve.views.PlatformViews`):
apps x environments with the version in git and the one running, and each pending promotion
with its gates and approvals. It needs ``get`` on ``environments.k3sops.io``.

Approving needs ``create`` on ``approvals.k3sops.io`` and is recorded by the CLI's own
:func:`k3sops.services.env.promote.approve` (a commit in the GitOps repository and a line in
the audit log), as the user the API server named at login (TokenReview): the form carries no
name, so nobody approves as someone else. The approver list of platform.yaml still applies on
top of RBAC: a user RBAC lets through but the environment does not list is refused (403) with
the policy's reason.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from k3sops.errors import ExitCode, K3sopsError

if TYPE_CHECKING:
    from k3sops.serve.console.pages import Console
    from k3sops.services.gitops import GitOpsContext

GitOpsOpener = Callable[[str], "GitOpsContext"]
"""The GitOps context acting as a user name (the audit log's ``who``)."""

MAX_FIELD = 200
"""The longest app, environment or version name taken from the form."""


def default_opener(console: Console) -> GitOpsOpener:
    """The CLI's GitOps context on the service's settings, in the service's state directory.

    The same directory ``/api/v1/environments`` clones into (``--state-dir``; else
    ``K3SOPS_STATE_DIR`` or home, as the CLI): one clone, and the audit log beside the
    service's other records.
    """
    from k3sops.services import gitops

    settings = console.ctx.reports.settings
    state = console.views.state if console.views is not None else None

    def open_as(user: str) -> GitOpsContext:
        return gitops.open_context(settings, dict(os.environ), Path.home(), state, user=user)
    return open_as


def matrix(body: dict[str, Any]) -> tuple[list[str], list[tuple[str, list[Any]]]]:
    """The environments in promotion order and, per app, its row per environment (or None)."""
    order = [e["name"] for e in body.get("environments") or []]
    rows: dict[str, dict[str, Any]] = {}
    for r in body.get("apps") or []:
        rows.setdefault(r["app"], {})[r["env"]] = r
        if r["env"] not in order:
            order.append(r["env"])
    return order, [(app, [rows[app].get(e) for e in order]) for app in sorted(rows)]


def routes(ui: APIRouter, console: Console, opener: GitOpsOpener | None = None) -> None:
    """``GET /environments`` and ``POST /approve``."""
    from k3sops.serve.console.pages import Refused, check_csrf, read_form

    open_as = opener or default_opener(console)

    @ui.get("/environments")
    def environments(request: Request) -> Response:
        """Apps x environments (git vs running), next promotions, gates, approvals."""
        s, user = console.user(request, "get", "environments")
        if console.views is None:
            raise Refused(503, "environment views are not available in this service")
        body = console.views.environments()
        order, rows = matrix(body)
        q = request.query_params
        done = ({k: q.get(k, "")[:MAX_FIELD] for k in ("app", "target", "version", "commit")}
                if q.get("approved") else None)
        return console.html("environments.html", s, page="environments", order=order,
                            rows=rows, pending=body.get("next_promotions") or [],
                            reason=body.get("reason"),
                            may_approve=console.may(user, "create", "approvals"),
                            approved=done)

    @ui.post("/approve")
    async def approve(request: Request) -> Response:
        """Approve one version of an app into an environment as the logged-in user."""
        from k3sops.domain.env import PromotionRefused
        from k3sops.services.env import promote

        form = await read_form(request)
        s, user = await run_in_threadpool(console.user, request, "create", "approvals")
        check_csrf(s, form)
        app, target, version = (form.get(k, "").strip()[:MAX_FIELD]
                                for k in ("app", "target", "version"))
        if not (app and target and version):
            raise Refused(400, "the approval needs an app, a target environment and a version")
        note = form.get("note", "").strip()[:500] or None

        def record() -> Any:
            return promote.approve(open_as(user.name), app, target, version=version,
                                   by=user.name, note=note)
        try:
            done = await run_in_threadpool(record)
        except PromotionRefused as e:
            raise Refused(403, e.message) from None
        except K3sopsError as e:  # unknown environment, no approval policy, git failed
            raise Refused(400 if e.exit_code == ExitCode.USAGE else 502, e.message) from None
        if console.views is not None:
            # the page the redirect shows counts this approval (not the answer of 30 s ago)
            console.views.environments.invalidate()
        return RedirectResponse(
            "/ui/environments?" + urlencode({"approved": "1", "app": app, "target": target,
                                             "version": version, "commit": done.commit or ""}),
            status_code=303)
