"""Dependencies shared by the routers, as ``Annotated`` aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from gateway.auth import Principal
from gateway.service import Gateway

_bearer = HTTPBearer(auto_error=False)


def get_gateway(request: Request) -> Gateway:
    gateway: Gateway = request.app.state.gateway
    return gateway


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


async def _principal(gateway: Gateway, token: str | None) -> Principal:
    principal = await gateway.tokens.authenticate(token) if token else None
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or invalid access token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


async def require_principal(
    gateway: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """Every API route depends on this: no token, no data."""
    return await _principal(gateway, credentials.credentials if credentials else None)


async def require_stream_principal(
    gateway: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    access_token: Annotated[str | None, Query()] = None,
) -> Principal:
    """For SSE only: browsers' EventSource cannot set headers, so a query token is allowed."""
    token = credentials.credentials if credentials else access_token
    return await _principal(gateway, token)


PrincipalDep = Annotated[Principal, Depends(require_principal)]
StreamPrincipalDep = Annotated[Principal, Depends(require_stream_principal)]
