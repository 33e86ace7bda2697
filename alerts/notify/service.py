"""Escalation and notifications as one part of the gateway: built, started, stopped together.

:class:`NotifyService` owns the channels (and their shared HTTP client), the delivery
queue, the escalator and the store, and attaches the escalator to the alert engine. The
gateway makes one with :meth:`NotifyService.from_settings` and the API reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import httpx

from alerts.alerting_config import AlertingConfig, load_alerting_config
from alerts.escalation import Escalator
from alerts.model import Alert, AlertChange
from alerts.notify.channels import Channel, build_channel, http_client
from alerts.notify.queue import DeliveryQueue
from alerts.notify.store import NotifyStore
from alerts.notify.templates import AlertFacts, RegistryView, describe_alert
from gateway.config import Settings
from gateway.model import now_ms
from gateway.sqlite import SqliteDatabase

log = logging.getLogger(__name__)


class AlertSource(Protocol):
    """What the service needs of the alert engine."""

    def open_alerts(self) -> list[Alert]: ...
    def add_listener(self, listener: _Listener) -> None: ...


class _Listener(Protocol):
    def on_change(self, change: AlertChange) -> None: ...


class NotifyService:
    def __init__(
        self,
        config: AlertingConfig,
        db: SqliteDatabase,
        describe: Callable[[Alert], AlertFacts],
        *,
        public_url: str,
        timezone: str,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self.config = config
        self.store = NotifyStore(db)
        self._client: httpx.AsyncClient = http_client(config.options)
        self.channels: dict[str, Channel] = {
            name: build_channel(name, spec, config.options, self._client)
            for name, spec in config.channels.items()
        }
        self.queue = DeliveryQueue(self.store, self.channels, config.options, clock)
        self.escalator = Escalator(
            config,
            self.store,
            self.queue,
            self.channels,
            describe,
            public_url=public_url,
            timezone=timezone,
            clock=clock,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, db: SqliteDatabase, registry: RegistryView
    ) -> NotifyService:
        """Load ``settings.alerting_config`` (the shipped default if unset); ConfigError if bad."""
        config = load_alerting_config(settings.alerting_config)
        return cls(
            config,
            db,
            lambda alert: describe_alert(alert, registry),
            public_url=f"http://{settings.http_host}:{settings.http_port}",
            timezone=settings.timezone,
        )

    async def start(self, engine: AlertSource, background: bool = True) -> None:
        """Create tables, re-queue pending deliveries, resume chains, listen to the engine.

        The escalator is attached right after it has taken the engine's open alerts, with
        no await in between, so no change can fall between the snapshot and the listener.
        """
        await self.store.init()
        await self.queue.start()
        await self.escalator.start(engine.open_alerts())
        engine.add_listener(self.escalator)
        if self.config.options.public_url is None and any(
            c.type != "log" for c in self.channels.values()
        ):
            log.warning(
                "alerting options.public_url is not set: links in notifications point at %s,"
                " which recipients outside this machine cannot open",
                self.escalator.public_url,
            )
        if background:
            self.queue.start_background()
            self.escalator.start_background()
        log.info(
            "notifications: %d channel(s), %d escalation polic(ies)",
            len(self.channels),
            len(self.config.policies),
        )

    async def stop(self) -> None:
        await self.escalator.stop()
        await self.queue.stop()
        await self._client.aclose()
