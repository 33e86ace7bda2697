"""The enterprise portal's API: register own sites and devices, get each device's connection sheet.

Enterprise users register what they run themselves; administrators and duty officers may
use the same routes (for any enterprise). Everything else the portal shows comes from the
ordinary routes, which cut every answer to the caller's scope: ``/api/console/sites`` and
``/api/console/devices/{id}`` (devices with state and newest readings), ``/api/telemetry``,
``/api/alerts`` (+ ``/ack``), ``/api/rectifications`` (+ ``/report`` with evidence) and
``/api/profiles``. Only what those cannot do lives here:

* a site registered by an enterprise user always belongs to that user's enterprise, and
  must lie in one of the town's known villages (a typo would hide it from its community
  officer);
* a device answer carries the :mod:`gateway.connection_sheet`, with the secret only in the
  response that issued it (``Cache-Control: no-store``);
* ids are optional: the portal picks free ones, so an enterprise user need not guess ids
  that might be taken by someone else.

Another enterprise's site or device answers 404 exactly like a missing one. Every change
is audited by the registry (``site.add``, ``device.add``, ``device.secret.rotate``) with the
caller as actor.
"""

from __future__ import annotations

import secrets

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import BaseModel, ConfigDict, Field

from gateway.api.account_answers import account_errors, no_store
from gateway.api.deps import (
    GatewayDep,
    PrincipalDep,
    RegistrarDep,
    known_villages,
    require_known_village,
    visible_device,
    visible_site,
    visible_sites,
)
from gateway.api.schemas import ID, DeviceOut, SiteOut
from gateway.auth import Principal
from gateway.broker_accounts import Credentials
from gateway.connection_sheet import ConnectionSheet, sheet_for
from gateway.registry_model import Device, Site
from gateway.scope import Role
from gateway.service import Gateway

router = APIRouter(prefix="/api/portal", tags=["portal"])

#: Offered in the site form besides the industries already registered (the town's plan).
INDUSTRIES = (
    "small_shop",
    "workshop",
    "factory",
    "rental_housing",
    "residential",
    "dust_factory",
    "fuel_station",
    "mine",
)


class PortalSiteIn(BaseModel):
    """A site to register. ``enterprise`` is for administrators and duty officers; an
    enterprise user's site is always their own enterprise's."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, pattern=ID)
    name: str = Field(min_length=1, max_length=200)
    village: str = Field(min_length=1, max_length=100)
    industry: str = Field(min_length=1, max_length=100)
    address: str = Field(default="", max_length=300)
    enterprise: str | None = Field(default=None, max_length=200)


class PortalDeviceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    site_id: str = Field(pattern=ID)
    profile: str = Field(min_length=1, max_length=100)
    name: str = Field(default="", max_length=200)
    #: Left out, the portal picks ``<site id>-NN``.
    id: str | None = Field(default=None, pattern=ID)


class LastWillOut(BaseModel):
    topic: str
    payload: str
    retain: bool


class SheetOut(BaseModel):
    """The device's connection sheet; ``secret`` is set only in the answer that issued it."""

    device_id: str
    profile: str
    broker_url: str
    host: str
    port: int
    tls: bool
    client_id: str
    username: str | None
    secret: str | None
    #: Whether the broker wants a username and secret (``broker_accounts = "dynsec"``).
    accounts: bool
    telemetry_topic: str
    event_topic: str
    status_topic: str
    qos: int
    last_will: LastWillOut
    example_payload: str
    mosquitto_pub: str

    @classmethod
    def of(cls, sheet: ConnectionSheet) -> SheetOut:
        return cls.model_validate(sheet.to_json())


class RegisteredOut(BaseModel):
    device: DeviceOut
    sheet: SheetOut


class ChoicesOut(BaseModel):
    """What the registration forms offer."""

    #: The caller's enterprise; None for town-wide roles (they name one per site).
    enterprise: str | None
    villages: list[str]
    industries: list[str]
    #: Whether devices get their own broker account and secret.
    accounts: bool


@router.get("/choices")
async def choices(gateway: GatewayDep, who: PrincipalDep) -> ChoicesOut:
    """Villages and industries for the site form; village names are the town's, not data."""
    industries = {s.industry for s in visible_sites(gateway, who)} | set(INDUSTRIES)
    return ChoicesOut(
        enterprise=who.scope.enterprise,
        villages=known_villages(gateway),
        industries=sorted(industries),
        accounts=gateway.accounts.enabled,
    )


def _free_site_id(gateway: Gateway) -> str:
    while True:
        candidate = "site-" + secrets.token_hex(3)
        if gateway.registry.find_site(candidate) is None:
            return candidate


def _enterprise_for(who: Principal, asked: str | None) -> str:
    if who.role is Role.ENTERPRISE:
        own = who.scope.enterprise or ""
        if asked not in (None, "", own):
            raise HTTPException(422, "an enterprise user registers sites for their own enterprise")
        return own
    return (asked or "").strip()


@router.post("/sites", status_code=status.HTTP_201_CREATED)
async def add_site(body: PortalSiteIn, gateway: GatewayDep, who: RegistrarDep) -> SiteOut:
    """Register a site; an enterprise user's belongs to their enterprise, in a known village."""
    enterprise = _enterprise_for(who, body.enterprise)
    if who.role is Role.ENTERPRISE:
        require_known_village(gateway, body.village)
    if body.id is not None and gateway.registry.find_site(body.id) is not None:
        raise HTTPException(409, f"site id {body.id!r} is taken; choose another or leave it out")
    site = Site(
        id=body.id or _free_site_id(gateway),
        name=body.name.strip(),
        village=body.village.strip(),
        industry=body.industry.strip(),
        address=body.address.strip(),
        enterprise=enterprise,
    )
    return SiteOut.of(await gateway.registry.add_site(site, who.name))


async def _free_device_id(gateway: Gateway, site: Site) -> str:
    n = 1
    while True:
        candidate = f"{site.id[:56]}-{n:02d}"
        if await gateway.registry.find_device(candidate) is None:
            return candidate
        n += 1


def _sheet(gateway: Gateway, device: Device, credentials: Credentials | None) -> SheetOut:
    return SheetOut.of(sheet_for(gateway.accounts, device, credentials))


@router.post("/devices", status_code=status.HTTP_201_CREATED)
async def add_device(
    body: PortalDeviceIn, gateway: GatewayDep, who: RegistrarDep, response: Response
) -> RegisteredOut:
    """Register a device at an own site; the answer's sheet holds its secret, this once."""
    site = visible_site(gateway, who, body.site_id)
    if body.profile not in gateway.profiles:
        raise HTTPException(
            422, f"profile {body.profile!r} not found; known: {', '.join(sorted(gateway.profiles))}"
        )
    device_id = body.id or await _free_device_id(gateway, site)
    device = Device(device_id, body.profile, site.id, body.name.strip())
    with account_errors(not_found=422):
        enrolment = await gateway.accounts.add(device, who.name)
    no_store(response)
    return RegisteredOut(
        device=DeviceOut.of(enrolment.device, gateway),
        sheet=_sheet(gateway, enrolment.device, enrolment.credentials),
    )


@router.get("/devices/{device_id}/sheet")
async def device_sheet(device_id: str, gateway: GatewayDep, who: PrincipalDep) -> SheetOut:
    """The sheet again, without the secret (rotate to get a new one)."""
    return _sheet(gateway, await visible_device(gateway, who, device_id), None)


@router.post("/devices/{device_id}/secret")
async def rotate_secret(
    device_id: str, gateway: GatewayDep, who: RegistrarDep, response: Response
) -> SheetOut:
    """A new secret for an own device (the old one stops working at once), on a new sheet."""
    device = await visible_device(gateway, who, device_id)
    with account_errors():
        credentials = await gateway.accounts.rotate(device.id, who.name)
    no_store(response)
    return _sheet(gateway, device, credentials)
