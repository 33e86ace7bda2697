"""Silences (maintenance windows): list, set, look at one, end early.

Setting or ending a silence is an operator action: it is written to the audit log
with the caller's name in the same transaction, and the engine re-judges the open
alerts at once, so the answer already shows which alerts the silence mutes.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from alerts.silence import Matchers, SilenceState
from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.api.schemas import SilenceIn, SilenceOut

router = APIRouter(prefix="/api/silences", tags=["silences"])


@router.get("")
async def list_silences(
    gateway: GatewayDep,
    _: PrincipalDep,
    state: SilenceState | None = None,
    site_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[SilenceOut]:
    """Newest first; ``state`` is judged now (pending, active or expired)."""
    silences = await gateway.silences.list(state=state, site_id=site_id, limit=limit)
    return [SilenceOut.of(s, gateway) for s in silences]


@router.post("", status_code=status.HTTP_201_CREATED)
async def add_silence(body: SilenceIn, gateway: GatewayDep, who: PrincipalDep) -> SilenceOut:
    if (body.ends_at_ms is None) == (body.duration_s is None):
        raise HTTPException(422, "give exactly one of ends_at_ms and duration_s")
    # A typo in an id would silence nothing while the officer believes it silences
    # something; say so instead.
    if body.site_id is not None and gateway.registry.find_site(body.site_id) is None:
        raise HTTPException(422, f"site {body.site_id!r} not found")
    if body.device_id is not None and await gateway.registry.find_device(body.device_id) is None:
        raise HTTPException(422, f"device {body.device_id!r} not found")
    starts_at = body.starts_at_ms
    if body.ends_at_ms is not None:
        ends_at = body.ends_at_ms
    else:
        assert body.duration_s is not None  # checked above
        start = gateway.silences.now() if starts_at is None else starts_at
        ends_at = start + body.duration_s * 1000
    matchers = Matchers(body.site_id, body.device_id, body.rule, body.alert_class)
    try:
        silence = await gateway.silences.create(
            matchers, starts_at=starts_at, ends_at=ends_at, reason=body.reason, actor=who.name
        )
    except ValueError as exc:
        raise HTTPException(422, str(exc)) from exc
    await gateway.alerts.remute()
    return SilenceOut.of(silence, gateway)


@router.get("/{silence_id}")
async def get_silence(silence_id: int, gateway: GatewayDep, _: PrincipalDep) -> SilenceOut:
    return SilenceOut.of(await gateway.silences.get(silence_id), gateway)


@router.delete("/{silence_id}")
async def expire_silence(silence_id: int, gateway: GatewayDep, who: PrincipalDep) -> SilenceOut:
    """End the silence now. It is kept (with who ended it) rather than deleted."""
    silence = await gateway.silences.expire(silence_id, who.name)
    await gateway.alerts.remute()
    return SilenceOut.of(silence, gateway)
