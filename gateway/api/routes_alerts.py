"""Alerts: list with filters, one alert and its history, acknowledge, close, live stream.

Every principal sees only the alerts of the sites in its scope (others answer 404);
anyone who may see an alert may acknowledge it, but only the office's staff close one
with a disposition. An enterprise user's acknowledgement ("we are on it") is recorded
as the owner's and shown, but it is not the town's: escalation and the duty board's
alarm go on until staff acknowledge, or a site owner acknowledging a fire alarm would
keep the duty officer and the fire station from ever hearing of it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from sse_starlette import EventSourceResponse

from alerts.model import AlertClass, AlertState, Severity
from gateway.api.deps import (
    GatewayDep,
    PrincipalDep,
    StaffDep,
    StreamPrincipalDep,
    alert_visible,
    narrow,
    still_authorized,
    visible_alert,
    visible_site_ids,
)
from gateway.api.schemas import AckIn, AlertOut, CloseIn, TransitionOut, iso
from gateway.scope import Role

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

OPEN_STATES = [AlertState.RAISED, AlertState.ACKNOWLEDGED, AlertState.CLEARED]


@router.get("")
async def list_alerts(
    gateway: GatewayDep,
    who: PrincipalDep,
    state: Annotated[
        str | None, Query(description="open, or one of raised/acknowledged/cleared/closed")
    ] = None,
    site_id: str | None = None,
    device_id: str | None = None,
    severity: Severity | None = None,
    alert_class: AlertClass | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[AlertOut]:
    if state is None:
        states = None
    elif state == "open":
        states = OPEN_STATES
    else:
        try:
            states = [AlertState(state)]
        except ValueError:
            raise HTTPException(422, f"unknown state {state!r}") from None
    alerts = await gateway.alerts.list(
        states=states,
        site_ids=narrow(site_id, visible_site_ids(gateway, who)),
        device_id=device_id,
        severity=severity,
        alert_class=alert_class,
        limit=limit,
    )
    return [AlertOut.of(a, gateway) for a in alerts]


@router.get("/stream")
async def stream(
    request: Request, gateway: GatewayDep, who: StreamPrincipalDep
) -> EventSourceResponse:
    """Server-Sent Events: one ``alert`` event per change, for the live console.

    Only changes of alerts the caller may see are sent. Authorized by the session
    cookie (a same-origin ``EventSource`` sends it) or a bearer header; never by a
    token in the URL, which would end up in access logs. The credentials are checked
    again before each event, so a stream ends with its session (logout, disabled
    user, new password) or its token.
    """

    async def events() -> AsyncIterator[dict[str, Any]]:
        async with gateway.bus.subscribe() as changes:
            yield {"event": "ready", "data": "{}"}
            async for change in changes:
                if await request.is_disconnected():
                    break
                if not alert_visible(gateway, who, change.alert):
                    continue
                if not await still_authorized(request, gateway):
                    break
                body = {
                    "kind": change.kind,
                    "alert": AlertOut.of(change.alert, gateway).model_dump(mode="json"),
                }
                yield {"event": "alert", "data": json.dumps(body, ensure_ascii=False)}

    return EventSourceResponse(events(), ping=15)


@router.get("/{alert_id}")
async def get_alert(alert_id: int, gateway: GatewayDep, who: PrincipalDep) -> AlertOut:
    return AlertOut.of(await visible_alert(gateway, who, alert_id), gateway)


@router.get("/{alert_id}/history")
async def history(alert_id: int, gateway: GatewayDep, who: PrincipalDep) -> list[TransitionOut]:
    await visible_alert(gateway, who, alert_id)
    tz = gateway.settings.timezone
    return [
        TransitionOut(
            ts=iso(t.ts_ms, tz) or "",
            actor=t.actor,
            from_state=t.from_state,
            to_state=t.to_state,
            note=t.note,
        )
        for t in await gateway.alerts.history(alert_id)
    ]


@router.post("/{alert_id}/ack")
async def acknowledge(
    alert_id: int, body: AckIn, gateway: GatewayDep, who: PrincipalDep
) -> AlertOut:
    await visible_alert(gateway, who, alert_id)
    if who.role is Role.ENTERPRISE:
        alert = await gateway.alerts.owner_acknowledge(alert_id, who.name, body.note)
        action = "alert.owner_ack"
    else:
        alert = await gateway.alerts.acknowledge(alert_id, who.name, body.note)
        action = "alert.ack"
    await gateway.audit.record(who.name, action, f"alert:{alert_id}", {"note": body.note})
    return AlertOut.of(alert, gateway)


@router.post("/{alert_id}/close")
async def close(alert_id: int, body: CloseIn, gateway: GatewayDep, who: StaffDep) -> AlertOut:
    await visible_alert(gateway, who, alert_id)
    alert = await gateway.alerts.close(alert_id, who.name, body.disposition, body.note)
    detail = {"disposition": body.disposition, "note": body.note}
    await gateway.audit.record(who.name, "alert.close", f"alert:{alert_id}", detail)
    return AlertOut.of(alert, gateway)
