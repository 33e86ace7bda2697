"""Sites, devices and profiles: what an enterprise's electrician needs to connect a sensor.

Lists are cut to the caller's scope and a device outside it is a 404. Sites and
devices are registered by administrators, duty officers and enterprise users; a
site an enterprise user registers belongs to their enterprise whatever the body
says, and they may put devices only on their own sites.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, HTTPException, Response, status

from gateway.api.account_answers import account_errors, no_store
from gateway.api.deps import (
    GatewayDep,
    PrincipalDep,
    RegistrarDep,
    require_known_village,
    site_visible,
    visible_device,
    visible_device_ids,
    visible_sites,
)
from gateway.api.schemas import (
    CredentialsOut,
    DeviceCreatedOut,
    DeviceIn,
    DeviceOut,
    SiteIn,
    SiteOut,
)

router = APIRouter(prefix="/api", tags=["registry"])


@router.get("/sites")
async def list_sites(gateway: GatewayDep, who: PrincipalDep) -> list[SiteOut]:
    return [SiteOut.of(s) for s in visible_sites(gateway, who)]


@router.post("/sites", status_code=status.HTTP_201_CREATED)
async def add_site(body: SiteIn, gateway: GatewayDep, who: RegistrarDep) -> SiteOut:
    site = body.to_site()
    if who.scope.enterprise is not None:
        site = dataclasses.replace(site, enterprise=who.scope.enterprise)
    if not who.scope.allows_site(site):  # a scope that is not an enterprise's
        raise HTTPException(403, "this site would be outside your own scope")
    if who.scope.enterprise is not None:
        require_known_village(gateway, site.village)
    return SiteOut.of(await gateway.registry.add_site(site, who.name))


@router.get("/devices")
async def list_devices(
    gateway: GatewayDep, who: PrincipalDep, site_id: str | None = None
) -> list[DeviceOut]:
    visible = visible_device_ids(gateway, who)
    return [
        DeviceOut.of(d, gateway)
        for d in gateway.registry.devices()
        if (site_id is None or d.site_id == site_id) and (visible is None or d.id in visible)
    ]


@router.get("/devices/{device_id}")
async def get_device(device_id: str, gateway: GatewayDep, who: PrincipalDep) -> DeviceOut:
    return DeviceOut.of(await visible_device(gateway, who, device_id), gateway)


@router.post("/devices", status_code=status.HTTP_201_CREATED)
async def add_device(
    body: DeviceIn, gateway: GatewayDep, who: RegistrarDep, response: Response
) -> DeviceCreatedOut:
    """Register a device; with broker accounts on, its MQTT secret is in this answer only."""
    device = body.to_device()
    # Out of scope reads exactly like not registered (the registry's own sentences).
    if not site_visible(gateway, who, device.site_id):
        raise HTTPException(422, f"site {device.site_id!r} not found")
    if device.parent_id is not None:
        parent = await gateway.registry.find_device(device.parent_id)
        if parent is not None and not site_visible(gateway, who, parent.site_id):
            raise HTTPException(422, f"parent device {device.parent_id!r} not found")
    with account_errors(not_found=422):
        enrolment = await gateway.accounts.add(device, who.name)
    device = enrolment.device
    no_store(response)
    out = DeviceOut.of(device, gateway)
    creds = enrolment.credentials
    return DeviceCreatedOut(
        **out.model_dump(), credentials=CredentialsOut.of(creds) if creds else None
    )


@router.post("/devices/{device_id}/secret")
async def rotate_device_secret(
    device_id: str, gateway: GatewayDep, who: RegistrarDep, response: Response
) -> CredentialsOut:
    """Issue a new MQTT secret; the old one stops working and its session is cut."""
    await visible_device(gateway, who, device_id)
    with account_errors():
        creds = await gateway.accounts.rotate(device_id, who.name)
    no_store(response)
    return CredentialsOut.of(creds)


@router.post("/devices/{device_id}/revoke")
async def revoke_device(device_id: str, gateway: GatewayDep, who: RegistrarDep) -> DeviceOut:
    """Cut the device off for good: the broker disconnects it, the gateway ignores it.

    Idempotent: if the broker could not be reached (503), the device is revoked in the
    registry already; calling again retries the broker.
    """
    await visible_device(gateway, who, device_id)
    with account_errors():
        await gateway.accounts.revoke(device_id, who.name)
    return DeviceOut.of(await gateway.registry.get_device(device_id), gateway)


@router.get("/profiles")
async def list_profiles(gateway: GatewayDep, _: PrincipalDep) -> list[dict[str, Any]]:
    return [p.model_dump(mode="json") for p in gateway.profiles.values()]
