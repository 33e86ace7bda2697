"""For administrators only: the audit log (read-only; nothing can edit it) and the users.

Users are managed with ``ewg user ...``; the API only shows them (never a hash).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from gateway.api.deps import AdminDep, GatewayDep
from gateway.api.schemas import iso

router = APIRouter(prefix="/api", tags=["admin"])


class AuditOut(BaseModel):
    id: int
    ts: str
    ts_ms: int
    actor: str
    action: str
    target: str
    detail: dict[str, Any]


class UserOut(BaseModel):
    username: str
    display_name: str
    role: str
    villages: list[str] | None
    enterprise: str | None
    disabled: bool
    created_at: str


@router.get("/audit")
async def audit_log(
    gateway: GatewayDep,
    _: AdminDep,
    actor: str | None = None,
    action: Annotated[str | None, Query(description="e.g. auth.login_failed, alert.close")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 200,
) -> list[AuditOut]:
    """Newest first: who did what to which object, and when."""
    tz = gateway.settings.timezone
    fetch = limit if actor is None and action is None else 50_000
    entries = [
        e
        for e in await gateway.audit.entries(fetch)
        if (actor is None or e.actor == actor) and (action is None or e.action == action)
    ][:limit]
    return [
        AuditOut(
            id=e.id,
            ts=iso(e.ts_ms, tz) or "",
            ts_ms=e.ts_ms,
            actor=e.actor,
            action=e.action,
            target=e.target,
            detail=e.detail,
        )
        for e in entries
    ]


@router.get("/users")
async def list_users(gateway: GatewayDep, _: AdminDep) -> list[UserOut]:
    tz = gateway.settings.timezone
    return [
        UserOut(
            username=u.username,
            display_name=u.display_name,
            role=u.role.value,
            villages=u.villages,
            enterprise=u.enterprise,
            disabled=u.disabled,
            created_at=iso(u.created_ms, tz) or "",
        )
        for u in await gateway.users.list()
    ]
