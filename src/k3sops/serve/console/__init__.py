"""The web console of `k3sops serve`: server-rendered pages under ``/ui`` (issue 15).

:func:`mount` adds the pages (:mod:`.pages`), their stylesheet (``/ui/static``), the
redirect of ``/`` to ``/ui/`` and the security headers of every console response:

* ``Content-Security-Policy``: everything from this origin only, no inline script or style,
  no framing, forms post only here;
* ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer``,
  ``X-Frame-Options: DENY`` (older browsers), ``Cache-Control: no-store`` on pages (they
  show what one user may see).

The pages need no JavaScript; nothing is loaded from another host.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from k3sops.serve.api import ApiContext
    from k3sops.serve.views import PlatformViews

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}


def mount(app: FastAPI, ctx: ApiContext, views: PlatformViews | None = None) -> Any:
    """Add the console to ``app``; the :class:`~.pages.Console` (its sessions).

    ``views``: the backup and environment answers ``/api/v1`` serves (the backups page).
    """
    from fastapi.responses import RedirectResponse
    from fastapi.staticfiles import StaticFiles

    from k3sops.serve.console import pages, render

    console = pages.Console(ctx, views=views)
    app.include_router(pages.router(console))
    app.mount(f"{pages.PREFIX}/static", StaticFiles(directory=render.HERE / "static"),
              name="console-static")
    for exc, handler in pages.handlers(console).items():
        app.add_exception_handler(exc, handler)

    @app.get("/", include_in_schema=False)
    def root() -> Any:
        """The console's overview."""
        return RedirectResponse(f"{pages.PREFIX}/", status_code=303)

    @app.middleware("http")
    async def _headers(request: Any, call_next: Any) -> Any:
        response = await call_next(request)
        path = request.url.path
        if path == "/" or path.startswith(pages.PREFIX + "/") or path == pages.PREFIX:
            for name, value in HEADERS.items():
                response.headers[name] = value
            if not path.startswith(f"{pages.PREFIX}/static/"):
                response.headers["Cache-Control"] = "no-store"
        return response

    return console
