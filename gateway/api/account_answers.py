"""How the registry and portal routes answer a change to a device's broker account.

Both routers register devices and rotate or revoke their MQTT secrets through
``gateway.accounts``; answering its errors, and keeping a secret out of caches,
in one place keeps the two doors to the same action answering alike.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import HTTPException, Response, status

from gateway.errors import BrokerError, ConflictError, NotFoundError


def no_store(response: Response) -> None:
    """A response carrying a secret must not sit in a browser's or a proxy's cache."""
    response.headers["Cache-Control"] = "no-store"


@contextmanager
def account_errors(not_found: int = status.HTTP_404_NOT_FOUND) -> Iterator[None]:
    """Errors of a ``gateway.accounts`` call as HTTP answers.

    ``not_found`` for a missing site or device (422 where it was named in the
    body, 404 where it is the path), 409 for a conflict (the id is taken, the
    device is revoked), 503 while the broker cannot be reached (nothing is
    lost: calling again retries).
    """
    try:
        yield
    except NotFoundError as exc:
        raise HTTPException(not_found, str(exc)) from exc
    except ConflictError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from exc
    except BrokerError as exc:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"broker: {exc}") from exc
