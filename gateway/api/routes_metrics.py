"""Prometheus scrape endpoint: town-wide roles only (scrape with an admin or duty token)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST

from gateway.api.deps import GatewayDep, TownDep
from gateway.prometheus import metrics_text

router = APIRouter(tags=["health"])


@router.get("/metrics")
async def metrics(gateway: GatewayDep, _: TownDep) -> Response:
    return Response(metrics_text(gateway), media_type=CONTENT_TYPE_LATEST)
