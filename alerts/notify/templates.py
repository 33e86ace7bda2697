"""What a notification says, in Chinese and English.

A person woken at 3 a.m. must know from the first line how bad it is and where, and
from the rest which device, what it measured, why *they* are told, and where to click.
Messages are rendered once, when an escalation step fires, and stored with the
delivery: a retry ten minutes later sends the same words, and the delivery log shows
exactly what each person was sent.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from alerts.alerting_config import Contact, Language, Recipient
from alerts.model import Alert, AlertClass, AlertState, Severity
from gateway.errors import NotFoundError
from gateway.profiles import Profile
from gateway.registry_model import Device, Site

SEVERITY_ZH = {Severity.RED: "红色", Severity.ORANGE: "橙色", Severity.YELLOW: "黄色",
               Severity.BLUE: "蓝色"}  # fmt: skip
LEVEL_ZH = {Severity.RED: "一级", Severity.ORANGE: "二级", Severity.YELLOW: "三级",
            Severity.BLUE: "四级"}  # fmt: skip
LEVEL_NO = {Severity.RED: 1, Severity.ORANGE: 2, Severity.YELLOW: 3, Severity.BLUE: 4}
CLASS_ZH = {AlertClass.HAZARD: "隐患报警", AlertClass.FAULT: "设备故障"}
CLASS_EN = {AlertClass.HAZARD: "hazard", AlertClass.FAULT: "equipment fault"}
STATE_ZH = {AlertState.RAISED: "未确认", AlertState.ACKNOWLEDGED: "已确认",
            AlertState.CLEARED: "已恢复（待关闭）", AlertState.CLOSED: "已关闭"}  # fmt: skip
STATE_EN = {AlertState.RAISED: "unacknowledged", AlertState.ACKNOWLEDGED: "acknowledged",
            AlertState.CLEARED: "cleared (to be closed)", AlertState.CLOSED: "closed"}  # fmt: skip
HAZARD_ZH = {
    "fire": "火灾",
    "leakage": "漏电",
    "electrical_leakage": "漏电",
    "overheating": "过热",
    "arc_fault": "故障电弧",
    "explosion_risk": "粉尘爆炸风险",
    "explosion": "爆炸",
    "gas": "可燃气体泄漏",
    "blockage": "除尘器堵塞",
    "offline": "设备离线",
    "battery": "电池",
    "tamper": "防拆",
    "sensor_fault": "探测器故障",
    "signal": "信号",
    "device": "设备",
}

TEMPLATES: dict[Language, dict[str, str]] = {
    "zh": {
        "title": "【{severity_zh}预警】{site_name} {title_zh}",
        "body": (
            "【{severity_zh}预警】{title_zh}\n"
            "场所：{site_name}（{village}）\n"
            "地址：{address}\n"
            "设备：{device_name}（{device_id}）\n"
            "数值：{value_text}\n"
            "级别：{severity_zh}（{level_zh}）· {class_zh} · {hazard_zh}\n"
            "报警时间：{raised_at_text}\n"
            "状态：{state_zh}\n"
            "通知：{recipient_zh}{contact_suffix}，{reason_zh}\n"
            "查看与确认：{link}"
        ),
    },
    "en": {
        "title": "[{severity_en} alert] {title_en} at {site_name}",
        "body": (
            "[{severity_en} alert, level {level_no}] {title_en}\n"
            "Site: {site_name} ({village})\n"
            "Address: {address}\n"
            "Device: {device_name} ({device_id})\n"
            "Value: {value_text}\n"
            "Level: {severity} (level {level_no}), {class_en}, {hazard}\n"
            "Raised: {raised_at_text}\n"
            "State: {state_en}\n"
            "To: {recipient_en}{contact_suffix}; {reason_en}\n"
            "View and acknowledge: {link}"
        ),
    },
}


@dataclass(frozen=True, slots=True)
class AlertFacts:
    """What the registry knows about an alert's place and device, for people to read."""

    site_name: str = ""
    village: str = ""
    address: str = ""
    device_name: str = ""
    title_zh: str = ""
    title_en: str = ""
    unit: str = ""


class RegistryView(Protocol):
    def find_site(self, site_id: str) -> Site | None: ...
    def device(self, device_id: str) -> Device: ...  # NotFoundError if unknown
    def profile_of(self, device_id: str) -> Profile | None: ...


def describe_alert(alert: Alert, registry: RegistryView) -> AlertFacts:
    """Site, device and rule titles as the console shows them (see ``AlertOut.of``)."""
    site = registry.find_site(alert.site_id)
    try:
        device: Device | None = registry.device(alert.device_id)
    except NotFoundError:
        device = None
    profile = registry.profile_of(alert.device_id)
    title_zh = title_en = alert.rule
    unit = ""
    if profile is not None:
        rule = next((r for r in profile.rules if r.name == alert.rule), None)
        if rule is not None:
            title_zh, title_en = rule.title_zh, rule.title_en
            unit = profile.metrics[rule.metric].unit
        elif alert.rule in profile.events:
            event = profile.events[alert.rule]
            title_zh, title_en = event.title_zh, event.title_en
    if alert.rule == "offline":
        title_zh, title_en = "设备离线", "Device offline"
    return AlertFacts(
        site_name=site.name if site else alert.site_id,
        village=site.village if site else "",
        address=site.address if site else "",
        device_name=(device.name if device and device.name else alert.device_id),
        title_zh=title_zh,
        title_en=title_en,
        unit=unit,
    )


@dataclass(frozen=True, slots=True)
class Reason:
    """Why this recipient is told now: a step of the chain, or a reminder."""

    kind: str  # "step" or "repeat"
    number: int  # step 1, 2, ... or reminder 1, 2, ...
    after_s: float
    #: Who escalated at once instead of waiting for the step's time (None: it came due).
    by: str | None = None

    @property
    def zh(self) -> str:
        if self.by is not None:
            what = "提醒" if self.kind == "repeat" else "级通知"
            return f"第 {self.number} {what}：{self.by} 立即升级"
        if self.kind == "repeat":
            return f"第 {self.number} 次提醒：报警 {_duration_zh(self.after_s)}仍未确认"
        if self.after_s <= 0:
            return f"第 {self.number} 级通知（立即）"
        return f"第 {self.number} 级通知：报警 {_duration_zh(self.after_s)}未确认"

    @property
    def en(self) -> str:
        if self.by is not None:
            what = "reminder" if self.kind == "repeat" else "step"
            return f"{what} {self.number}: escalated now by {self.by}"
        if self.kind == "repeat":
            return f"reminder {self.number}: unacknowledged after {_duration_en(self.after_s)}"
        if self.after_s <= 0:
            return f"step {self.number} (immediately)"
        return f"step {self.number}: unacknowledged after {_duration_en(self.after_s)}"


@dataclass(frozen=True, slots=True)
class Message:
    """One rendered notification for one recipient; stored as JSON with its delivery."""

    alert_id: int
    link: str
    recipient: str  # the role's key in the config, e.g. "grid_officer"
    recipient_zh: str
    recipient_en: str
    contact_name: str
    phones: tuple[str, ...]
    emails: tuple[str, ...]
    titles: dict[str, str]  # language -> title line
    bodies: dict[str, str]  # language -> full text
    alert: dict[str, Any] = field(default_factory=dict)  # the alert's fields, for machines
    reason: dict[str, Any] = field(default_factory=dict)

    def title(self, languages: list[Language]) -> str:
        """The titles in ``languages`` joined: an e-mail subject, a robot card's title."""
        return " / ".join(self.titles[lang] for lang in languages if lang in self.titles)

    def text(self, languages: list[Language]) -> str:
        """The bodies in ``languages``, Chinese first by default, separated by a blank line."""
        return "\n\n".join(self.bodies[lang] for lang in languages if lang in self.bodies)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Message:
        data = dict(data)
        data["phones"] = tuple(data.get("phones", ()))
        data["emails"] = tuple(data.get("emails", ()))
        return cls(**data)


def render(
    alert: Alert,
    facts: AlertFacts,
    recipient_key: str,
    recipient: Recipient,
    contact: Contact | None,
    reason: Reason,
    public_url: str,
    timezone: str,
) -> Message:
    """The message for one recipient about one alert, in every template language."""
    link = f"{public_url.rstrip('/')}/#alert={alert.id}"
    unit = "" if facts.unit in ("", "bool") else facts.unit
    value_text = "—" if alert.value is None else f"{alert.value:g}" + (f" {unit}" if unit else "")
    raised_at_text = _local(alert.raised_at, timezone)
    name = contact.name if contact and contact.name else ""
    values: dict[str, Any] = {
        "severity": alert.severity.value,
        "severity_zh": SEVERITY_ZH[alert.severity],
        "severity_en": alert.severity.value.upper(),
        "level_zh": LEVEL_ZH[alert.severity],
        "level_no": LEVEL_NO[alert.severity],
        "class_zh": CLASS_ZH[alert.alert_class],
        "class_en": CLASS_EN[alert.alert_class],
        "hazard": alert.hazard,
        "hazard_zh": HAZARD_ZH.get(alert.hazard, alert.hazard),
        "title_zh": facts.title_zh,
        "title_en": facts.title_en,
        "site_name": facts.site_name,
        "village": facts.village or "—",
        "address": facts.address or "—",
        "device_name": facts.device_name,
        "device_id": alert.device_id,
        "value_text": value_text,
        "raised_at_text": raised_at_text,
        "state_zh": STATE_ZH[alert.state],
        "state_en": STATE_EN[alert.state],
        "recipient_zh": recipient.title_zh,
        "recipient_en": recipient.title_en,
        "contact_suffix": f" {name}" if name else "",
        "reason_zh": reason.zh,
        "reason_en": reason.en,
        "link": link,
    }
    titles: dict[str, str] = {lang: t["title"].format(**values) for lang, t in TEMPLATES.items()}
    bodies: dict[str, str] = {lang: t["body"].format(**values) for lang, t in TEMPLATES.items()}
    fields = {
        "id": alert.id,
        "state": alert.state.value,
        "severity": alert.severity.value,
        "level": LEVEL_NO[alert.severity],
        "alert_class": alert.alert_class.value,
        "hazard": alert.hazard,
        "rule": alert.rule,
        "title_zh": facts.title_zh,
        "title_en": facts.title_en,
        "site_id": alert.site_id,
        "site_name": facts.site_name,
        "village": facts.village,
        "address": facts.address,
        "device_id": alert.device_id,
        "device_name": facts.device_name,
        "value": alert.value,
        "unit": facts.unit,
        "count": alert.count,
        "raised_at": _iso(alert.raised_at, timezone),
        "raised_at_ms": alert.raised_at,
        "acknowledged": alert.acknowledged,
    }
    return Message(
        alert_id=alert.id,
        link=link,
        recipient=recipient_key,
        recipient_zh=recipient.title_zh,
        recipient_en=recipient.title_en,
        contact_name=name,
        phones=tuple(contact.phones) if contact else (),
        emails=tuple(contact.emails) if contact else (),
        titles=titles,
        bodies=bodies,
        alert=fields,
        reason={"kind": reason.kind, "number": reason.number, "after_s": reason.after_s}
        | ({"by": reason.by} if reason.by is not None else {}),
    )


def _local(ms: int, tz: str) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .astimezone(ZoneInfo(tz))
        .strftime("%Y-%m-%d %H:%M:%S")
    )


def _iso(ms: int, tz: str) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .astimezone(ZoneInfo(tz))
        .isoformat(timespec="milliseconds")
    )


def _duration_zh(seconds: float) -> str:
    """
    >>> _duration_zh(30), _duration_zh(180), _duration_zh(90)
    ('30 秒', '3 分钟', '1.5 分钟')
    """
    if seconds < 60:
        return f"{seconds:g} 秒"
    return f"{seconds / 60:g} 分钟"


def _duration_en(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:g} s"
    return f"{seconds / 60:g} min"
