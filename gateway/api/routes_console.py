"""The console's pages, and the read-only views they need that the plain API lacks.

The pages (``/*.html`` next to the board at ``/``, with their ES modules, styles and the
vendored chart library) are static files: they hold no data, so they are public, like
``/docs``. Every piece of data comes from an API route that checks the caller and cuts the
answer to the caller's scope.

The views join what a duty officer looks at together: a site with its devices, each
device with its online state and newest readings, and an alert with its site, device,
the metric to chart and the other sensors at the site. An object outside the caller's
scope answers 404, exactly like one that does not exist.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import APIRouter, HTTPException, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel

from alerts.model import Alert, Severity
from gateway.api.deps import (
    GatewayDep,
    PrincipalDep,
    visible_alert,
    visible_device,
    visible_site,
    visible_sites,
)
from gateway.api.schemas import AlertOut, SiteOut, iso
from gateway.profiles import Profile
from gateway.registry_model import Device
from gateway.service import Gateway

router = APIRouter(tags=["console"])

CONSOLE_DIR = Path(__file__).resolve().parent.parent / "console"

#: What the console directory may serve, by suffix; anything else (README, LICENSE) is a 404.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
}

#: The pages load scripts and styles from this origin only and cannot be framed. Inline
#: ``style`` stays allowed: the chart library sizes its canvas through element styles.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; connect-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
)


def _console_file(relative: str) -> FileResponse:
    path = (CONSOLE_DIR / relative).resolve()
    media_type = CONTENT_TYPES.get(path.suffix)
    if media_type is None or not path.is_relative_to(CONSOLE_DIR) or not path.is_file():
        raise HTTPException(404, "not found")
    return FileResponse(
        path,
        media_type=media_type,
        headers={
            # Revalidate every time: an updated gateway must not run yesterday's script.
            "Cache-Control": "no-cache",
            "Content-Security-Policy": CONTENT_SECURITY_POLICY,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
        },
    )


# The pages sit at the root next to ``/`` (the board), so their relative links and module
# imports work from any of them. ``{name}`` holds no slash: ``/api/...`` never gets here, and
# the app's own routes (``/docs``, ``/metrics``) are matched before this router. Plain ``def``:
# FastAPI runs them in its thread pool, so resolving and stat-ing the file never blocks the loop.
@router.get("/", include_in_schema=False)
def board() -> FileResponse:
    """The duty board; with the same security headers as every other page."""
    return _console_file("index.html")


@router.get("/{name}", include_in_schema=False)
def console_file(name: str) -> FileResponse:
    """A console page or script (``/login.html``, ``/common.js``, ...)."""
    return _console_file(name)


@router.get("/vendor/{name:path}", include_in_schema=False)
def vendor_file(name: str) -> FileResponse:
    """The vendored libraries (``/vendor/uplot/uPlot.esm.js``)."""
    return _console_file(f"vendor/{name}")


class LastReading(BaseModel):
    metric: str
    value: float
    unit: str
    ts: str
    ts_ms: int


class MetricInfo(BaseModel):
    name: str
    unit: str
    kind: str
    description: str


class DeviceView(BaseModel):
    id: str
    name: str
    site_id: str
    profile: str
    profile_title_zh: str
    profile_title_en: str
    parent_id: str | None
    #: None when the device has never been heard from (nor is it expected yet).
    online: bool | None
    last_seen: str | None
    last_seen_ms: int | None
    revoked: bool
    #: The newest reading of each metric, in the profile's metric order.
    last: list[LastReading]


class SeverityCounts(BaseModel):
    red: int = 0
    orange: int = 0
    yellow: int = 0
    blue: int = 0

    def add(self, severity: Severity) -> None:
        setattr(self, severity.value, getattr(self, severity.value) + 1)


class SiteView(SiteOut):
    devices: list[DeviceView]
    devices_online: int
    devices_offline: int
    open_alerts: SeverityCounts


class RuleInfo(BaseModel):
    name: str
    metric: str
    direction: str
    title_zh: str
    title_en: str
    alarm: float
    prewarning: float | None


class DeviceDetail(BaseModel):
    device: DeviceView
    site: SiteOut
    metrics: list[MetricInfo]
    rules: list[RuleInfo]
    open_alerts: list[AlertOut]


class AlertContext(BaseModel):
    alert: AlertOut
    site: SiteOut
    device: DeviceView
    metrics: list[MetricInfo]
    #: The metric to chart first: the rule's own, or the profile's first for an event.
    metric: str | None
    #: The rule that raised it when it is a threshold rule (its levels are drawn on the chart).
    rule: RuleInfo | None
    #: The other devices at the same site, with their state and newest readings.
    related: list[DeviceView]


def _metrics(profile: Profile | None) -> list[MetricInfo]:
    if profile is None:
        return []
    return [
        MetricInfo(name=name, unit=m.unit, kind=m.kind, description=m.description)
        for name, m in profile.metrics.items()
    ]


def _rules(profile: Profile | None) -> list[RuleInfo]:
    if profile is None:
        return []
    return [
        RuleInfo(
            name=r.name,
            metric=r.metric,
            direction=r.direction,
            title_zh=r.title_zh,
            title_en=r.title_en,
            alarm=r.alarm.value,
            prewarning=r.prewarning.value if r.prewarning else None,
        )
        for r in profile.rules
    ]


async def _device_view(gateway: Gateway, device: Device) -> DeviceView:
    tz = gateway.settings.timezone
    profile = gateway.registry.profile_of(device.id)
    latest = await gateway.store.latest(device.id)
    order = list(profile.metrics) if profile else []
    names = sorted(latest, key=lambda m: (order.index(m) if m in order else len(order), m))
    last = [
        LastReading(
            metric=name,
            value=latest[name].value,
            unit=profile.metrics[name].unit if profile and name in profile.metrics else "",
            ts=iso(latest[name].ts_ms, tz) or "",
            ts_ms=latest[name].ts_ms,
        )
        for name in names
    ]
    seen = gateway.detectors.last_seen(device.id)
    return DeviceView(
        id=device.id,
        name=device.name,
        site_id=device.site_id,
        profile=device.profile,
        profile_title_zh=profile.title_zh if profile else device.profile,
        profile_title_en=profile.title_en if profile else device.profile,
        parent_id=device.parent_id,
        online=gateway.detectors.is_online(device.id),
        last_seen=iso(seen, tz),
        last_seen_ms=seen,
        revoked=gateway.registry.is_revoked(device.id),
        last=last,
    )


#: How many devices' newest readings are asked of the store at once: with VictoriaMetrics each
#: is a few HTTP queries, and a town's few thousand devices must not arrive all at once.
STORE_CONCURRENCY = 8


async def _device_views(gateway: Gateway, devices: list[Device]) -> list[DeviceView]:
    gate = asyncio.Semaphore(STORE_CONCURRENCY)

    async def one(device: Device) -> DeviceView:
        async with gate:
            return await _device_view(gateway, device)

    return list(await asyncio.gather(*(one(d) for d in devices)))


def _open_alerts(gateway: Gateway) -> list[Alert]:
    return [a for a in gateway.alerts.view if a.is_open]


@router.get("/api/console/sites")
async def sites(
    gateway: GatewayDep, who: PrincipalDep, village: str | None = None
) -> list[SiteView]:
    """The caller's sites by village/community, each with its devices' state and readings."""
    visible = [s for s in visible_sites(gateway, who) if village is None or s.village == village]
    visible.sort(key=lambda s: (s.village, s.name, s.id))
    ids = {s.id for s in visible}
    devices = [d for d in gateway.registry.devices() if d.site_id in ids]
    views = await _device_views(gateway, devices)
    by_site: dict[str, list[DeviceView]] = {s.id: [] for s in visible}
    for view in views:
        by_site[view.site_id].append(view)
    counts = {s.id: SeverityCounts() for s in visible}
    for alert in _open_alerts(gateway):
        if alert.site_id in counts:
            counts[alert.site_id].add(alert.severity)
    return [
        SiteView(
            **SiteOut.of(s).model_dump(),
            devices=sorted(by_site[s.id], key=lambda d: d.id),
            devices_online=sum(1 for d in by_site[s.id] if d.online is True),
            devices_offline=sum(1 for d in by_site[s.id] if d.online is False),
            open_alerts=counts[s.id],
        )
        for s in visible
    ]


@router.get("/api/console/devices/{device_id}")
async def device_detail(device_id: str, gateway: GatewayDep, who: PrincipalDep) -> DeviceDetail:
    """One device for its page: state, newest readings, metrics to chart, rules, open alerts."""
    device = await visible_device(gateway, who, device_id)
    site = visible_site(gateway, who, device.site_id)
    profile = gateway.registry.profile_of(device.id)
    alerts = sorted(
        (a for a in _open_alerts(gateway) if a.device_id == device.id),
        key=lambda a: (-a.severity.rank, -a.raised_at),
    )
    return DeviceDetail(
        device=await _device_view(gateway, device),
        site=SiteOut.of(site),
        metrics=_metrics(profile),
        rules=_rules(profile),
        open_alerts=[AlertOut.of(a, gateway) for a in alerts],
    )


@router.get("/api/console/alerts/{alert_id}/context")
async def alert_context(
    alert_id: int, gateway: GatewayDep, who: PrincipalDep, response: Response
) -> AlertContext:
    """What the alert page shows around the alert: where, which device, what to chart."""
    alert = await visible_alert(gateway, who, alert_id)
    site = visible_site(gateway, who, alert.site_id)
    device = await gateway.registry.get_device(alert.device_id)
    profile = gateway.registry.profile_of(device.id)
    rule = next((r for r in _rules(profile) if r.name == alert.rule), None)
    metrics = _metrics(profile)
    numeric = [m.name for m in metrics if m.kind == "number"]
    metric = rule.metric if rule else (numeric[0] if numeric else None)
    others = [d for d in gateway.registry.devices() if d.site_id == site.id and d.id != device.id]
    related = await _device_views(gateway, others)
    response.headers["Cache-Control"] = "no-store"
    return AlertContext(
        alert=AlertOut.of(alert, gateway),
        site=SiteOut.of(site),
        device=await _device_view(gateway, device),
        metrics=metrics,
        metric=metric,
        rule=rule,
        related=sorted(related, key=lambda d: d.id),
    )
