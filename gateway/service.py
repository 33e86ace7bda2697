"""The running gateway: every long-lived part, started and stopped in order.

:class:`Gateway` is an async context manager. Entering it opens the stores, loads
the registry and open alerts, starts the persist and alert tasks and connects to
the broker (the embedded one when no broker URL is configured); leaving it stops
ingestion first, then flushes and acknowledges what was accepted, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from alerts.bus import AlertBus
from alerts.engine import AlertEngine
from alerts.inhibit import Inhibitor, parents_from
from alerts.model import Signal
from alerts.notify.service import NotifyService
from alerts.rectification import EvidenceFiles, RectificationBook
from alerts.silence import Silences
from alerts.stats import Statistics
from alerts.store import SCHEMA as ALERT_SCHEMA
from alerts.store import AlertStore
from detectors.bank import DetectorBank
from detectors.correlate import Correlator
from detectors.production import ProductionDetector
from gateway import accounts, audit, auth, deadletter, registry, sessions
from gateway.accounts import UserStore
from gateway.auth import TokenStore
from gateway.broker import EmbeddedBroker
from gateway.broker_accounts import DeviceAccounts, device_accounts, tls_options
from gateway.config import Settings
from gateway.deadletter import DeadLetterStore
from gateway.decode import Decode
from gateway.detect import Detect, meter_calendars, rebuild_correlator, rebuild_production
from gateway.detector_state import StateKeeper
from gateway.metrics import Counters
from gateway.model import now_ms
from gateway.mqtt import BrokerAddress, MqttSource, without_credentials
from gateway.persist import Persist, PersistOptions
from gateway.pipeline import StageTimings, build_pipeline
from gateway.profiles import Profile, load_profiles
from gateway.registry import Registry
from gateway.registry_model import Device
from gateway.rule_overrides import RuleOverrides, load_overrides
from gateway.sessions import SessionStore
from gateway.sqlite import SqliteDatabase
from gateway.stores import TimeSeriesStore, open_store
from gateway.validate import Limits, Validate

log = logging.getLogger(__name__)

TOPICS = ["ewg/v1/+/telemetry", "ewg/v1/+/event", "ewg/v1/+/status"]
MAIN_SCHEMA = registry.SCHEMA + audit.SCHEMA + deadletter.SCHEMA + auth.SCHEMA + ALERT_SCHEMA
MAIN_SCHEMA += accounts.SCHEMA + sessions.SCHEMA


def open_main_db(settings: Settings) -> SqliteDatabase:
    """The gateway's own database (registry, alerts, dead letters, audit, tokens)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteDatabase(settings.data_dir / "ewg.db", MAIN_SCHEMA)


async def ensure_admin_token(settings: Settings, tokens: TokenStore) -> str | None:
    """Make sure an admin token exists; return it only when it was just generated.

    A generated token goes to ``data_dir/admin.token``, created readable by its owner only
    (never world-readable, not even for a moment); a configured one is never echoed back.
    """
    token_file = settings.data_dir / "admin.token"
    if settings.api_token is not None:
        await tokens.create("admin", "admin", token=settings.api_token.get_secret_value())
        return None
    if len(tokens) == 0 or not token_file.exists():
        token = await tokens.create("admin", "admin")
        token_file.unlink(missing_ok=True)
        fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(token + "\n")
        log.warning("admin API token written to %s", token_file)
        return token
    return None


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.counters = Counters()
        self.timings = StageTimings()
        self._stack = AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self.admin_token: str | None = None

    # Filled in on enter; typed here for readers and mypy.
    profiles: dict[str, Profile]
    db: SqliteDatabase
    registry: Registry
    accounts: DeviceAccounts
    tokens: TokenStore
    users: UserStore
    sessions: SessionStore
    store: TimeSeriesStore
    dead_letters: DeadLetterStore
    alerts: AlertEngine
    bus: AlertBus
    detectors: DetectorBank
    detector_state: StateKeeper
    correlator: Correlator
    production: ProductionDetector
    persist: Persist
    source: MqttSource
    broker_url: str
    audit: audit.AuditLog
    # -- attributes: silences, inhibition, flap damping, incidents --
    silences: Silences
    inhibitor: Inhibitor
    alert_timer: asyncio.Task[None]
    # -- attributes: escalation and notifications --
    notify: NotifyService
    # -- attributes: rectification items and statistics --
    rectifications: RectificationBook
    stats: Statistics

    async def __aenter__(self) -> Self:
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()  # close whatever was opened before the failure
            raise
        return self

    async def _start(self) -> None:
        s = self.settings
        stack = self._stack
        self.profiles = load_profiles(s.profiles_dir)
        self.db = await stack.enter_async_context(open_main_db(s))
        self.registry = Registry(self.db, self.profiles)
        await self.registry.refresh()
        # The gateway's own broker account must exist before it connects.
        self.accounts = device_accounts(s, self.registry)
        await self.accounts.prepare()
        self.audit = audit.AuditLog(self.db)
        self.tokens = TokenStore(self.db)
        await self.tokens.load()
        self.admin_token = await ensure_admin_token(s, self.tokens)
        self.users = UserStore(self.db)
        self.sessions = SessionStore(self.db, s.session_idle_s, s.session_max_s)
        self.store = await open_store(s)
        stack.push_async_callback(self.store.close)
        self.dead_letters = DeadLetterStore(self.db)
        self.bus = AlertBus()
        self.alerts = AlertEngine(AlertStore(self.db), self.bus, self.registry.site_of)
        await self.alerts.start()
        # -- wiring: silences, inhibition, flap damping, incidents --
        self.silences = Silences(self.db, options=self.alerts.options)
        await self.silences.load()
        self.inhibitor = Inhibitor(self.alerts.view, parents_from(self.registry.device))
        self.alerts.add_muter(self.silences)
        self.alerts.add_muter(self.inhibitor)
        await self.alerts.remute()  # a silence may have ended while the gateway was down
        self.alert_timer = asyncio.create_task(self.alerts.run_timer(), name="ewg-alert-timer")
        stack.push_async_callback(_cancel, self.alert_timer)
        # -- wiring: escalation and notifications --
        self.notify = NotifyService.from_settings(s, self.db, self.registry)
        stack.push_async_callback(self.notify.stop)
        await self.notify.start(self.alerts)
        # -- wiring: rectification items and statistics --
        self.rectifications = RectificationBook(
            self.db,
            EvidenceFiles(s.data_dir / "evidence"),
            self.registry.find_site,
            self.alerts.get,
        )
        await self.rectifications.start()
        stack.push_async_callback(self.rectifications.stop)
        # The detector bank is built below; look it up when asked, not now.
        self.stats = Statistics(
            self.db,
            self.registry,
            lambda device_id: self.detectors.is_online(device_id),
            self.rectifications,
            s.timezone,
        )
        overrides = None if s.rule_overrides is None else self._overrides(s.rule_overrides)
        self.detectors = DetectorBank(
            self.registry.profile_of,
            s.timezone,
            site_of=self.registry.site_of,
            overrides=overrides,
        )
        self.registry.on_revoke.append(self.detectors.forget)
        self.registry.on_add.append(self._watch)
        # Learnt baselines and pending delays survive a restart (restored before resume).
        self.detector_state = StateKeeper(
            self.detectors, s.data_dir, s.detector_state_interval_s
        )
        self.detector_state.start()
        stack.push_async_callback(self.detector_state.stop)
        # An alert closed while its condition holds: the next crossing raises a new one.
        self.alerts.add_listener(self.detectors)
        start = now_ms()
        for device in self.registry.devices():
            self.detectors.expect(device.id, start)
        # Alerts open before a restart must still clear: the detectors resume their stage.
        self.detectors.resume(self.alerts.open_alerts(), start)
        # -- wiring: cross-sensor confirmation, production during shutdowns --
        self.correlator = Correlator(self.registry.related_ids)
        self.production = ProductionDetector(meter_calendars(self.registry))
        for forget in (self.correlator.forget, self.production.forget):
            self.registry.on_revoke.append(forget)
        meters = [d.id for d in self.registry.devices() if self.production_watches(d.id)]
        await rebuild_production(self.production, self.store, meters, start)
        await rebuild_correlator(self.correlator, self.store, self.registry, start)
        self.correlator.resume(self.alerts.open_alerts())
        self.production.resume(self.alerts.open_alerts())

        if s.broker_url is None:
            broker = await stack.enter_async_context(
                EmbeddedBroker("127.0.0.1", s.embedded_broker_port)
            )
            self.broker_url = broker.url
        else:
            self.broker_url = s.broker_url

        self.persist = Persist(
            self.store,
            self.dead_letters,
            self.counters,
            PersistOptions(
                flush_interval_s=s.flush_interval_s,
                max_backoff_s=s.store_retry_max_s,
                write_timeout_s=None if s.store == "sqlite" else s.store_write_timeout_s,
                spool_path=s.data_dir / "spool.db",
                spool_max_bytes=s.spool_max_bytes,
            ),
        )
        await self.persist.start()
        stack.push_async_callback(self.persist.stop)
        self._signals: asyncio.Queue[list[Signal]] = asyncio.Queue()
        signals = self._signals
        handler = build_pipeline(
            [
                ("decode", Decode(self.registry.lookup, s.max_payload_bytes)),
                (
                    "validate",
                    Validate(Limits(s.max_future_s * 1000, s.max_age_s * 1000, s.timezone)),
                ),
                ("persist", self.persist),
                (
                    "detect",
                    Detect(
                        self.detectors,
                        signals,
                        self.counters,
                        correlator=self.correlator,
                        production=self.production,
                    ),
                ),
            ],
            self.timings,
        )
        self.source = MqttSource(
            BrokerAddress.parse(self.broker_url),
            client_id=s.mqtt_client_id,
            topics=TOPICS,
            qos=s.mqtt_qos,
            tls=tls_options(s),
        )
        # Stopped in reverse order: ingestion first, then alerting, then persist flushes.
        self._spawn(self._alerting(signals), "ewg-alerts")
        self._spawn(self._sweep_offline(signals), "ewg-offline")
        self._spawn(self.source.run(handler), "ewg-ingest")

    def production_watches(self, device_id: str) -> bool:
        """Whether the device is a power meter of a registered enterprise."""
        return meter_calendars(self.registry)(device_id) is not None

    def _overrides(self, path: Path) -> RuleOverrides:
        """The override file, with a warning per entry the registry does not know: a
        mistyped site id would otherwise leave its site on the profile's numbers unnoticed."""
        overrides = load_overrides(path, self.profiles)
        sites = {site.id for site in self.registry.sites()}
        devices = {device.id for device in self.registry.devices()}
        for where in overrides.unregistered(sites, devices):
            log.warning(
                "%s: %s is not registered; its overrides apply only once it is (a typo?)",
                path,
                where,
            )
        return overrides

    def _watch(self, device: Device) -> None:
        """A device registered while running (API, or the CLI next door) is watched for
        silence from now on, like those registered before the start."""
        self.detectors.expect(device.id, now_ms())

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)

    async def _alerting(self, signals: asyncio.Queue[list[Signal]]) -> None:
        while True:
            await self._handle_signals(await signals.get())

    async def _handle_signals(self, batch: list[Signal], attempts: int = 6) -> None:
        """Signal by signal, retried with backoff: a busy or failing alert database must not
        cost the fire alarm that happens to share a batch with the signal that failed."""
        for signal in batch:
            for attempt in range(attempts):
                try:
                    changes = await self.alerts.handle([signal])
                except Exception:
                    if attempt == attempts - 1:
                        self.counters.signals_failed += 1
                        log.exception(
                            "alert engine gave up on %s/%s", signal.device_id, signal.rule
                        )
                    else:
                        await asyncio.sleep(0.1 * 2**attempt)
                    continue
                self.counters.alerts_raised += sum(c.kind == "raised" for c in changes)
                break

    async def _sweep_offline(self, signals: asyncio.Queue[list[Signal]]) -> None:
        while True:
            await asyncio.sleep(self.settings.offline_sweep_s)
            found = self.detectors.sweep(now_ms())
            if found:
                signals.put_nowait(found)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Order matters: stop taking messages (still connected); signals already detected
        # become alerts; the last batch is made durable and acknowledged on the live
        # connection; only then disconnect and close the rest.
        alerting, sweeper, ingest = self._tasks
        self.source.stop_reading()
        await _cancel(sweeper)
        while not self._signals.empty():
            await self._handle_signals(self._signals.get_nowait())
        await _cancel(alerting)
        await self.persist.stop()
        self.source.close()
        try:
            await asyncio.wait_for(ingest, 5)
        except (TimeoutError, asyncio.CancelledError, Exception):
            await _cancel(ingest)
        self._tasks.clear()
        await self._stack.aclose()

    def health(self) -> dict[str, object]:
        degraded = []
        if not self.source.connected:
            degraded.append(
                "broker: not connected"
                + (f" ({self.source.last_error})" if self.source.last_error else "")
            )
        degraded.extend(f"store: {problem}" for problem in self.persist.problems())
        return {
            "status": "degraded" if degraded else "ok",
            "degraded": degraded,
            "broker": {
                "url": without_credentials(self.broker_url),
                "connected": self.source.connected,
                "connects": self.source.connects,
            },
            "store": {"kind": self.settings.store, **self.persist.status()},
            "devices": len(self.registry.devices()),
            "sites": len(self.registry.sites()),
            "counters": self.counters.as_dict(),
        }


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
