"""What the API accepts and returns (pydantic at the edge; dataclasses inside)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from alerts.model import Alert, AlertClass, AlertState, Disposition, Severity
from gateway.model import DeadLetter, Reading
from gateway.registry_model import Device, Site
from gateway.service import Gateway

ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


def iso(ms: int | None, tz: str) -> str | None:
    if ms is None:
        return None
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .astimezone(ZoneInfo(tz))
        .isoformat(timespec="milliseconds")
    )


class SiteIn(BaseModel):
    id: str = Field(pattern=ID)
    name: str = Field(min_length=1, max_length=200)
    village: str = Field(min_length=1, max_length=100)
    industry: str = Field(min_length=1, max_length=100)
    address: str = Field(default="", max_length=300)
    enterprise: str = Field(default="", max_length=200)

    def to_site(self) -> Site:
        return Site(**self.model_dump())


class SiteOut(SiteIn):
    @classmethod
    def of(cls, site: Site) -> SiteOut:
        return cls(
            id=site.id,
            name=site.name,
            village=site.village,
            industry=site.industry,
            address=site.address,
            enterprise=site.enterprise,
        )


class DeviceIn(BaseModel):
    id: str = Field(pattern=ID)
    profile: str
    site_id: str
    name: str = Field(default="", max_length=200)
    parent_id: str | None = None

    def to_device(self) -> Device:
        return Device(**self.model_dump())


class DeviceOut(DeviceIn):
    online: bool | None = None
    last_seen: str | None = None
    telemetry_topic: str
    event_topic: str
    status_topic: str

    @classmethod
    def of(cls, device: Device, gateway: Gateway) -> DeviceOut:
        last = gateway.detectors.last_seen(device.id)
        return cls(
            id=device.id,
            profile=device.profile,
            site_id=device.site_id,
            name=device.name,
            parent_id=device.parent_id,
            online=gateway.detectors.is_online(device.id),
            last_seen=iso(last, gateway.settings.timezone),
            telemetry_topic=f"ewg/v1/{device.id}/telemetry",
            event_topic=f"ewg/v1/{device.id}/event",
            status_topic=f"ewg/v1/{device.id}/status",
        )


class AlertOut(BaseModel):
    id: int
    device_id: str
    site_id: str
    site_name: str
    village: str
    industry: str
    address: str
    rule: str
    title_zh: str
    title_en: str
    severity: Severity
    alert_class: AlertClass
    hazard: str
    state: AlertState
    acknowledged: bool
    acknowledged_by: str | None
    raised_at: str
    raised_at_ms: int
    updated_at: str
    value: float | None
    unit: str
    count: int
    message: str
    cleared_at: str | None
    closed_at: str | None
    closed_by: str | None
    disposition: Disposition | None
    note: str

    @classmethod
    def of(cls, a: Alert, gateway: Gateway) -> AlertOut:
        tz = gateway.settings.timezone
        site = gateway.registry.find_site(a.site_id)
        profile = gateway.registry.profile_of(a.device_id)
        title_zh = title_en = a.rule
        unit = ""
        if profile is not None:
            rule = next((r for r in profile.rules if r.name == a.rule), None)
            if rule is not None:
                title_zh, title_en = rule.title_zh, rule.title_en
                unit = profile.metrics[rule.metric].unit
            elif a.rule in profile.events:
                title_zh, title_en = (
                    profile.events[a.rule].title_zh,
                    profile.events[a.rule].title_en,
                )
        if a.rule == "offline":
            title_zh, title_en = "设备离线", "Device offline"
        return cls(
            id=a.id,
            device_id=a.device_id,
            site_id=a.site_id,
            site_name=site.name if site else "",
            village=site.village if site else "",
            industry=site.industry if site else "",
            address=site.address if site else "",
            rule=a.rule,
            title_zh=title_zh,
            title_en=title_en,
            severity=a.severity,
            alert_class=a.alert_class,
            hazard=a.hazard,
            state=a.state,
            acknowledged=a.acknowledged,
            acknowledged_by=a.acknowledged_by,
            raised_at=iso(a.raised_at, tz) or "",
            raised_at_ms=a.raised_at,
            updated_at=iso(a.updated_at, tz) or "",
            value=a.value,
            unit=unit,
            count=a.count,
            message=a.message,
            cleared_at=iso(a.cleared_at, tz),
            closed_at=iso(a.closed_at, tz),
            closed_by=a.closed_by,
            disposition=a.disposition,
            note=a.note,
        )


class TransitionOut(BaseModel):
    ts: str
    actor: str
    from_state: AlertState | None
    to_state: AlertState
    note: str


class AckIn(BaseModel):
    note: str = Field(default="", max_length=2000)


class CloseIn(BaseModel):
    disposition: Disposition
    note: str = Field(default="", max_length=2000)


class ReadingOut(BaseModel):
    ts: str
    ts_ms: int
    value: float
    ts_assumed: bool

    @classmethod
    def of(cls, r: Reading, tz: str) -> ReadingOut:
        return cls(ts=iso(r.ts_ms, tz) or "", ts_ms=r.ts_ms, value=r.value, ts_assumed=r.ts_assumed)


class DeadLetterOut(BaseModel):
    id: int | None
    received_at: str
    topic: str
    reason: str
    detail: str
    device_id: str | None
    payload_text: str | None
    payload_base64: str

    @classmethod
    def of(cls, d: DeadLetter, tz: str) -> DeadLetterOut:
        try:
            text: str | None = d.payload.decode("utf-8")[:4096]
        except UnicodeDecodeError:
            text = None
        return cls(
            id=d.id,
            received_at=iso(d.received_ms, tz) or "",
            topic=d.topic,
            reason=d.reason,
            detail=d.detail,
            device_id=d.device_id,
            payload_text=text,
            payload_base64=base64.b64encode(d.payload[:4096]).decode(),
        )
