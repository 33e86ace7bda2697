"""Alerts: list with filters, one alert and its history, acknowledge, close, live stream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from sse_starlette import EventSourceResponse

from alerts.model import AlertClass, AlertState, Severity
from gateway.api.deps import GatewayDep, PrincipalDep, StreamPrincipalDep
from gateway.api.schemas import AckIn, AlertOut, CloseIn, TransitionOut, iso

router = APIRouter(prefix="/api/alerts", tags=["alerts"])

OPEN_STATES = [AlertState.RAISED, AlertState.ACKNOWLEDGED, AlertState.CLEARED]


@router.get("")
async def list_alerts(
    gateway: GatewayDep,
    _: PrincipalDep,
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
        site_ids=[site_id] if site_id else None,
        device_id=device_id,
        severity=severity,
        alert_class=alert_class,
        limit=limit,
    )
    return [AlertOut.of(a, gateway) for a in alerts]


@router.get("/stream")
async def stream(
    request: Request, gateway: GatewayDep, _: StreamPrincipalDep
) -> EventSourceResponse:
    """Server-Sent Events: one ``alert`` event per change, for the live console."""

    async def events() -> AsyncIterator[dict[str, Any]]:
        async with gateway.bus.subscribe() as changes:
            yield {"event": "ready", "data": "{}"}
            async for change in changes:
                if await request.is_disconnected():
                    break
                body = {
                    "kind": change.kind,
                    "alert": AlertOut.of(change.alert, gateway).model_dump(mode="json"),
                }
                yield {"event": "alert", "data": json.dumps(body, ensure_ascii=False)}

    return EventSourceResponse(events(), ping=15)


@router.get("/{alert_id}")
async def get_alert(alert_id: int, gateway: GatewayDep, _: PrincipalDep) -> AlertOut:
    return AlertOut.of(await gateway.alerts.get(alert_id), gateway)


@router.get("/{alert_id}/history")
async def history(alert_id: int, gateway: GatewayDep, _: PrincipalDep) -> list[TransitionOut]:
    await gateway.alerts.get(alert_id)
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
    alert = await gateway.alerts.acknowledge(alert_id, who.name, body.note)
    return AlertOut.of(alert, gateway)


@router.post("/{alert_id}/close")
async def close(alert_id: int, body: CloseIn, gateway: GatewayDep, who: PrincipalDep) -> AlertOut:
    alert = await gateway.alerts.close(alert_id, who.name, body.disposition, body.note)
    return AlertOut.of(alert, gateway)
