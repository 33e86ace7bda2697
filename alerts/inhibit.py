"""Inhibition: an open alert that explains others suppresses them.

Two rules, both from what a duty officer would otherwise wade through at 3 a.m.:

* **Parent offline.** When a fire panel's transmission device (or the gateway a
  string of NB-IoT or LoRa detectors hangs off) loses its link, every device behind
  it goes quiet too, and each raises its own offline alert. One cause, one alert
  to act on: an *active* offline alert of any ancestor (``Device.parent_id``,
  transitively) suppresses the offline alerts of the devices behind it.
* **Confirmed fire.** Once a site has a red fire alarm, the yellow and orange
  pre-warnings of the same fire (hazard fire, overheating or smoke) are explained
  by it and add nothing but noise.

A suppressed alert is kept, shown and stored with ``suppressed_by`` = the
inhibiting alert's id; its state is untouched. "Active" means RAISED or
ACKNOWLEDGED: when the inhibitor clears (the parent is back, the fire alarm
reset) or is closed, what it suppressed becomes unsuppressed, so a child that
is *still* offline, or a pre-warning that is still present, pages then.

The rules only ever suppress an alert with a lower standing than the inhibitor
(a fault behind a fault, a pre-warning under a red alarm) and refuse to follow a
parent loop, so two alerts can never suppress each other into silence.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Protocol

from alerts.index import AlertKey
from alerts.model import Alert, AlertClass, AlertState, Severity
from alerts.mute import MuteKind
from gateway.errors import NotFoundError

#: The rule of offline alerts; the same string as ``detectors.bank.OFFLINE_RULE``
#: (not imported from there: detectors import alerts, not the other way round).
OFFLINE_RULE = "offline"
#: The hazard of a confirmed fire alarm (smoke alarm, heat alarm, panel fire bit).
FIRE_HAZARD = "fire"
#: Hazards of the pre-warnings a confirmed fire at the same site explains.
PREWARNING_HAZARDS = frozenset({"fire", "overheating", "smoke"})

_ACTIVE = (AlertState.RAISED, AlertState.ACKNOWLEDGED)
_PREWARNING_SEVERITIES = (Severity.YELLOW, Severity.ORANGE)

ParentOf = Callable[[str], str | None]
"""A device's parent device id (the registry's ``Device.parent_id``), or None."""


class AlertView(Protocol):
    """The open alerts as last committed (the engine's index); read-only for the inhibitor."""

    def by_key(self, key: AlertKey) -> Alert | None: ...

    def at_site(self, site_id: str) -> Sequence[Alert]: ...

    def with_rule(self, rule: str) -> Sequence[Alert]: ...


class HasParent(Protocol):
    @property
    def parent_id(self) -> str | None: ...


def parents_from(device: Callable[[str], HasParent]) -> ParentOf:
    """A :data:`ParentOf` over an in-memory device lookup that raises NotFoundError for an
    unknown device, e.g. ``Registry.device`` (no await: muters are asked synchronously)."""

    def parent_of(device_id: str) -> str | None:
        try:
            return device(device_id).parent_id
        except NotFoundError:
            return None

    return parent_of


def is_offline(alert: Alert) -> bool:
    return alert.rule == OFFLINE_RULE and alert.alert_class is AlertClass.FAULT


def is_confirmed_fire(alert: Alert) -> bool:
    """A red fire alarm that is active: the inhibitor of the fire rule."""
    return (
        alert.alert_class is AlertClass.HAZARD
        and alert.hazard == FIRE_HAZARD
        and alert.severity is Severity.RED
        and alert.state in _ACTIVE
    )


class Inhibitor:
    """The two inhibition rules as a :class:`~alerts.mute.Muter`.

    ``alerts`` is the engine's view of its open alerts (``AlertEngine.view``) and
    ``parent_of`` the registry's device tree; both are read at every question, so a
    device registered behind a parent later is covered without a restart.
    """

    def __init__(
        self,
        alerts: AlertView,
        parent_of: ParentOf,
        *,
        prewarning_hazards: Collection[str] = PREWARNING_HAZARDS,
    ) -> None:
        self._alerts = alerts
        self._parent_of = parent_of
        self._prewarning_hazards = frozenset(prewarning_hazards)

    @property
    def kind(self) -> MuteKind:
        return MuteKind.INHIBITION

    def mutes(self, alert: Alert, now_ms: int) -> int | None:
        if is_offline(alert):
            return self._offline_inhibitor(alert)
        if self._is_prewarning(alert):
            return self._fire_inhibitor(alert)
        return None

    def dependents(self, changed: Alert) -> Iterator[int]:
        if is_offline(changed):
            for other in self._alerts.with_rule(OFFLINE_RULE):
                if other.id != changed.id and changed.device_id in self.ancestors(other.device_id):
                    yield other.id
        if changed.alert_class is AlertClass.HAZARD and changed.hazard == FIRE_HAZARD:
            for other in self._alerts.at_site(changed.site_id) if changed.site_id else ():
                if other.id != changed.id and self._is_prewarning(other):
                    yield other.id

    def next_change_ms(self, after_ms: int) -> int | None:
        return None  # inhibition changes only when alerts do

    def ancestors(self, device_id: str) -> list[str]:
        """Parent, grandparent, ...; empty if the chain loops back to the device itself.

        A loop in the registry (A behind B behind A) would otherwise let two offline
        alerts suppress each other and nobody would hear of either.
        """
        chain: list[str] = []
        seen = {device_id}
        parent = self._parent_of(device_id)
        while parent is not None:
            if parent == device_id:
                return []
            if parent in seen:
                break  # a loop further up: what was found below it still stands
            chain.append(parent)
            seen.add(parent)
            parent = self._parent_of(parent)
        return chain

    def _offline_inhibitor(self, alert: Alert) -> int | None:
        sources: list[int] = []
        for ancestor in self.ancestors(alert.device_id):
            source = self._alerts.by_key((ancestor, OFFLINE_RULE))
            if source is not None and source.id != alert.id and source.state in _ACTIVE:
                sources.append(source.id)
        return _keep_or_first(alert, sources)

    def _fire_inhibitor(self, alert: Alert) -> int | None:
        sources = sorted(
            a.id
            for a in self._alerts.at_site(alert.site_id)
            if a.id != alert.id and is_confirmed_fire(a)
        )
        return _keep_or_first(alert, sources)

    def _is_prewarning(self, alert: Alert) -> bool:
        return (
            alert.alert_class is AlertClass.HAZARD
            and alert.severity in _PREWARNING_SEVERITIES
            and alert.hazard in self._prewarning_hazards
            and bool(alert.site_id)
        )


def _keep_or_first(alert: Alert, sources: list[int]) -> int | None:
    """Keep the current inhibitor while it still applies (no churn), else the first."""
    if alert.suppressed_by is not None and alert.suppressed_by in sources:
        return alert.suppressed_by
    return sources[0] if sources else None
