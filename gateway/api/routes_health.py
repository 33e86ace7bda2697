"""Health: what works, what is degraded and why."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.deps import GatewayDep, PrincipalDep

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health")
async def health(gateway: GatewayDep, _: PrincipalDep) -> dict[str, Any]:
    return gateway.health()
