"""The FastAPI app factory. Nothing is created at import time.

``create_app(settings)`` returns an app whose lifespan runs the whole gateway
(:class:`~gateway.service.Gateway`), so ``uvicorn`` serving the app *is* the gateway.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from gateway.api import (
    routes_admin,
    routes_alerts,
    routes_auth,
    routes_console,
    routes_data,
    routes_enterprises,
    routes_health,
    routes_incidents,
    routes_metrics,
    routes_notify,
    routes_portal,
    routes_rectification,
    routes_registry,
    routes_silences,
    routes_stats,
)
from gateway.config import Settings
from gateway.errors import ConflictError, NotFoundError
from gateway.service import Gateway


def create_app(settings: Settings, gateway: Gateway | None = None) -> FastAPI:
    """Build the app; pass a running ``gateway`` to serve it instead of starting one."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if gateway is not None:
            app.state.gateway = gateway
            yield
            return
        async with Gateway(settings) as running:
            app.state.gateway = running
            yield

    app = FastAPI(title="EWG early-warning gateway", version="0.1.0", lifespan=lifespan)

    # One mapping for the whole API: a missing id is a 404 and an illegal change a 409, with
    # the engine's own sentence as the detail. A route that means something else (an unknown
    # profile in a request body is a 422) catches the error itself.
    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(ConflictError)
    async def conflict(_: Request, exc: ConflictError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    routers = [
        routes_health.router,
        routes_auth.router,
        routes_admin.router,
        routes_alerts.router,
        routes_registry.router,
        routes_enterprises.router,
        routes_data.router,
        routes_metrics.router,
        # -- routers: silences, incidents --
        routes_silences.router,
        routes_incidents.router,
        # -- routers: escalation policies, notification channels, delivery log --
        routes_notify.router,
        # -- routers: rectification items, statistics --
        routes_rectification.router,
        routes_stats.router,
        routes_portal.router,
        routes_console.router,
    ]
    for router in routers:
        app.include_router(router)
    # The board at ``/`` is served by routes_console, with the pages' security headers.
    return app
