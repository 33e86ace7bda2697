"""Enterprises: their working hours, shutdown orders (停产整顿) and what their meters are
judged against.

Everybody sees only the enterprises in their scope (an enterprise user: its own; a
community officer: those with a site in their villages); any other id is answered
404 exactly like a missing one. Only administrators and duty officers set hours and
order shutdowns (403 for everybody else, before anything is looked up); every change
is audited by the registry with the caller as the actor. An enterprise that only its
sites name (``Site.enterprise``) is shown with default hours until it is registered.
Lifting an order early is ``ewg enterprise shutdown end`` (CLI).
"""

from __future__ import annotations

import re
from datetime import datetime

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field

from gateway.api.deps import GatewayDep, PrincipalDep, TownDep
from gateway.api.schemas import ID, iso
from gateway.auth import Principal
from gateway.errors import NotFoundError
from gateway.model import now_ms
from gateway.registry_enterprises import InvalidEnterpriseError
from gateway.registry_model import Enterprise, ShutdownPeriod, check_timezone
from gateway.scope import TOWN, Scope
from gateway.service import Gateway

router = APIRouter(prefix="/api", tags=["enterprises"])


class EnterpriseIn(BaseModel):
    name: str = Field(default="", max_length=200)
    hours: str = Field(default="08:00-18:00", examples=["08:00-18:00"])
    days: str = Field(default="1-5", description="ISO weekdays, 1 = Monday", examples=["1-5"])
    timezone: str = "Asia/Shanghai"
    baseline_day_kwh: float | None = Field(default=None, ge=0)
    baseline_load_kw: float | None = Field(default=None, ge=0)


class ShutdownIn(BaseModel):
    """Times without an offset are read in the enterprise's timezone."""

    start: datetime
    end: datetime
    reason: str = Field(default="", max_length=500)
    ordered_by: str = Field(default="", max_length=200)
    kind: str = Field(default="shutdown", pattern="^(shutdown|holiday)$")


class ShutdownOut(BaseModel):
    id: int
    enterprise_id: str
    kind: str
    start_ms: int
    end_ms: int
    start: str | None
    end: str | None
    reason: str
    ordered_by: str
    created_by: str
    created_at: str | None

    @classmethod
    def of(cls, p: ShutdownPeriod, tz: str) -> ShutdownOut:
        return cls(
            id=p.id,
            enterprise_id=p.enterprise_id,
            kind=p.kind,
            start_ms=p.start_ms,
            end_ms=p.end_ms,
            start=iso(p.start_ms, tz),
            end=iso(p.end_ms, tz),
            reason=p.reason,
            ordered_by=p.ordered_by,
            created_by=p.created_by,
            created_at=iso(p.created_ms or None, tz),
        )


class MeterOut(BaseModel):
    """A power meter of the enterprise and the baselines it is judged against now
    (configured, or learned; None until enough quiet days were seen)."""

    device_id: str
    baseline_day_kwh: float | None
    baseline_load_kw: float | None


class EnterpriseOut(EnterpriseIn):
    id: str
    #: The shutdown or holiday in force now, if any.
    current: ShutdownOut | None = None
    shutdowns: list[ShutdownOut] = []
    meters: list[MeterOut] = []

    @classmethod
    def of(cls, e: Enterprise, gateway: Gateway, now_ms: int, scope: Scope = TOWN) -> EnterpriseOut:
        registry = gateway.registry
        calendar = registry.calendar(e.id)
        current = calendar.period_at(now_ms) if calendar else None
        # Only the meters at sites the caller may see: a community officer sees an
        # enterprise with a site in its villages, not its meters in other villages.
        sites = {s.id for s in registry.sites() if s.enterprise == e.id and scope.allows_site(s)}
        meters = []
        for d in registry.devices():
            if d.site_id in sites and gateway.production_watches(d.id):
                day, load = gateway.production.baselines(d.id)
                meters.append(MeterOut(device_id=d.id, baseline_day_kwh=day, baseline_load_kw=load))
        return cls(
            id=e.id,
            name=e.name,
            hours=e.hours,
            days=e.days,
            timezone=e.timezone,
            baseline_day_kwh=e.baseline_day_kwh,
            baseline_load_kw=e.baseline_load_kw,
            current=None if current is None else ShutdownOut.of(current, e.timezone),
            shutdowns=[ShutdownOut.of(p, e.timezone) for p in registry.shutdowns(e.id)],
            meters=meters,
        )


def _known(gateway: Gateway, enterprise_id: str) -> Enterprise | None:
    """The registered enterprise, or (with default hours, not yet registered) one that
    only its sites name; None if neither."""
    found = gateway.registry.find_enterprise(enterprise_id)
    if found is not None:
        return found
    if any(s.enterprise == enterprise_id for s in gateway.registry.sites()):
        return Enterprise(enterprise_id)
    return None


def _visible(gateway: Gateway, principal: Principal, enterprise: Enterprise) -> bool:
    scope = principal.scope
    if scope.town_wide:
        return True
    if scope.enterprise is not None and scope.enterprise != enterprise.id:
        return False
    return any(
        s.enterprise == enterprise.id and scope.allows_site(s) for s in gateway.registry.sites()
    )


def _visible_enterprise(gateway: Gateway, principal: Principal, enterprise_id: str) -> Enterprise:
    """The enterprise, or NotFoundError (404) if it is unknown *or* outside the scope."""
    enterprise = _known(gateway, enterprise_id)
    if enterprise is None or not _visible(gateway, principal, enterprise):
        raise NotFoundError(f"enterprise {enterprise_id!r} not found")
    return enterprise


def _ms(value: datetime, timezone: str) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=check_timezone(timezone))
    return int(value.timestamp() * 1000)


def _unprocessable(exc: InvalidEnterpriseError) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc))


@router.get("/enterprises")
async def list_enterprises(gateway: GatewayDep, who: PrincipalDep) -> list[EnterpriseOut]:
    """Registered enterprises and those only their sites name (default hours), in scope."""
    ids = {e.id for e in gateway.registry.enterprises()}
    ids.update(s.enterprise for s in gateway.registry.sites() if s.enterprise)
    now = now_ms()
    found = (_known(gateway, i) for i in sorted(ids))
    return [
        EnterpriseOut.of(e, gateway, now, who.scope)
        for e in found
        if e and _visible(gateway, who, e)
    ]


@router.get("/enterprises/{enterprise}")
async def get_enterprise(enterprise: str, gateway: GatewayDep, who: PrincipalDep) -> EnterpriseOut:
    found = _visible_enterprise(gateway, who, enterprise)
    return EnterpriseOut.of(found, gateway, now_ms(), who.scope)


@router.put("/enterprises/{enterprise}")
async def set_enterprise(
    enterprise: str, body: EnterpriseIn, gateway: GatewayDep, who: TownDep
) -> EnterpriseOut:
    """Register an enterprise (the ``enterprise`` of its sites) or replace its hours."""
    if not re.match(ID, enterprise):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "not a valid enterprise id")
    try:
        stored = await gateway.registry.set_enterprise(
            Enterprise(enterprise, **body.model_dump()), who.name
        )
    except InvalidEnterpriseError as exc:
        raise _unprocessable(exc) from None
    return EnterpriseOut.of(stored, gateway, now_ms())


@router.get("/enterprises/{enterprise}/shutdowns")
async def list_shutdowns(
    enterprise: str, gateway: GatewayDep, who: PrincipalDep
) -> list[ShutdownOut]:
    found = _visible_enterprise(gateway, who, enterprise)
    return [ShutdownOut.of(p, found.timezone) for p in gateway.registry.shutdowns(found.id)]


@router.post("/enterprises/{enterprise}/shutdowns", status_code=status.HTTP_201_CREATED)
async def add_shutdown(
    enterprise: str, body: ShutdownIn, gateway: GatewayDep, who: TownDep
) -> ShutdownOut:
    """Order a shutdown (or declare a holiday). An enterprise only its sites name is
    registered with default hours first (audited as such), so the order is never lost."""
    found = _visible_enterprise(gateway, who, enterprise)
    tz = found.timezone
    period = ShutdownPeriod(
        id=0,
        enterprise_id=found.id,
        start_ms=_ms(body.start, tz),
        end_ms=_ms(body.end, tz),
        reason=body.reason,
        ordered_by=body.ordered_by,
        kind=body.kind,
    )
    try:
        if gateway.registry.find_enterprise(found.id) is None:
            await gateway.registry.set_enterprise(found, who.name)
        stored = await gateway.registry.add_shutdown(period, who.name)
    except InvalidEnterpriseError as exc:
        raise _unprocessable(exc) from None
    return ShutdownOut.of(stored, tz)
