"""Stage 3, persist: readings, events and dead letters are batched, then acknowledged.

Nothing on the hot path waits for a commit: a delivery is appended to the current
batch, and a background task flushes the batch every ``flush_interval_s`` (or as
soon as it is large). Only after the batch is durable are its MQTT messages
acknowledged, in the order they arrived; until then the broker still holds them,
so a crash loses nothing.

Durable means "in the time-series store" or, when the store is unreachable or
slower than ``write_timeout_s``, "in the store-and-forward spool on local disk"
(:mod:`gateway.spool`): a store outage then neither stalls ingestion nor
alerting, which runs on the live stream. While the spool holds a backlog, new
batches queue behind it so the store receives every batch in arrival order; a
drain task replays the backlog (oldest first, several batches per write, with
backoff while the store stays down) and is also what empties a spool left by a
previous run. When the spool is full, or none is configured, the batch stays in
memory unacknowledged and is retried, and once too much is pending the pipeline
waits (back-pressure onto the broker) instead of growing without bound.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.deadletter import DeadLetterStore
from gateway.metrics import Counters
from gateway.model import DeadLetter, DeviceEvent, Reading, now_ms
from gateway.pipeline import Delivery
from gateway.spool import Spool, SpoolFull
from gateway.stores.base import TimeSeriesStore

log = logging.getLogger(__name__)

#: The replay rate is measured over the replay writes of this many seconds.
RATE_WINDOW_S = 10.0


@dataclass(frozen=True, slots=True)
class PersistOptions:
    flush_interval_s: float = 0.05
    max_batch: int = 5_000
    #: Flush once this many messages wait for their ack (brokers cap unacked QoS 1 in flight).
    max_unacked: int = 500
    #: Past this many pending readings the pipeline waits for the store.
    max_pending: int = 200_000
    max_backoff_s: float = 10.0
    #: A store write slower than this counts as failed and its batch is spooled.
    #: None: no timeout. The embedded SQLite store gets none: its write runs in a thread that
    #: cannot be cancelled, so a timed-out write would commit anyway and its replay from the
    #: spool (on the same disk) would only add duplicates.
    write_timeout_s: float | None = 10.0
    #: The store-and-forward spool file; None keeps failed batches in memory, unacknowledged.
    spool_path: Path | None = None
    spool_max_bytes: int = 1024**3
    #: One replay write carries about this many readings (several spooled batches).
    replay_batch: int = 5_000


@dataclass(slots=True)
class SpoolCounters:
    """What went through the spool since start (the backlog itself is on :class:`Spool`)."""

    spooled_batches: int = 0
    spooled_readings: int = 0
    replayed_batches: int = 0
    replayed_readings: int = 0
    replay_errors: int = 0
    #: Batches held back unacknowledged because the spool was full (once per batch).
    full_events: int = 0
    spool_errors: int = 0
    last_spool_error: str | None = None


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
        self.spool: Spool | None = None
        self.spool_counters = SpoolCounters()
        self._readings: list[Reading] = []
        self._events: list[DeviceEvent] = []
        self._letters: list[DeadLetter] = []
        self._acks: list[Callable[[], None]] = []
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._task: asyncio.Task[None] | None = None
        self._drainer: asyncio.Task[None] | None = None
        self._drain_wake = asyncio.Event()
        #: Set whenever the drain removed batches from the spool (a held batch may fit now).
        self._progress = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        #: (monotonic start, monotonic end, readings) of recent replay writes.
        self._replays: collections.deque[tuple[float, float, int]] = collections.deque()
        self.store_ok = True
        self.spool_full = False

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
        """Open the spool (a backlog left by a previous run is drained first) and start."""
        if self.options.spool_path is not None:
            self.spool = await Spool(self.options.spool_path, self.options.spool_max_bytes).open()
            if not self.spool.empty:
                log.warning(
                    "spool %s holds %d readings in %d batches from a previous run; replaying",
                    self.spool.path,
                    self.spool.readings,
                    self.spool.batches,
                )
            self._drainer = asyncio.create_task(self._drain(), name="ewg-spool-drain")
        self._task = asyncio.create_task(self._run(), name="ewg-persist")

    async def stop(self) -> None:
        """Flush what is pending and stop (called on shutdown, after ingestion stopped).

        The last batch goes to the store or the spool; if neither takes it (spool
        full), its messages stay unacknowledged and the broker delivers them again.
        A backlog left in the spool is replayed on the next start.
        """
        for task in (self._task, self._drainer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._drainer = None
        await self.flush(final=True)
        if self.spool is not None:
            await self.spool.close()
            self.spool = None

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.options.flush_interval_s)
            self._wake.clear()
            await self.flush()

    async def flush(self, *, final: bool = False) -> None:
        async with self._flush_lock:
            if not (self._acks or self._readings or self._letters or self._events):
                return
            readings, self._readings = self._readings, []
            events, self._events = self._events, []
            letters, self._letters = self._letters, []
            acks, self._acks = self._acks, []
            if not (
                await self._make_durable(readings, events, final=final)
                and await self._write_letters(letters, final=final)
            ):
                log.warning(
                    "%d messages left unacknowledged at shutdown; the broker delivers them again",
                    len(acks),
                )
                return
            self.counters.flushes += 1
            self.counters.last_flush_ms = now_ms()
            for ack in acks:
                ack()
            if self.pending < self.options.max_pending:
                self._room.set()

    async def _make_durable(
        self, readings: list[Reading], events: list[DeviceEvent], *, final: bool
    ) -> bool:
        """Put the batch in the store, or behind the backlog in the spool; False if neither."""
        if not readings and not events:
            return True
        backoff = 0.1
        held = False
        while True:
            self._progress.clear()
            spool = self.spool
            if (spool is None or spool.empty) and await self._write_store(readings, events):
                self.spool_full = False
                return True
            if spool is not None:
                try:
                    await spool.append(readings, events)
                except SpoolFull as exc:
                    if not held:
                        held = True
                        self.spool_counters.full_events += 1
                        log.error("%s; not acknowledging until the store takes the backlog", exc)
                    self.spool_full = True
                except Exception as exc:  # a disk problem: keep the batch, unacknowledged
                    self.spool_counters.spool_errors += 1
                    self.spool_counters.last_spool_error = f"{type(exc).__name__}: {exc}"
                    log.error("cannot append to the spool (%s); retrying", exc)
                else:
                    self.spool_full = False
                    self.spool_counters.spooled_batches += 1
                    self.spool_counters.spooled_readings += len(readings)
                    self._drain_wake.set()
                    return True
            if final:
                return False
            # Wait for the drain to make room (it sets _progress) or retry after a while.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._progress.wait(), backoff)
            backoff = min(backoff * 2, self.options.max_backoff_s)

    async def _write_store(
        self, readings: Sequence[Reading], events: Sequence[DeviceEvent]
    ) -> bool:
        started = time.perf_counter()
        try:
            new = await asyncio.wait_for(
                self.store.write(readings, events), self.options.write_timeout_s
            )
        except Exception as exc:  # a store outage must never kill ingestion
            self._store_failed(exc)
            return False
        self.counters.store_writes += 1
        self.counters.store_write_seconds += time.perf_counter() - started
        if not self.store_ok:
            log.warning("store is back after %d failed writes", self.counters.store_errors)
        self.store_ok = True
        self.counters.readings_stored += new
        self.counters.readings_duplicate += len(readings) - new
        return True

    def _store_failed(self, exc: BaseException) -> None:
        text = str(exc) or ("no answer in time" if isinstance(exc, TimeoutError) else "")
        self.counters.last_store_error = f"{type(exc).__name__}: {text}"
        self.counters.store_errors += 1
        # Logged once per outage; every retry is still counted (``store_errors``).
        if self.store_ok:
            log.error("store write failed: %s", self.counters.last_store_error)
        else:
            log.debug("store write failed again: %s", self.counters.last_store_error)
        self.store_ok = False

    async def _write_letters(self, letters: list[DeadLetter], *, final: bool) -> bool:
        """Dead letters go to the gateway's own database; retried until it takes them."""
        backoff = 0.1
        while True:
            try:
                await self.dead_letters.write(letters)
                return True
            except Exception as exc:
                log.error("dead-letter write failed (%s); retrying in %.1fs", exc, backoff)
                if final:
                    return False
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.options.max_backoff_s)

    async def _drain(self) -> None:
        """Replay the spool into the store, oldest first, until it is empty; then wait."""
        spool = self.spool
        assert spool is not None
        backoff = 0.1
        while True:
            if spool.empty:
                self._drain_wake.clear()
                await self._drain_wake.wait()
                continue
            try:
                batches = await spool.peek(self.options.replay_batch)
                readings = [r for b in batches for r in b.readings]
                events = [e for b in batches for e in b.events]
                started = time.monotonic()
                if not await self._write_store(readings, events):
                    self.spool_counters.replay_errors += 1
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self.options.max_backoff_s)
                    continue
                # Removed only now: a crash before this line replays the batches again,
                # which the store's idempotent writes make harmless.
                await spool.remove(batches[-1].id)
            except Exception as exc:  # e.g. the spool's disk; never let the drain die
                self.spool_counters.spool_errors += 1
                self.spool_counters.last_spool_error = f"{type(exc).__name__}: {exc}"
                log.exception("spool replay failed; retrying in %.1fs", backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.options.max_backoff_s)
                continue
            backoff = 0.1
            self._replays.append((started, time.monotonic(), len(readings)))
            self.spool_counters.replayed_batches += len(batches)
            self.spool_counters.replayed_readings += len(readings)
            self._progress.set()
            if spool.empty:
                log.warning(
                    "spool drained: %d readings replayed since start",
                    self.spool_counters.replayed_readings,
                )

    def replay_rate(self) -> float:
        """Readings replayed per second of replaying, over the last ``RATE_WINDOW_S``."""
        now = time.monotonic()
        while self._replays and self._replays[0][1] < now - RATE_WINDOW_S:
            self._replays.popleft()
        if not self._replays:
            return 0.0
        span = self._replays[-1][1] - self._replays[0][0]
        total = sum(n for _, _, n in self._replays)
        return round(total / span, 1) if span > 0 else 0.0

    def problems(self) -> list[str]:
        """Why the store side is degraded, in words for ``/api/health`` (empty when fine)."""
        found = []
        spool = self.spool
        backlog = spool is not None and not spool.empty
        if self.spool_full and spool is not None:
            found.append(
                f"spool full ({spool.bytes} of {spool.max_bytes} bytes): new messages are not"
                " acknowledged and wait in the broker"
            )
        if not self.store_ok:
            found.append(
                f"unreachable ({self.counters.last_store_error})"
                + (f"; {spool.readings} readings spooled" if spool is not None and backlog else "")
            )
        elif backlog and spool is not None:
            found.append(f"replaying {spool.readings} spooled readings ({spool.batches} batches)")
        return found

    def status(self) -> dict[str, object]:
        """The store side of ``/api/health``: state, pending batch and spool backlog."""
        spool = self.spool
        backlog: dict[str, object] | None = None
        if spool is not None:
            oldest = spool.oldest_ms
            backlog = {
                "path": str(spool.path),
                "batches": spool.batches,
                "readings": spool.readings,
                "events": spool.events,
                "bytes": spool.bytes,
                "max_bytes": spool.max_bytes,
                "full": self.spool_full,
                "oldest_age_s": None if oldest is None else max(0, now_ms() - oldest) / 1000,
                "replay_rate_per_s": self.replay_rate(),
                **dataclasses.asdict(self.spool_counters),
            }
        return {"ok": self.store_ok, "pending": self.pending, "spool": backlog}
