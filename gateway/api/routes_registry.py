"""Sites, devices and profiles: what an enterprise's electrician needs to connect a sensor."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status

from gateway.api.deps import GatewayDep, PrincipalDep
from gateway.api.schemas import DeviceIn, DeviceOut, SiteIn, SiteOut
from gateway.errors import ConflictError, NotFoundError
from gateway.model import now_ms

router = APIRouter(prefix="/api", tags=["registry"])


@router.get("/sites")
async def list_sites(gateway: GatewayDep, _: PrincipalDep) -> list[SiteOut]:
    return [SiteOut.of(s) for s in gateway.registry.sites()]


@router.post("/sites", status_code=status.HTTP_201_CREATED)
async def add_site(body: SiteIn, gateway: GatewayDep, who: PrincipalDep) -> SiteOut:
    try:
        return SiteOut.of(await gateway.registry.add_site(body.to_site(), who.name))
    except ConflictError as exc:
        raise HTTPException(409, str(exc)) from exc


@router.get("/devices")
async def list_devices(
    gateway: GatewayDep, _: PrincipalDep, site_id: str | None = None
) -> list[DeviceOut]:
    return [
        DeviceOut.of(d, gateway)
        for d in gateway.registry.devices()
        if site_id is None or d.site_id == site_id
    ]


@router.get("/devices/{device_id}")
async def get_device(device_id: str, gateway: GatewayDep, _: PrincipalDep) -> DeviceOut:
    try:
        return DeviceOut.of(await gateway.registry.get_device(device_id), gateway)
    except NotFoundError as exc:
        raise HTTPException(404, str(exc)) from exc


@router.post("/devices", status_code=status.HTTP_201_CREATED)
async def add_device(body: DeviceIn, gateway: GatewayDep, who: PrincipalDep) -> DeviceOut:
    try:
        device = await gateway.registry.add_device(body.to_device(), who.name)
    except NotFoundError as exc:
        raise HTTPException(422, str(exc)) from exc
    except ConflictError as exc:
        raise HTTPException(409, str(exc)) from exc
    gateway.detectors.expect(device.id, now_ms())
    return DeviceOut.of(device, gateway)


@router.get("/profiles")
async def list_profiles(gateway: GatewayDep, _: PrincipalDep) -> list[dict[str, Any]]:
    return [p.model_dump(mode="json") for p in gateway.profiles.values()]
