"""Silences (maintenance windows): list, set, look at one, end early.

Setting or ending a silence is an operator action: it is written to the audit log
with the caller's name in the same transaction, and the engine re-judges the open
alerts at once, so the answer already shows which alerts the silence mutes.

Scope: a silence is the caller's to see if every site or device it names is in
their scope; a silence naming neither (it mutes the whole town) only town-wide
roles see or set. Enterprise users see their sites' silences but set none: a
maintenance window on a fire alarm is the office's decision.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status

from alerts.silence import Matchers, Silence, SilenceState
from gateway.api.deps import GatewayDep, PrincipalDep, StaffDep, site_visible, visible_or_404
from gateway.api.schemas import SilenceIn, SilenceOut
from gateway.auth import Principal
from gateway.service import Gateway

router = APIRouter(prefix="/api/silences", tags=["silences"])


def _visible(gateway: Gateway, who: Principal, matchers: Matchers) -> bool:
    if who.scope.town_wide:
        return True
    if matchers.site_id is None and matchers.device_id is None:
        return False
    if matchers.site_id is not None and not site_visible(gateway, who, matchers.site_id):
        return False
    if matchers.device_id is not None:
        site_id = gateway.registry.site_of(matchers.device_id)
        return site_id is not None and site_visible(gateway, who, site_id)
    return True


async def _get_visible(gateway: Gateway, who: Principal, silence_id: int) -> Silence:
    return await visible_or_404(
        gateway.silences.get(silence_id),
        lambda silence: _visible(gateway, who, silence.matchers),
        f"silence {silence_id} does not exist",
    )


@router.get("")
async def list_silences(
    gateway: GatewayDep,
    who: PrincipalDep,
    state: SilenceState | None = None,
    site_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[SilenceOut]:
    """Newest first; ``state`` is judged now (pending, active or expired)."""
    fetch = limit if who.scope.town_wide else 5000
    silences = await gateway.silences.list(state=state, site_id=site_id, limit=fetch)
    visible = [s for s in silences if _visible(gateway, who, s.matchers)][:limit]
    return [SilenceOut.of(s, gateway) for s in visible]


@router.post("", status_code=status.HTTP_201_CREATED)
async def add_silence(body: SilenceIn, gateway: GatewayDep, who: StaffDep) -> SilenceOut:
    if (body.ends_at_ms is None) == (body.duration_s is None):
        raise HTTPException(422, "give exactly one of ends_at_ms and duration_s")
    if not who.scope.town_wide and body.site_id is None and body.device_id is None:
        raise HTTPException(
            403, "only town-wide roles silence the whole town: give a site_id or device_id"
        )
    # A typo in an id would silence nothing while the officer believes it silences
    # something; say so instead. Out of scope reads the same as not registered.
    if body.site_id is not None and (
        gateway.registry.find_site(body.site_id) is None
        or not site_visible(gateway, who, body.site_id)
    ):
        raise HTTPException(422, f"site {body.site_id!r} not found")
    if body.device_id is not None:
        device = await gateway.registry.find_device(body.device_id)
        if device is None or not site_visible(gateway, who, device.site_id):
            raise HTTPException(422, f"device {body.device_id!r} not found")
    starts_at = body.starts_at_ms
    if body.ends_at_ms is not None:
        ends_at = body.ends_at_ms
    else:
        assert body.duration_s is not None  # checked above
        # One reading of the clock for both ends, so "30 min" is exactly 30 min long.
        starts_at = gateway.silences.now() if starts_at is None else starts_at
        ends_at = starts_at + body.duration_s * 1000
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
async def get_silence(silence_id: int, gateway: GatewayDep, who: PrincipalDep) -> SilenceOut:
    return SilenceOut.of(await _get_visible(gateway, who, silence_id), gateway)


@router.delete("/{silence_id}")
async def expire_silence(silence_id: int, gateway: GatewayDep, who: StaffDep) -> SilenceOut:
    """End the silence now. It is kept (with who ended it) rather than deleted."""
    await _get_visible(gateway, who, silence_id)
    silence = await gateway.silences.expire(silence_id, who.name)
    await gateway.alerts.remute()
    return SilenceOut.of(silence, gateway)
