"""Stage 3, persist: readings, events and dead letters are batched, then acknowledged.

Nothing on the hot path waits for a commit: a delivery is appended to the current
batch, and a background task flushes the batch every ``flush_interval_s`` (or as
soon as it is large). Only after the batch is durable are its MQTT messages
acknowledged, in the order they arrived; until then the broker still holds them,
so a crash loses nothing. If the store fails, the batch is retried with backoff,
and once too much is pending the pipeline waits (back-pressure onto the broker)
instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass

from gateway.deadletter import DeadLetterStore
from gateway.metrics import Counters
from gateway.model import DeadLetter, DeviceEvent, Reading, now_ms
from gateway.pipeline import Delivery
from gateway.stores.base import TimeSeriesStore

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PersistOptions:
    flush_interval_s: float = 0.05
    max_batch: int = 5_000
    #: Flush once this many messages wait for their ack (brokers cap unacked QoS 1 in flight).
    max_unacked: int = 500
    #: Past this many pending readings the pipeline waits for the store.
    max_pending: int = 200_000
    max_backoff_s: float = 10.0


class Persist:
    def __init__(
        self,
        store: TimeSeriesStore,
        dead_letters: DeadLetterStore,
        counters: Counters,
        options: PersistOptions = PersistOptions(),
    ) -> None:
        self.store = store
        self.dead_letters = dead_letters
        self.counters = counters
        self.options = options
        self._readings: list[Reading] = []
        self._events: list[DeviceEvent] = []
        self._letters: list[DeadLetter] = []
        self._acks: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.store_ok = True

    @property
    def pending(self) -> int:
        return len(self._readings) + len(self._letters)

    async def __call__(self, d: Delivery) -> None:
        msg = d.message
        self._letters.extend(
            DeadLetter(msg.received_ms, msg.topic, msg.payload, r.reason, r.detail, r.device_id)
            for r in d.rejections
        )
        self._readings.extend(d.readings)
        self._events.extend(d.events)
        self._acks.append(d.ack)
        counters = self.counters
        counters.messages_in += 1
        counters.readings_accepted += len(d.readings)
        counters.events_accepted += len(d.events)
        for r in d.rejections:
            counters.dead_letters[r.reason] += 1
        if (
            len(self._readings) >= self.options.max_batch
            or len(self._acks) >= self.options.max_unacked
        ):
            self._wake.set()
        if self.pending >= self.options.max_pending:
            self._room.clear()
            self._wake.set()
            await self._room.wait()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ewg-persist")

    async def stop(self) -> None:
        """Flush what is pending and stop (called on shutdown, after ingestion stopped)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.flush_interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self) -> None:
        async with self._flush_lock:
            if not (self._acks or self._readings or self._letters or self._events):
                return
            readings, self._readings = self._readings, []
            events, self._events = self._events, []
            letters, self._letters = self._letters, []
            acks, self._acks = self._acks, []
            backoff = 0.1
            while True:
                try:
                    new = await self.store.write(readings, events)
                    await self.dead_letters.write(letters)
                    break
                except Exception as exc:  # a store outage must never kill ingestion
                    self.store_ok = False
                    self.counters.store_errors += 1
                    self.counters.last_store_error = f"{type(exc).__name__}: {exc}"
                    log.error("store write failed (%s); retrying in %.1fs", exc, backoff)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.options.max_backoff_s)
            self.store_ok = True
            self.counters.readings_stored += new
            self.counters.readings_duplicate += len(readings) - new
            self.counters.flushes += 1
            self.counters.last_flush_ms = now_ms()
            for ack in acks:
                ack()
            if self.pending < self.options.max_pending:
                self._room.set()
