"""Health: what works, what is degraded and why.

Town-wide roles get the whole picture; a scoped principal only whether the
gateway is well (the town's device and message counts are not theirs to see).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.deps import GatewayDep, PrincipalDep

router = APIRouter(prefix="/api", tags=["health"])


@router.get("/health")
async def health(gateway: GatewayDep, who: PrincipalDep) -> dict[str, Any]:
    full = gateway.health()
    if who.scope.town_wide:
        return full
    return {"status": full["status"], "degraded": full["degraded"]}
