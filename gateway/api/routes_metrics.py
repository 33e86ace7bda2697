"""Prometheus scrape endpoint (authorized like every route: scrape with a bearer token)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.prometheus import metrics_text

router = APIRouter(tags=["health"])


@router.get("/metrics")
async def metrics(gateway: GatewayDep, _: PrincipalDep) -> Response:
    return Response(metrics_text(gateway), media_type=CONTENT_TYPE_LATEST)
