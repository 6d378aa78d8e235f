"""The ASGI app of `k3sops serve` (FastAPI): probes, ``/metrics`` and ``/api/v1``.

* ``/healthz``: the process answers (no authentication: the kubelet's liveness probe).
* ``/readyz``: 200 when the watch cache is in sync, 503 with the lagging kinds otherwise. No
  authentication either: the kubelet's readiness probe sends no token, and the answer names
  only kinds and counts, nothing of the objects.
* ``/metrics``: needs a token allowed ``get`` on ``metrics.k3sops.io`` (Prometheus' own
  ServiceAccount token, ``authorization: {credentials_file: ...}``), as kube-rbac-proxy guards it.
* ``/api/v1/...``: :mod:`k3sops.serve.api`.
* ``/`` and ``/ui/...``: the web console (:mod:`k3sops.serve.console`), HTML behind a session.

Errors are JSON ``{"error": message}``; no handler puts a request header in a message, so a
token never reaches a response or the log (uvicorn's access log prints the path, and no route
takes a token in its path or query).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

# FastAPI reads the routes' annotations at run time: imported here, not lazily (only
# `k3sops serve` imports this module).
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

if TYPE_CHECKING:
    from k3sops.serve.api import ApiContext
    from k3sops.serve.views import PlatformViews

API_VERSION = "v1"


def create_app(ctx: ApiContext, *, in_sync: Callable[[], bool] | None = None,
               views: PlatformViews | None = None) -> FastAPI:
    """The app over ``ctx`` (``in_sync``: readiness; default the reports' cache).

    ``views``: the backup and environment answers (default: the CLI's services on the
    reports' settings and store); their backup gauges join ``/metrics``.
    """
    from k3sops import __version__
    from k3sops.serve.api import router
    from k3sops.serve.auth import AuthFailure, bearer
    from k3sops.serve.metrics import CONTENT_TYPE

    app = FastAPI(title="k3sops", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=f"/api/{API_VERSION}/openapi.json")
    ready = in_sync or ctx.reports.cache.in_sync

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Any:
        ctx.metrics.requests.labels(route=_route(request), code=str(exc.status_code)).inc()
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.middleware("http")
    async def _count(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        if response.status_code < 400:
            ctx.metrics.requests.labels(route=_route(request),
                                        code=str(response.status_code)).inc()
        return response

    @app.get("/healthz")
    def healthz() -> Any:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> Any:
        """200 when every watched kind is in sync; 503 and the lagging kinds otherwise."""
        status = ctx.reports.cache.status()
        lagging = sorted(k for k, s in status.items() if not s.synced)
        body = {"ready": ready() and not lagging, "lagging": lagging,
                "unreadable": sorted(k for k, s in status.items() if s.synced and s.error),
                "leader": ctx.is_leader()}
        return JSONResponse(body, status_code=200 if body["ready"] else 503)

    @app.get("/metrics")
    def metrics(request: Request) -> Any:
        """Prometheus exposition of the service's state."""
        try:
            ctx.authorizer.check(bearer(request.headers.get("authorization")), "get",
                                 "metrics")
        except AuthFailure as e:
            raise HTTPException(e.status, e.message) from None
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE)

    app.include_router(router(ctx))
    from k3sops.serve import views as platform_views

    pv = views or platform_views.PlatformViews.of(ctx.reports.settings, ctx.reports.store)
    app.include_router(platform_views.router(ctx, pv))
    ctx.metrics.registry.register(platform_views.BackupCollector(pv))
    from k3sops.serve import console

    console.mount(app, ctx, pv)  # the web console under /ui (issue 15)
    return app


def _route(request: Any) -> str:
    # the route's template (/api/v1/diagnose/{kind}/...), not the path: bounded label values
    route = request.scope.get("route")
    return str(getattr(route, "path", "other"))
