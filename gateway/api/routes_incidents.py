"""Incidents: one line per site emergency, open first and worst first, with its alerts."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from gateway.api.deps import GatewayDep, PrincipalDep, narrow, visible_incident, visible_site_ids
from gateway.api.schemas import AlertOut, IncidentDetailOut, IncidentOut

router = APIRouter(prefix="/api/incidents", tags=["incidents"])

#: More alerts than this in one incident are not listed (the ids still are).
MAX_ALERTS = 1000


@router.get("")
async def list_incidents(
    gateway: GatewayDep,
    who: PrincipalDep,
    state: Literal["open", "closed"] | None = None,
    site_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> list[IncidentOut]:
    """Open incidents first, then worst severity first, then newest first."""
    incidents = await gateway.alerts.list_incidents(
        site_ids=narrow(site_id, visible_site_ids(gateway, who)),
        is_open=None if state is None else state == "open",
        limit=limit,
    )
    return [IncidentOut.of(i, gateway) for i in incidents]


@router.get("/{incident_id}")
async def get_incident(
    incident_id: int, gateway: GatewayDep, who: PrincipalDep
) -> IncidentDetailOut:
    """The incident with its alerts, worst severity on top (404 outside the caller's scope)."""
    incident = await visible_incident(gateway, who, incident_id)
    alerts = await gateway.alerts.list(incident_id=incident_id, limit=MAX_ALERTS)
    alerts.sort(key=lambda a: (-a.severity.rank, not a.is_open, a.raised_at, a.id))
    summary = IncidentOut.of(incident, gateway)
    return IncidentDetailOut(
        **summary.model_dump(), alerts=[AlertOut.of(a, gateway) for a in alerts]
    )
