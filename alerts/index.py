"""The engine's in-memory view of open alerts, keyed by (device, rule), by id, by site and rule.

Signals arrive by (device, rule); duty staff act by alert id; inhibition asks "what
is open at this site" and "which offline alerts are open". Holding every map in
one small class keeps them from drifting apart.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from alerts.model import Alert

AlertKey = tuple[str, str]
"""(device_id, rule): at most one open alert exists per key."""


def key_of(alert: Alert) -> AlertKey:
    return (alert.device_id, alert.rule)


class OpenAlerts:
    """Open alerts by key and by id. Holds whatever objects it is given; callers copy.

    >>> from alerts.model import AlertClass, AlertState, Severity
    >>> a = Alert(7, "dev", "site", "rule", Severity.RED, AlertClass.HAZARD, "fire",
    ...           AlertState.RAISED, 0, 0, None)
    >>> index = OpenAlerts([a])
    >>> index.by_key(("dev", "rule")) is index.by_id(7) is a
    True
    >>> index.remove(a); len(index)
    0
    """

    def __init__(self, alerts: Iterable[Alert] = ()) -> None:
        self._by_key: dict[AlertKey, Alert] = {}
        self._by_id: dict[int, Alert] = {}
        # Site and rule never change for an alert, so these only follow put/remove.
        self._by_site: dict[str, dict[int, Alert]] = {}
        self._by_rule: dict[str, dict[int, Alert]] = {}
        for alert in alerts:
            self.put(alert)

    def clear(self) -> None:
        """Forget everything (the engine reloads from disk on start)."""
        self._by_key.clear()
        self._by_id.clear()
        self._by_site.clear()
        self._by_rule.clear()

    def by_key(self, key: AlertKey) -> Alert | None:
        return self._by_key.get(key)

    def by_id(self, alert_id: int) -> Alert | None:
        return self._by_id.get(alert_id)

    def at_site(self, site_id: str) -> Sequence[Alert]:
        """The open alerts at one site (in no particular order)."""
        return list(self._by_site.get(site_id, {}).values())

    def with_rule(self, rule: str) -> Sequence[Alert]:
        """The open alerts of one rule, e.g. every open ``offline`` alert."""
        return list(self._by_rule.get(rule, {}).values())

    def put(self, alert: Alert) -> None:
        """Insert or replace the open alert for the alert's key.

        A different alert already held for the same key is evicted: the last one
        put wins, which is how a duplicate found on start is resolved.
        """
        key = key_of(alert)
        previous = self._by_key.get(key)
        if previous is not None and previous.id != alert.id:
            del self._by_id[previous.id]
            self._unlist(previous)
        self._by_key[key] = alert
        self._by_id[alert.id] = alert
        self._by_site.setdefault(alert.site_id, {})[alert.id] = alert
        self._by_rule.setdefault(alert.rule, {})[alert.id] = alert

    def remove(self, alert: Alert) -> None:
        """Forget the alert (it was closed); unknown alerts are ignored."""
        if self._by_id.pop(alert.id, None) is not None:
            self._by_key.pop(key_of(alert), None)
            self._unlist(alert)

    def _unlist(self, alert: Alert) -> None:
        for groups, name in ((self._by_site, alert.site_id), (self._by_rule, alert.rule)):
            group = groups.get(name)
            if group is not None:
                group.pop(alert.id, None)
                if not group:
                    del groups[name]

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Alert]:
        return iter(list(self._by_id.values()))
