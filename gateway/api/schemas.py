"""What the API accepts and returns (pydantic at the edge; dataclasses inside)."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from alerts.incidents import Incident
from alerts.model import Alert, AlertClass, AlertState, Disposition, Severity
from alerts.silence import Silence, SilenceState
from gateway.broker_accounts import Credentials
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
    room: str | None = Field(default=None, max_length=100)
    circuit: str | None = Field(default=None, max_length=100)

    def to_device(self) -> Device:
        return Device(**self.model_dump())


class DeviceOut(DeviceIn):
    online: bool | None = None
    last_seen: str | None = None
    telemetry_topic: str
    event_topic: str
    status_topic: str
    #: When its current MQTT secret was issued (the secret itself is never shown again).
    secret_issued_at: str | None = None
    #: Set once the device is revoked: the broker refuses it and the gateway ignores it.
    revoked_at: str | None = None
    revoked_by: str | None = None

    @classmethod
    def of(cls, device: Device, gateway: Gateway) -> DeviceOut:
        tz = gateway.settings.timezone
        last = gateway.detectors.last_seen(device.id)
        access = gateway.registry.access(device.id)
        return cls(
            id=device.id,
            profile=device.profile,
            site_id=device.site_id,
            name=device.name,
            parent_id=device.parent_id,
            room=device.room,
            circuit=device.circuit,
            online=gateway.detectors.is_online(device.id),
            last_seen=iso(last, tz),
            telemetry_topic=f"ewg/v1/{device.id}/telemetry",
            event_topic=f"ewg/v1/{device.id}/event",
            status_topic=f"ewg/v1/{device.id}/status",
            secret_issued_at=iso(access.secret_issued_ms, tz),
            revoked_at=iso(access.revoked_ms, tz),
            revoked_by=access.revoked_by,
        )


class CredentialsOut(BaseModel):
    """A device's MQTT connection details with its secret: returned once, never stored."""

    broker_url: str
    client_id: str
    username: str
    secret: str
    topics: list[str]
    mosquitto_pub: str

    @classmethod
    def of(cls, c: Credentials) -> CredentialsOut:
        return cls(
            broker_url=c.broker_url,
            client_id=c.client_id,
            username=c.username,
            secret=c.secret,
            topics=list(c.topics),
            mosquitto_pub=c.mosquitto_pub,
        )


class DeviceCreatedOut(DeviceOut):
    #: None when the broker is anonymous (``broker_accounts = "none"``).
    credentials: CredentialsOut | None


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
    #: The incident it belongs to (one site's alerts close together in time).
    incident_id: int | None = None
    #: The silence muting it, if any.
    silenced_by: int | None = None
    #: The alert explaining it (parent offline, confirmed fire), if any.
    suppressed_by: int | None = None
    #: Silenced or suppressed: shown, but nobody is paged for it.
    muted: bool = False
    #: Its signal keeps flipping; held open as one alert until it settles.
    flapping: bool = False
    #: The site's owner (an enterprise user) said "we are on it"; not an acknowledgement:
    #: escalation and the duty board go on until the office's staff acknowledge.
    owner_acknowledged_by: str | None = None
    owner_acknowledged_at: str | None = None

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
            incident_id=a.incident_id,
            silenced_by=a.silenced_by,
            suppressed_by=a.suppressed_by,
            muted=a.muted,
            flapping=a.flapping,
            owner_acknowledged_by=a.owner_acknowledged_by,
            owner_acknowledged_at=iso(a.owner_acknowledged_at, tz),
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


class SilenceIn(BaseModel):
    """A silence to set: at least one matcher, an end (``ends_at_ms`` or ``duration_s``)
    and a reason. Unknown fields are refused: a misspelt matcher must not widen it."""

    model_config = ConfigDict(extra="forbid")

    site_id: str | None = Field(default=None, min_length=1, max_length=64)
    device_id: str | None = Field(default=None, min_length=1, max_length=64)
    rule: str | None = Field(default=None, min_length=1, max_length=100)
    alert_class: AlertClass | None = None
    #: Defaults to now.
    starts_at_ms: int | None = Field(default=None, ge=0)
    ends_at_ms: int | None = Field(default=None, ge=0)
    duration_s: int | None = Field(default=None, gt=0)
    reason: str = Field(min_length=1, max_length=500)


class SilenceOut(BaseModel):
    id: int
    site_id: str | None
    device_id: str | None
    rule: str | None
    alert_class: AlertClass | None
    state: SilenceState
    starts_at: str
    starts_at_ms: int
    ends_at: str
    ends_at_ms: int
    reason: str
    created_by: str
    created_at: str
    #: Who ended it before its planned end.
    ended_by: str | None
    #: The open alerts it mutes right now.
    muted_alert_ids: list[int]

    @classmethod
    def of(cls, silence: Silence, gateway: Gateway) -> SilenceOut:
        tz = gateway.settings.timezone
        m = silence.matchers
        return cls(
            id=silence.id,
            site_id=m.site_id,
            device_id=m.device_id,
            rule=m.rule,
            alert_class=m.alert_class,
            state=silence.state(gateway.silences.now()),
            starts_at=iso(silence.starts_at, tz) or "",
            starts_at_ms=silence.starts_at,
            ends_at=iso(silence.ends_at, tz) or "",
            ends_at_ms=silence.ends_at,
            reason=silence.reason,
            created_by=silence.created_by,
            created_at=iso(silence.created_at, tz) or "",
            ended_by=silence.ended_by,
            muted_alert_ids=sorted(
                a.id for a in gateway.alerts.view if a.silenced_by == silence.id
            ),
        )


class IncidentOut(BaseModel):
    id: int
    site_id: str
    site_name: str
    village: str
    industry: str
    state: str  # "open" or "closed"
    #: The worst severity among its open alerts.
    severity: Severity
    opened_at: str
    opened_at_ms: int
    closed_at: str | None
    alert_ids: list[int]

    @classmethod
    def of(cls, incident: Incident, gateway: Gateway) -> IncidentOut:
        tz = gateway.settings.timezone
        site = gateway.registry.find_site(incident.site_id)
        return cls(
            id=incident.id,
            site_id=incident.site_id,
            site_name=site.name if site else "",
            village=site.village if site else "",
            industry=site.industry if site else "",
            state="open" if incident.is_open else "closed",
            severity=incident.severity,
            opened_at=iso(incident.opened_at, tz) or "",
            opened_at_ms=incident.opened_at,
            closed_at=iso(incident.closed_at, tz),
            alert_ids=list(incident.alert_ids),
        )


class IncidentDetailOut(IncidentOut):
    #: Worst severity first, then open before closed, then oldest first.
    alerts: list[AlertOut]
