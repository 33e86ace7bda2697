"""The embedded MQTT broker (amqtt), used when no external broker is configured.

It exists so ``ewg demo`` runs on a bare machine with nothing else installed. A
real deployment points the gateway at Mosquitto instead (``--broker``).
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Self

from gateway.errors import BrokerError

log = logging.getLogger(__name__)


class EmbeddedBroker:
    """Async context manager running an amqtt broker on ``host:port``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.host = host
        self.port = port
        self._broker: object | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def __aenter__(self) -> Self:
        from amqtt.broker import Broker  # imported late: only the demo needs it

        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        broker = Broker(config)
        try:
            await broker.start()
        except Exception as exc:  # amqtt raises its own and OSError subclasses
            raise BrokerError(f"embedded broker cannot listen on {self.url}: {exc}") from exc
        self._broker = broker
        log.info("embedded MQTT broker listening on %s", self.url)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        broker, self._broker = self._broker, None
        if broker is not None:
            await broker.shutdown()  # type: ignore[attr-defined]
