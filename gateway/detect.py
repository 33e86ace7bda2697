"""Stage 4, detect: accepted readings and events go through the detectors.

Signals are queued for the alert engine rather than awaited here, so a slow alert
write never holds up ingestion and a burst of readings never waits for alerting.
"""

from __future__ import annotations

import asyncio

from alerts.model import Signal
from detectors.bank import DetectorBank
from gateway.metrics import Counters
from gateway.pipeline import Delivery


class Detect:
    def __init__(
        self, bank: DetectorBank, signals: asyncio.Queue[list[Signal]], counters: Counters
    ) -> None:
        self.bank = bank
        self.signals = signals
        self.counters = counters

    async def __call__(self, d: Delivery) -> None:
        found: list[Signal] = []
        if d.readings:
            found.extend(self.bank.on_readings(d.readings, received_ms=d.message.received_ms))
        for event in d.events:
            found.extend(self.bank.on_event(event, received_ms=d.message.received_ms))
        if d.status is not None:
            found.extend(self.bank.on_status(d.status))
        if found:
            self.counters.signals += len(found)
            self.signals.put_nowait(found)
