"""The alert lifecycle: signals raise, repeat and clear alerts; people acknowledge and close them.

State machine (one open alert per (device, rule))::

    (none) --active--> RAISED --ack--> ACKNOWLEDGED
    RAISED / ACKNOWLEDGED --inactive--> CLEARED (acknowledged flag kept)
    CLEARED --active--> RAISED, or ACKNOWLEDGED if it had been acknowledged
    CLEARED --ack--> CLEARED (acknowledged=True)
    any open state --close(disposition)--> CLOSED; a later active signal raises a new alert

A cleared alert stays open until a person closes it with a disposition: the office
reports false-alarm rates from dispositions, and nothing may silently disappear.

Every change is persisted before it is published and before the in-memory index
is updated (copy-on-write), so a failed write leaves memory, disk and subscribers
agreeing with each other.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from alerts.bus import AlertBus
from alerts.index import OpenAlerts
from alerts.model import (
    Alert,
    AlertChange,
    AlertClass,
    AlertState,
    Disposition,
    Severity,
    Signal,
    Transition,
)
from alerts.store import DEFAULT_LIST_LIMIT, AlertStore
from gateway.errors import ConflictError
from gateway.model import now_ms

log = logging.getLogger(__name__)

class AlertListener(Protocol):
    def on_change(self, change: AlertChange) -> None: ...


SYSTEM_ACTOR = "system"
"""The actor recorded for transitions the engine makes on its own (raise, clear, re-fire)."""


class AlertEngine:
    """Turns detector signals and duty-staff actions into persisted, published alert changes.

    All mutations run under one asyncio.Lock. The lock covers lookup, the database
    write and the publish, and nothing else: the write must be inside, or two
    concurrent signals for a new key would both see "no open alert" and raise two;
    the publish must be inside, or subscribers could see changes out of commit order.
    Publishing never waits, so it costs the critical section nothing.
    """

    def __init__(
        self,
        store: AlertStore,
        bus: AlertBus,
        site_of: Callable[[str], str | None],
        clock: Callable[[], int] = now_ms,
    ) -> None:
        self._store = store
        self._bus = bus
        self._site_of = site_of
        self._clock = clock
        self._lock = asyncio.Lock()
        self._open = OpenAlerts()
        self._started = False
        self._listeners: builtins.list[AlertListener] = []

    async def start(self) -> None:
        """Index the open alerts on disk, so after a restart repeats update them, not duplicate.

        Should the database hold two open alerts for one key (it cannot happen
        through this engine), the newest wins the index and a warning is logged;
        the older one stays visible in lists and can still be closed by id.
        """
        async with self._lock:
            index = OpenAlerts()
            for alert in await self._store.open_alerts():
                held = index.by_key((alert.device_id, alert.rule))
                if held is not None:
                    log.warning(
                        "alerts %d and %d are both open for device %s rule %s; indexing %d",
                        held.id,
                        alert.id,
                        alert.device_id,
                        alert.rule,
                        alert.id,
                    )
                index.put(alert)
            self._open = index
            self._started = True

    # -- signals ---------------------------------------------------------------

    async def handle(self, signals: Sequence[Signal]) -> list[AlertChange]:
        """Apply detector signals in order; return the changes made (also published).

        The lock is taken per signal, so duty-staff actions are not held up behind
        a long batch. If a write fails the exception propagates; changes before it
        are already committed and published.
        """
        self._require_started()
        changes: list[AlertChange] = []
        for signal in signals:
            async with self._lock:
                change = await self._apply(signal)
            if change is not None:
                changes.append(change)
        return changes

    async def _apply(self, signal: Signal) -> AlertChange | None:
        current = self._open.by_key((signal.device_id, signal.rule))
        if signal.active:
            if current is None:
                return await self._raise(signal)
            return await self._repeat(current, signal)
        if current is not None and current.state in (AlertState.RAISED, AlertState.ACKNOWLEDGED):
            return await self._clear(current, signal)
        return None

    async def _raise(self, signal: Signal) -> AlertChange:
        draft = Alert(
            id=0,
            device_id=signal.device_id,
            site_id=self._site_of(signal.device_id) or "",
            rule=signal.rule,
            severity=signal.severity,
            alert_class=signal.alert_class,
            hazard=signal.hazard,
            state=AlertState.RAISED,
            raised_at=signal.ts_ms,
            updated_at=signal.ts_ms,
            value=signal.value,
            message=signal.message,
        )
        alert = await self._store.insert(draft, actor=SYSTEM_ACTOR)
        return self._commit("raised", alert)

    async def _repeat(self, current: Alert, signal: Signal) -> AlertChange:
        severity = current.severity
        if signal.severity.rank > severity.rank:
            severity = signal.severity  # upgrade only: never downgraded while open
        state = current.state
        if state is AlertState.CLEARED:
            state = AlertState.ACKNOWLEDGED if current.acknowledged else AlertState.RAISED
        updated = dataclasses.replace(
            current,
            count=current.count + 1,
            value=signal.value,
            message=signal.message or current.message,
            severity=severity,
            state=state,
            cleared_at=None if state is not current.state else current.cleared_at,
            updated_at=max(current.updated_at, signal.ts_ms),
        )
        notes: list[str] = []
        if state is not current.state:
            notes.append("active again")
        if severity is not current.severity:
            notes.append(f"severity {current.severity} -> {severity}")
        if notes:
            transition = Transition(
                current.id, signal.ts_ms, SYSTEM_ACTOR, current.state, state, "; ".join(notes)
            )
            await self._store.save(updated, transition)
        else:
            await self._store.update(updated)
        return self._commit("updated", updated)

    async def _clear(self, current: Alert, signal: Signal) -> AlertChange:
        updated = dataclasses.replace(
            current,
            state=AlertState.CLEARED,
            cleared_at=signal.ts_ms,
            updated_at=max(current.updated_at, signal.ts_ms),
        )
        transition = Transition(
            current.id, signal.ts_ms, SYSTEM_ACTOR, current.state, AlertState.CLEARED
        )
        await self._store.save(updated, transition)
        return self._commit("cleared", updated)

    # -- people ----------------------------------------------------------------

    async def acknowledge(self, alert_id: int, actor: str, note: str = "") -> Alert:
        """Record that ``actor`` has seen the alert.

        RAISED becomes ACKNOWLEDGED. A CLEARED alert stays CLEARED (the condition is
        gone, but someone still has to close it) and is marked acknowledged, so it
        comes back as ACKNOWLEDGED if it fires again. Anything else is a ConflictError.
        """
        self._require_started()
        _require_actor(actor)
        async with self._lock:
            current = await self._open_alert(alert_id)
            if current.acknowledged or current.state is AlertState.ACKNOWLEDGED:
                raise ConflictError(f"alert {alert_id} is already acknowledged")
            now = self._clock()
            if current.state is AlertState.CLEARED:
                to_state = AlertState.CLEARED
                line = f"acknowledged: {note}" if note else "acknowledged"
            else:
                to_state = AlertState.ACKNOWLEDGED
                line = note
            updated = dataclasses.replace(
                current,
                state=to_state,
                acknowledged=True,
                acknowledged_by=actor,
                acknowledged_at=now,
                updated_at=max(current.updated_at, now),
            )
            transition = Transition(alert_id, now, actor, current.state, to_state, line)
            await self._store.save(updated, transition)
            self._commit("acknowledged", updated)
        return dataclasses.replace(updated)

    async def close(
        self, alert_id: int, actor: str, disposition: Disposition, note: str = ""
    ) -> Alert:
        """Close an open alert with how it turned out; a later signal raises a new alert."""
        self._require_started()
        _require_actor(actor)
        async with self._lock:
            current = await self._open_alert(alert_id)
            now = self._clock()
            updated = dataclasses.replace(
                current,
                state=AlertState.CLOSED,
                disposition=disposition,
                closed_by=actor,
                closed_at=now,
                note=note,
                updated_at=max(current.updated_at, now),
            )
            transition = Transition(alert_id, now, actor, current.state, AlertState.CLOSED, note)
            await self._store.save(updated, transition)
            self._commit("closed", updated)
        return dataclasses.replace(updated)

    # -- reads -----------------------------------------------------------------

    async def get(self, alert_id: int) -> Alert:
        """The alert as stored; NotFoundError if there is none."""
        return await self._store.get(alert_id)

    async def history(self, alert_id: int) -> builtins.list[Transition]:
        """The alert's transitions, oldest first; NotFoundError if there is none."""
        return await self._store.history(alert_id)

    async def list(
        self,
        *,
        states: Collection[AlertState] | None = None,
        site_ids: Collection[str] | None = None,
        device_id: str | None = None,
        severity: Severity | None = None,
        alert_class: AlertClass | None = None,
        since_ms: int | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> builtins.list[Alert]:
        """Stored alerts, newest first; see :meth:`AlertStore.list` for the filters."""
        return await self._store.list(
            states=states,
            site_ids=site_ids,
            device_id=device_id,
            severity=severity,
            alert_class=alert_class,
            since_ms=since_ms,
            limit=limit,
        )

    def open_alerts(self) -> builtins.list[Alert]:
        """Copies of the open alerts held in memory (a snapshot for a new SSE stream)."""
        return [dataclasses.replace(a) for a in self._open]

    # -- helpers ---------------------------------------------------------------

    def _require_started(self) -> None:
        # Without the index every signal would look new and duplicate open alerts.
        if not self._started:
            raise RuntimeError("AlertEngine.start() must be awaited before use")

    async def _open_alert(self, alert_id: int) -> Alert:
        """The open alert with this id; ConflictError if closed, NotFoundError if unknown."""
        current = self._open.by_id(alert_id)
        if current is not None:
            return current
        stored = await self._store.get(alert_id)  # raises NotFoundError
        if stored.is_open:
            # Open on disk but not indexed: only a duplicate left over from before
            # start() can be in this state. Acting on it by id is still allowed.
            return stored
        raise ConflictError(f"alert {alert_id} is closed")

    def _commit(self, kind: str, alert: Alert) -> AlertChange:
        """After a successful write: update the index, publish, and report the change."""
        if alert.is_open:
            indexed = self._open.by_id(alert.id)
            if indexed is not None or self._open.by_key((alert.device_id, alert.rule)) is None:
                self._open.put(alert)
        else:
            self._open.remove(alert)
        change = AlertChange(kind, dataclasses.replace(alert))
        self._bus.publish(change)
        for listener in self._listeners:
            try:
                listener.on_change(change)
            except Exception:  # a broken listener must never break the alert lifecycle
                log.exception("alert listener %r failed on %s", listener, change.kind)
        return change

    def add_listener(self, listener: AlertListener) -> None:
        """In-process consumers that must see every change (escalation, notifications).

        Unlike bus subscribers they are never dropped; ``on_change`` must not block:
        a listener only queues its own work.
        """
        self._listeners.append(listener)


def _require_actor(actor: str) -> None:
    # Every transition must say who made it; an anonymous close would defeat the audit.
    if not actor.strip():
        raise ValueError("actor must not be empty")
