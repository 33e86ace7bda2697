"""Escalation policies, notification channels and the delivery log; "escalate now".

The delivery log answers "who was told about this alert, how, and did it arrive?": every
notification with every attempt and its outcome. Channel output never carries a URL's
token, a password or a secret, and contacts' phone numbers and e-mail addresses are
masked: the API is for checking the chain, not for harvesting a contact list.

The policies and channels are the office's set-up: staff roles only. Notifications
are shown for the alerts the caller may see. ``POST /api/alerts/{id}/escalate`` (staff,
within their scope; audited) sends the alert's next escalation step at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from alerts.notify.store import Notification, Status
from gateway.api.deps import GatewayDep, PrincipalDep, StaffDep, visible_alert, visible_site_ids
from gateway.api.schemas import iso

router = APIRouter(tags=["notifications"])

#: A scoped principal's notification log looks among its newest this many alerts.
SCOPED_ALERTS = 5000


class AttemptOut(BaseModel):
    number: int
    started_at: str
    finished_at: str
    ok: bool
    detail: str


class NotificationOut(BaseModel):
    id: int
    alert_id: int
    policy: str
    step: str
    recipient: str
    recipient_zh: str
    recipient_en: str
    contact_name: str
    #: Masked (``138****0001``): enough to tell which number was used, not to dial it.
    addresses: list[str]
    channel: str
    status: Status
    reason: str
    attempts: list[AttemptOut]
    created_at: str
    next_attempt_at: str | None
    finished_at: str | None
    title: str
    link: str

    @classmethod
    def of(cls, n: Notification, tz: str) -> NotificationOut:
        m = n.message
        return cls(
            id=n.id,
            alert_id=n.alert_id,
            policy=n.policy,
            step=n.step,
            recipient=n.recipient,
            recipient_zh=m.recipient_zh,
            recipient_en=m.recipient_en,
            contact_name=m.contact_name,
            addresses=[mask_phone(p) for p in m.phones] + [mask_email(e) for e in m.emails],
            channel=n.channel,
            status=n.status,
            reason=n.reason,
            attempts=[
                AttemptOut(
                    number=a.number,
                    started_at=iso(a.started_ms, tz) or "",
                    finished_at=iso(a.finished_ms, tz) or "",
                    ok=a.ok,
                    detail=a.detail,
                )
                for a in n.attempt_log
            ],
            created_at=iso(n.created_ms, tz) or "",
            next_attempt_at=iso(n.next_attempt_ms, tz),
            finished_at=iso(n.finished_ms, tz),
            title=m.title(["zh", "en"]),
            link=m.link,
        )


def mask_phone(phone: str) -> str:
    """
    >>> mask_phone("13800000017"), mask_phone("119")
    ('138****0017', '1**')
    """
    if len(phone) <= 7:
        return phone[:1] + "*" * (len(phone) - 1)
    return phone[:3] + "****" + phone[-4:]


def mask_email(email: str) -> str:
    """
    >>> mask_email("duty@example.gov.cn")
    'd***@example.gov.cn'
    """
    local, _, domain = email.partition("@")
    return f"{local[:1]}***@{domain}"


@router.get("/api/escalation-policies")
async def policies(gateway: GatewayDep, _: StaffDep) -> list[dict[str, Any]]:
    """Each policy in match order: what it matches, its steps (delay, who, how), reminders."""
    config = gateway.notify.config

    def targets(items: list[Any]) -> list[dict[str, Any]]:
        return [
            {
                "to": t.to,
                "title_zh": config.recipients[t.to].title_zh,
                "title_en": config.recipients[t.to].title_en,
                "via": list(t.via),
            }
            for t in items
        ]

    return [
        {
            "name": p.name,
            "match": p.match.model_dump(mode="json"),
            "steps": [{"after_s": s.after_s, "notify": targets(s.notify)} for s in p.steps],
            "repeat": None
            if p.repeat is None
            else {
                "every_s": p.repeat.every_s,
                "max_count": p.repeat.max_count,
                "notify": targets(p.repeat.notify or p.targets_until(len(p.steps))),
            },
            "stop_on_clear": p.stop_on_clear,
        }
        for p in config.policies
    ]


@router.get("/api/notification-channels")
async def channels(gateway: GatewayDep, _: StaffDep) -> list[dict[str, Any]]:
    """Each channel's type and host (never its token or password) and how it is doing."""
    tz = gateway.settings.timezone
    health = gateway.notify.queue.health()
    out = []
    for name, channel in gateway.notify.channels.items():
        h = health[name]
        out.append(
            {
                **channel.public(),
                "in_flight": h.in_flight,
                "delivered": h.delivered,
                "failed_attempts": h.failed_attempts,
                "consecutive_failures": h.consecutive_failures,
                "last_ok_at": iso(h.last_ok_ms, tz),
                "last_error_at": iso(h.last_error_ms, tz),
                "last_error": h.last_error,
            }
        )
    return out


@router.get("/api/alerts/{alert_id}/notifications")
async def alert_notifications(
    alert_id: int, gateway: GatewayDep, who: PrincipalDep
) -> list[NotificationOut]:
    """Every notification made for the alert, in order, with every attempt and outcome."""
    await visible_alert(gateway, who, alert_id)
    tz = gateway.settings.timezone
    return [NotificationOut.of(n, tz) for n in await gateway.notify.store.for_alert(alert_id)]


class EscalatedOut(BaseModel):
    alert_id: int
    policy: str
    #: The step sent, as in the delivery log: ``step:1`` (the second step), ``repeat:1``.
    step: str
    notifications: list[NotificationOut]


@router.post("/api/alerts/{alert_id}/escalate")
async def escalate(alert_id: int, gateway: GatewayDep, who: StaffDep) -> EscalatedOut:
    """Send the alert's next escalation step now instead of at its time.

    409 with the reason when there is nothing to escalate: the alert is closed,
    acknowledged by staff, muted, or every step has been sent.
    """
    await visible_alert(gateway, who, alert_id)
    done = await gateway.notify.escalator.escalate_now(alert_id, who.name)
    detail = {"policy": done.policy, "step": done.step}
    await gateway.audit.record(who.name, "alert.escalate", f"alert:{alert_id}", detail)
    tz = gateway.settings.timezone
    return EscalatedOut(
        alert_id=alert_id,
        policy=done.policy,
        step=done.step,
        notifications=[NotificationOut.of(n, tz) for n in done.notifications],
    )


@router.get("/api/notifications")
async def recent_notifications(
    gateway: GatewayDep,
    who: PrincipalDep,
    status: Status | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[NotificationOut]:
    """The newest notifications of all alerts (``status=failed`` for what never arrived)."""
    tz = gateway.settings.timezone
    sites = visible_site_ids(gateway, who)
    if sites is None:
        found = await gateway.notify.store.recent(status, limit)
    else:
        alerts = await gateway.alerts.list(site_ids=sorted(sites), limit=SCOPED_ALERTS)
        mine = {a.id for a in alerts}
        newest = await gateway.notify.store.recent(status, 1000)
        found = [n for n in newest if n.alert_id in mine][:limit]
    return [NotificationOut.of(n, tz) for n in found]
