"""The alert lifecycle: signals raise, repeat and clear alerts; people acknowledge and close them.

State machine (one open alert per (device, rule))::

    (none) --active--> RAISED --ack--> ACKNOWLEDGED
    RAISED / ACKNOWLEDGED --inactive--> CLEARED (acknowledged flag kept)
    CLEARED --active--> RAISED, or ACKNOWLEDGED if it had been acknowledged
    CLEARED --ack--> CLEARED (acknowledged=True)
    any open state --close(disposition)--> CLOSED; a later active signal raises a new alert

A cleared alert stays open until a person closes it with a disposition: the office
reports false-alarm rates from dispositions, and nothing may silently disappear.

Around that state machine, and never changing it behind a person's back:

* **flap damping** (:mod:`alerts.flap`): an alert that raises and clears too often is
  held active as one ``flapping`` alert until its signal settles;
* **muting** (:mod:`alerts.mute`): every registered :class:`~alerts.mute.Muter`
  (silences, inhibition) is asked on every raise and change, and again when it says
  its answers changed; the answer lands in ``silenced_by`` / ``suppressed_by``;
* **incidents** (:mod:`alerts.incidents`): a new alert joins its site's open incident
  or opens one; an incident follows its alerts' severity and closes with the last.

Every change is persisted before it is published and before the in-memory index
is updated (copy-on-write), so a failed write leaves memory, disk and subscribers
agreeing with each other. An alert, its history line and its incident are written
in one transaction.

Time: alert timestamps (raised, cleared, flap windows) are signal time; mutes and
people's actions are judged by the engine's clock, which tests replace.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import logging
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from alerts.bus import AlertBus
from alerts.flap import FlapDamper
from alerts.incidents import Incident, OpenIncidents
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
from alerts.mute import MuteKind, Muter
from alerts.options import AlertOptions
from alerts.store import DEFAULT_LIST_LIMIT, AlertStore
from gateway.errors import ConflictError
from gateway.model import now_ms

log = logging.getLogger(__name__)

T = TypeVar("T")


class AlertListener(Protocol):
    def on_change(self, change: AlertChange) -> None: ...


SYSTEM_ACTOR = "system"
"""The actor recorded for transitions the engine makes on its own (raise, clear, re-fire)."""

_ACTIVE = (AlertState.RAISED, AlertState.ACKNOWLEDGED)


@dataclass(slots=True)
class _Step:
    """One decision about one alert, before mutes and incident are worked out and it is stored."""

    kind: str
    before: Alert | None  # None: a new alert
    after: Alert
    ts_ms: int  # of the history line
    actor: str = SYSTEM_ACTOR
    notes: list[str] = field(default_factory=list)
    #: Write a history line even if neither state nor notes changed (a person acted).
    line: bool = False
    #: A clear or a re-fire: counts towards flapping.
    flip: bool = False


class AlertEngine:
    """Turns detector signals and duty-staff actions into persisted, published alert changes.

    All mutations run under one asyncio.Lock. The lock covers lookup, the database
    write and the publish, and nothing else: the write must be inside, or two
    concurrent signals for a new key would both see "no open alert" and raise two;
    the publish must be inside, or subscribers could see changes out of commit order.
    Publishing never waits, so it costs the critical section nothing.

    Time-driven work (a silence ending, a flapping alert settling) is done by
    :meth:`tick`, which the gateway calls every ``options.tick_ms`` through
    :meth:`run_timer`; tests call it directly after moving their clock.
    """

    def __init__(
        self,
        store: AlertStore,
        bus: AlertBus,
        site_of: Callable[[str], str | None],
        clock: Callable[[], int] = now_ms,
        *,
        options: AlertOptions | None = None,
        muters: Iterable[Muter] = (),
    ) -> None:
        self._store = store
        self._bus = bus
        self._site_of = site_of
        self._clock = clock
        self._options = options or AlertOptions()
        self._lock = asyncio.Lock()
        # One object for the engine's life: muters hold it as their view of open alerts.
        self._open = OpenAlerts()
        self._incidents = OpenIncidents(self._options.incident_window_ms)
        self._flaps = FlapDamper(self._options)
        self._muters: builtins.list[Muter] = list(muters)
        self._started = False
        self._listeners: builtins.list[AlertListener] = []
        self._mutes_checked_at = 0
        self._mutes_refreshed_at = 0

    @property
    def options(self) -> AlertOptions:
        return self._options

    @property
    def view(self) -> OpenAlerts:
        """The open alerts as last committed, for muters that look at other alerts.

        Read-only: the objects are the engine's own; nothing outside may change them.
        """
        return self._open

    def add_muter(self, muter: Muter) -> None:
        """Register a silence set or inhibition rules; then ``await remute()`` so alerts
        already open are judged by it too."""
        self._muters.append(muter)

    async def start(self) -> None:
        """Index the open alerts on disk, so after a restart repeats update them, not duplicate.

        Should the database hold two open alerts for one key (it cannot happen
        through this engine), the newest wins the index and a warning is logged;
        the older one stays visible in lists and can still be closed by id.
        Open incidents are reloaded too, so alerts after a restart join them.
        """
        async with self._lock:
            await self._store.prepare()
            self._open.clear()
            for alert in await self._store.open_alerts():
                held = self._open.by_key((alert.device_id, alert.rule))
                if held is not None:
                    log.warning(
                        "alerts %d and %d are both open for device %s rule %s; indexing %d",
                        held.id,
                        alert.id,
                        alert.device_id,
                        alert.rule,
                        alert.id,
                    )
                self._open.put(alert)
            self._incidents.load(await self._store.open_incidents())
            self._flaps.clear()
            self._mutes_checked_at = self._mutes_refreshed_at = self._clock()
            self._started = True

    # -- signals ---------------------------------------------------------------

    async def handle(self, signals: Sequence[Signal]) -> list[AlertChange]:
        """Apply detector signals in order; return the changes made (also published).

        The changes include knock-on ones: a parent's offline alert suppressing its
        children's comes with an ``"updated"`` change for each child.

        The lock is taken per signal, so duty-staff actions are not held up behind
        a long batch. If a write fails the exception propagates; changes before it
        are already committed and published.
        """
        self._require_started()
        changes: list[AlertChange] = []
        for signal in signals:
            async with self._lock:
                changes.extend(await self._apply(signal))
        return changes

    async def _apply(self, signal: Signal) -> list[AlertChange]:
        now = self._clock()
        changes: list[AlertChange] = []
        current = self._open.by_key((signal.device_id, signal.rule))
        if current is not None:
            settles_at = self._flaps.settles_at(current)
            if settles_at is not None and signal.ts_ms >= settles_at:
                # Quiet for long enough before this signal: settle first, then apply it.
                changes.extend(await self._finish(self._settle_step(current, settles_at), now))
                current = self._open.by_id(current.id)
        step: _Step | None
        if signal.active and current is None:
            step = self._raise_step(signal)
        elif signal.active and current is not None:
            step = self._repeat_step(current, signal)
        elif current is not None:
            step = self._clear_step(current, signal)
        else:
            step = None
        if step is not None:
            changes.extend(await self._finish(step, now))
        return changes

    def _raise_step(self, signal: Signal) -> _Step:
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
        return _Step("raised", None, draft, signal.ts_ms)

    def _repeat_step(self, current: Alert, signal: Signal) -> _Step:
        severity = current.severity
        if signal.severity.rank > severity.rank:
            severity = signal.severity  # upgrade only: never downgraded while open
        updated = dataclasses.replace(
            current,
            count=current.count + 1,
            value=signal.value,
            message=signal.message or current.message,
            severity=severity,
            updated_at=max(current.updated_at, signal.ts_ms),
        )
        step = _Step("updated", current, updated, signal.ts_ms)
        if current.flapping:
            if current.flap_active is False:  # a flip while held: an update, not a re-fire
                step.after = FlapDamper.flip(updated, signal.ts_ms, True)
        elif current.state is AlertState.CLEARED:
            step.flip = True
            step.notes.append("active again")
            if self._flaps.would_flap(current.id, signal.ts_ms):
                step.after = FlapDamper.start(updated, signal.ts_ms, True)
                step.notes.append(self._flaps.note())
            else:
                state = AlertState.ACKNOWLEDGED if current.acknowledged else AlertState.RAISED
                step.after = dataclasses.replace(updated, state=state, cleared_at=None)
        if severity is not current.severity:
            step.notes.append(f"severity {current.severity} -> {severity}")
        return step

    def _clear_step(self, current: Alert, signal: Signal) -> _Step | None:
        updated_at = max(current.updated_at, signal.ts_ms)
        if current.flapping:
            if current.flap_active is False:
                return None  # already clear while held
            held = FlapDamper.flip(current, signal.ts_ms, False)
            held = dataclasses.replace(held, updated_at=updated_at)
            return _Step("updated", current, held, signal.ts_ms)
        if current.state not in _ACTIVE:
            return None
        if self._flaps.would_flap(current.id, signal.ts_ms):
            held = FlapDamper.start(current, signal.ts_ms, False)
            return _Step(
                "updated",
                current,
                dataclasses.replace(held, updated_at=updated_at),
                signal.ts_ms,
                notes=[self._flaps.note()],
                flip=True,
            )
        cleared = dataclasses.replace(
            current, state=AlertState.CLEARED, cleared_at=signal.ts_ms, updated_at=updated_at
        )
        return _Step("cleared", current, cleared, signal.ts_ms, flip=True)

    def _settle_step(self, current: Alert, at_ms: int) -> _Step:
        settled = FlapDamper.settle(current, at_ms)
        clear = settled.state is AlertState.CLEARED and current.state is not AlertState.CLEARED
        return _Step(
            "cleared" if clear else "updated",
            current,
            settled,
            at_ms,
            notes=["settled after flapping: " + ("clear" if clear else "still active")],
            line=True,
        )

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
            step = _Step("acknowledged", current, updated, now, actor, [line] if line else [], True)
            changes = await self._finish(step, now)
        return dataclasses.replace(changes[0].alert)

    async def owner_acknowledge(self, alert_id: int, actor: str, note: str = "") -> Alert:
        """Record that the site's owner (an enterprise user) has seen the alert.

        A line in the alert's history and ``owner_acknowledged_by``; the state and
        ``acknowledged`` stay as they are. The owner saying "we are on it" must not stop
        the town's escalation or silence the duty board: a site owner acknowledging a
        red fire alarm would otherwise keep the duty officer and the fire station from
        ever being told. Only the office's staff acknowledge (:meth:`acknowledge`).
        """
        self._require_started()
        _require_actor(actor)
        async with self._lock:
            current = await self._open_alert(alert_id)
            if current.owner_acknowledged_by is not None:
                raise ConflictError(f"alert {alert_id} is already acknowledged by its owner")
            now = self._clock()
            updated = dataclasses.replace(
                current,
                owner_acknowledged_by=actor,
                owner_acknowledged_at=now,
                updated_at=max(current.updated_at, now),
            )
            line = f"owner acknowledged: {note}" if note else "owner acknowledged"
            step = _Step("updated", current, updated, now, actor, [line], True)
            changes = await self._finish(step, now)
        return dataclasses.replace(changes[0].alert)

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
            step = _Step("closed", current, updated, now, actor, [note] if note else [], True)
            changes = await self._finish(step, now)
        return dataclasses.replace(changes[0].alert)

    # -- time and mutes --------------------------------------------------------

    async def tick(self) -> list[AlertChange]:
        """Do what time alone changes: settle quiet flapping alerts, and re-ask the
        muters about every open alert once a silence has started or ended (or
        ``options.mute_refresh_ms`` has passed)."""
        self._require_started()
        now = self._clock()
        changes: list[AlertChange] = []
        for alert_id in [a.id for a in self._open if a.flapping]:
            async with self._lock:
                current = self._open.by_id(alert_id)
                settles_at = None if current is None else self._flaps.settles_at(current)
                if current is not None and settles_at is not None and now >= settles_at:
                    changes.extend(await self._finish(self._settle_step(current, settles_at), now))
        due = now - self._mutes_refreshed_at >= self._options.mute_refresh_ms
        for muter in self._muters:
            upcoming = _safely(muter.next_change_ms, self._mutes_checked_at)
            due = due or (upcoming is not None and upcoming <= now)
        self._mutes_checked_at = now
        if due:
            changes.extend(await self.remute())
        return changes

    async def remute(self) -> list[AlertChange]:
        """Re-ask every muter about every open alert; publish the alerts whose answer changed.

        Call after a silence is set or ended. The lock is taken per alert.
        """
        self._require_started()
        started = self._clock()
        changes: list[AlertChange] = []
        for alert_id in [a.id for a in self._open]:
            async with self._lock:
                current = self._open.by_id(alert_id)
                if current is not None:
                    changes.extend(await self._remute_one(current, self._clock()))
        self._mutes_refreshed_at = started
        return changes

    async def run_timer(self) -> None:
        """Call :meth:`tick` every ``options.tick_ms`` until cancelled (a gateway task)."""
        while True:
            await asyncio.sleep(self._options.tick_ms / 1000)
            try:
                await self.tick()
            except Exception:  # a failed tick must not end the timer: the next one retries
                log.exception("alert engine tick failed")

    def _with_mutes(self, alert: Alert, now: int, notes: builtins.list[str]) -> Alert:
        """The alert with its muters' current answers; a note for each that changed."""
        found: dict[MuteKind, int | None] = {MuteKind.SILENCE: None, MuteKind.INHIBITION: None}
        for muter in self._muters:
            # A muter that fails answers "not muted": better a page too many than a fire
            # nobody hears of.
            answer = _safely(muter.mutes, alert, now)
            if answer is not None and found.get(muter.kind) is None:
                found[muter.kind] = answer
        silenced, suppressed = found[MuteKind.SILENCE], found[MuteKind.INHIBITION]
        if silenced == alert.silenced_by and suppressed == alert.suppressed_by:
            return alert
        if silenced != alert.silenced_by:
            notes.append(
                f"silenced by silence {silenced}"
                if silenced is not None
                else f"silence {alert.silenced_by} no longer applies"
            )
        if suppressed != alert.suppressed_by:
            notes.append(
                f"suppressed by alert {suppressed}"
                if suppressed is not None
                else f"no longer suppressed by alert {alert.suppressed_by}"
            )
        return dataclasses.replace(alert, silenced_by=silenced, suppressed_by=suppressed)

    async def _remute_one(self, current: Alert, now: int) -> builtins.list[AlertChange]:
        notes: builtins.list[str] = []
        after = self._with_mutes(current, now, notes)
        if after is current:
            return []
        after = dataclasses.replace(after, updated_at=max(after.updated_at, now))
        transition = Transition(
            current.id, now, SYSTEM_ACTOR, current.state, current.state, "; ".join(notes)
        )
        await self._store.save(after, transition)
        return [self._commit("updated", after)]

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
        incident_id: int | None = None,
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
            incident_id=incident_id,
        )

    def open_alerts(self) -> builtins.list[Alert]:
        """Copies of the open alerts held in memory (a snapshot for a new SSE stream)."""
        return [dataclasses.replace(a) for a in self._open]

    def incident(self, incident_id: int) -> Incident | None:
        """A copy of an *open* incident as held in memory, or None (closed or unknown).

        Cheap and synchronous, for listeners deciding whether an alert is the first
        of its incident (one fire, one page) or raises its severity.
        """
        return self._incidents.get(incident_id)

    async def get_incident(self, incident_id: int) -> Incident:
        """The incident as stored, open or closed; NotFoundError if there is none."""
        return await self._store.get_incident(incident_id)

    async def list_incidents(
        self,
        *,
        site_ids: Collection[str] | None = None,
        is_open: bool | None = None,
        limit: int = DEFAULT_LIST_LIMIT,
    ) -> builtins.list[Incident]:
        """Incidents, open first, worst severity first, newest first."""
        return await self._store.list_incidents(site_ids=site_ids, is_open=is_open, limit=limit)

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

    async def _finish(self, step: _Step, now: int) -> builtins.list[AlertChange]:
        """Work out mutes and incident, write, commit, publish; then the knock-on mutes.

        Called under the lock. Returns the step's change first.
        """
        after = step.after
        if after.is_open:
            after = self._with_mutes(after, now, step.notes)
        if step.before is None:
            incident: Incident | None = self._incidents.place(after)
        else:
            incident = self._incidents.after_change(after, self._open.by_id, now)
        transition = None
        before = step.before
        if before is not None and (step.line or step.notes or before.state is not after.state):
            transition = Transition(
                after.id, step.ts_ms, step.actor, before.state, after.state, "; ".join(step.notes)
            )
        stored, stored_incident = await self._store.write(
            after, transition, incident=incident, actor=step.actor, note="; ".join(step.notes)
        )
        if stored_incident is not None:
            self._incidents.commit(stored_incident, stored)
        if not stored.is_open or (before is not None and before.flapping and not stored.flapping):
            self._flaps.forget(stored.id)
        elif step.flip:
            self._flaps.record(stored.id, step.ts_ms)
        changes = [self._commit(step.kind, stored)]
        if (
            before is None
            or before.state is not stored.state
            or before.severity is not stored.severity
        ):
            # Only these change what an alert mutes (see Muter.dependents); a plain repeat
            # of a hovering reading must not re-judge every alert at its site.
            changes.extend(await self._remute_dependents(stored, now))
        return changes

    async def _remute_dependents(self, changed: Alert, now: int) -> builtins.list[AlertChange]:
        """Re-ask about the alerts a muter says ``changed`` may mute or have muted.

        One level is enough: muting never changes an alert's state or severity, so a
        mute change cannot change what that alert mutes in turn.
        """
        changes: builtins.list[AlertChange] = []
        seen = {changed.id}
        for muter in self._muters:
            for alert_id in _safely(_dependents, muter, changed) or []:
                if alert_id in seen:
                    continue
                seen.add(alert_id)
                current = self._open.by_id(alert_id)
                if current is not None:
                    changes.extend(await self._remute_one(current, now))
        return changes

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
        a listener only queues its own work. To skip muted alerts check
        ``change.alert.muted``; see :mod:`alerts.model` for what else a change carries.
        """
        self._listeners.append(listener)


def _safely(fn: Callable[..., T], *args: object) -> T | None:
    """Call a muter's method; on a bug, log it and answer None (nothing muted, nothing due)."""
    try:
        return fn(*args)
    except Exception:  # a muter bug must not stop alerting
        log.exception("muter call %r failed", fn)
        return None


def _dependents(muter: Muter, changed: Alert) -> builtins.list[int]:
    return list(muter.dependents(changed))


def _require_actor(actor: str) -> None:
    # Every transition must say who made it; an anonymous close would defeat the audit.
    if not actor.strip():
        raise ValueError("actor must not be empty")
