"""Which devices have gone quiet: one detector for the whole fleet.

A smoke alarm with a flat battery, a cut NB-IoT link or a monitor someone
unplugged raises nothing by itself, yet the site is then unwatched. Duty staff
need that as an equipment fault, once when it happens and once when it ends.
"""

from __future__ import annotations

from dataclasses import dataclass

from detectors._state import get_bool, get_each, get_int, get_opt_int


@dataclass(frozen=True, slots=True)
class OfflineChange:
    """A device went offline (``offline=True``) or came back (``offline=False``)."""

    device_id: str
    offline: bool
    ts_ms: int
    last_seen_ms: int | None


@dataclass(slots=True)
class _Watch:
    timeout_ms: int
    #: Start of the silence clock for a device never heard from (when it was expected).
    since_ms: int
    last_seen_ms: int | None = None
    offline: bool = False
    #: When it went offline, so a back-online change is never stamped before it.
    changed_ms: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "timeout_ms": self.timeout_ms,
            "since_ms": self.since_ms,
            "last_seen_ms": self.last_seen_ms,
            "offline": self.offline,
            "changed_ms": self.changed_ms,
        }

    @classmethod
    def from_json(cls, raw: dict[str, object]) -> _Watch:
        watch = cls(
            timeout_ms=get_int(raw, "timeout_ms"),
            since_ms=get_int(raw, "since_ms"),
            last_seen_ms=get_opt_int(raw, "last_seen_ms"),
            offline=get_bool(raw, "offline"),
            changed_ms=get_opt_int(raw, "changed_ms"),
        )
        _check_timeout(watch.timeout_ms)
        return watch


def _check_timeout(timeout_ms: int) -> None:
    if timeout_ms <= 0:
        raise ValueError(f"timeout_ms must be > 0, got {timeout_ms}")


class OfflineDetector:
    """Tracks when each device was last heard from, and reports each transition once.

    Three things take a device offline or back online:

    * any message (reading, event, heartbeat) via :meth:`seen` proves it is online;
    * its retained status topic / MQTT last will via :meth:`reported`: ``offline``
      takes it offline at once, without waiting for the timeout;
    * silence: :meth:`sweep` takes offline every device not heard from for longer
      than its timeout (a profile's ``offline_after_s``, several heartbeats).

    A device is only swept once it is known: seen, reported, or registered with
    :meth:`expect`. ``expect`` is what lets a newly installed device that never
    speaks at all go offline after its timeout, instead of never being noticed.

    The time base is whatever the caller passes; ``sweep(now_ms)`` compares it
    with the ``ts_ms`` given to :meth:`seen`, so both should be gateway receive
    time, not a device's own clock (which may be hours off).

    Examples
    --------
    >>> offline = OfflineDetector()
    >>> offline.expect("smoke-1", since_ms=0, timeout_ms=60_000)
    >>> offline.sweep(60_000)              # exactly at the timeout: not yet
    []
    >>> offline.sweep(60_001)
    [OfflineChange(device_id='smoke-1', offline=True, ts_ms=60001, last_seen_ms=None)]
    >>> offline.sweep(120_000)             # reported once
    []
    >>> offline.seen("smoke-1", 125_000, timeout_ms=60_000)
    OfflineChange(device_id='smoke-1', offline=False, ts_ms=125000, last_seen_ms=125000)
    >>> offline.reported("smoke-1", online=False, ts_ms=130_000, timeout_ms=60_000).offline
    True
    """

    __slots__ = ("_devices",)

    def __init__(self) -> None:
        self._devices: dict[str, _Watch] = {}

    def expect(self, device_id: str, since_ms: int, timeout_ms: int) -> None:
        """Register a device that should be heard from within ``timeout_ms`` of ``since_ms``.

        For a device already known only the timeout is updated: re-registering at
        start-up must not restart the silence clock of a device that died.
        """
        _check_timeout(timeout_ms)
        watch = self._devices.get(device_id)
        if watch is None:
            self._devices[device_id] = _Watch(timeout_ms=timeout_ms, since_ms=since_ms)
        else:
            watch.timeout_ms = timeout_ms

    def seen(self, device_id: str, ts_ms: int, timeout_ms: int) -> OfflineChange | None:
        """A message from the device at ``ts_ms``; returns the back-online change, if any.

        A late message (older than the newest) does not move ``last_seen`` back,
        but still brings an offline device back: it was delivered, so the device
        or its link is talking again.
        """
        _check_timeout(timeout_ms)
        watch = self._devices.get(device_id)
        if watch is None:
            self._devices[device_id] = _Watch(
                timeout_ms=timeout_ms, since_ms=ts_ms, last_seen_ms=ts_ms
            )
            return None
        watch.timeout_ms = timeout_ms
        if watch.last_seen_ms is None or ts_ms > watch.last_seen_ms:
            watch.last_seen_ms = ts_ms
        if not watch.offline:
            return None
        watch.offline = False
        changed_ms = watch.changed_ms if watch.changed_ms is not None else ts_ms
        watch.changed_ms = None
        return OfflineChange(
            device_id=device_id,
            offline=False,
            ts_ms=max(ts_ms, changed_ms),
            last_seen_ms=watch.last_seen_ms,
        )

    def reported(
        self, device_id: str, online: bool, ts_ms: int, timeout_ms: int
    ) -> OfflineChange | None:
        """The device's status topic said ``online`` or ``offline`` at ``ts_ms``.

        ``online`` counts as a message. ``offline`` (typically the broker
        publishing the device's last will) takes it offline at once, unless the
        device has sent something newer than the status: then the status is stale.
        """
        if online:
            return self.seen(device_id, ts_ms, timeout_ms)
        _check_timeout(timeout_ms)
        watch = self._devices.get(device_id)
        if watch is None:
            watch = self._devices[device_id] = _Watch(timeout_ms=timeout_ms, since_ms=ts_ms)
        watch.timeout_ms = timeout_ms
        if watch.offline or (watch.last_seen_ms is not None and ts_ms < watch.last_seen_ms):
            return None
        return self._go_offline(device_id, watch, ts_ms)

    def resume_offline(self, device_id: str, since_ms: int, timeout_ms: int) -> None:
        """Mark a device offline without reporting it: its offline alert is already open.

        Used after a restart, so the device's next message reports it back online
        and :meth:`sweep` does not report it offline a second time. ``since_ms``
        (when it went offline, at the latest now) keeps the back-online change
        from being stamped before it. A device already offline is left alone.
        """
        _check_timeout(timeout_ms)
        watch = self._devices.get(device_id)
        if watch is None:
            watch = self._devices[device_id] = _Watch(timeout_ms=timeout_ms, since_ms=since_ms)
        else:
            watch.timeout_ms = timeout_ms
        if watch.offline:
            return
        watch.offline = True
        watch.changed_ms = since_ms

    def sweep(self, now_ms: int) -> list[OfflineChange]:
        """Take offline every known device silent for longer than its timeout.

        O(devices); call it every few seconds, not per message.
        """
        changes = []
        for device_id, watch in self._devices.items():
            if watch.offline:
                continue
            heard = watch.last_seen_ms if watch.last_seen_ms is not None else watch.since_ms
            if now_ms - heard > watch.timeout_ms:
                changes.append(self._go_offline(device_id, watch, now_ms))
        return changes

    def is_offline(self, device_id: str) -> bool | None:
        """Whether the device is offline now; None for a device not known at all."""
        watch = self._devices.get(device_id)
        return None if watch is None else watch.offline

    def last_seen(self, device_id: str) -> int | None:
        """When the device was last heard from; None if never (or not known)."""
        watch = self._devices.get(device_id)
        return None if watch is None else watch.last_seen_ms

    def forget(self, device_id: str) -> None:
        """Stop watching a device (removed from the registry); unknown ids are fine."""
        self._devices.pop(device_id, None)

    @staticmethod
    def _go_offline(device_id: str, watch: _Watch, ts_ms: int) -> OfflineChange:
        watch.offline = True
        watch.changed_ms = ts_ms
        return OfflineChange(
            device_id=device_id, offline=True, ts_ms=ts_ms, last_seen_ms=watch.last_seen_ms
        )

    def state(self) -> dict[str, object]:
        """Every watched device's clock and status (JSON-safe)."""
        return {"devices": {device_id: w.to_json() for device_id, w in self._devices.items()}}

    def restore(self, state: dict[str, object]) -> None:
        """Replace all watches with a :meth:`state` snapshot; ValueError if it is not one."""
        if not isinstance(state, dict):
            raise ValueError(f"OfflineDetector state must be a mapping, got {type(state).__name__}")
        self._devices = get_each(state, "devices", _Watch.from_json, "device")

    def __len__(self) -> int:
        return len(self._devices)
