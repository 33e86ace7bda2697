"""The delivery queue: every notification is tried, retried with backoff, and logged.

Three promises, each because of what happens otherwise at 3 a.m.:

* **A dead channel never blocks anything else.** Each attempt runs in its own task,
  bounded by ``send_timeout_s``; each channel has its own in-flight limit, so a mail
  server that hangs fills only the e-mail slots while SMS and robots go on. The alert
  engine only ever calls :meth:`push`, which does no I/O.
* **A failure is retried**, after ``initial_backoff_s``, then ``* multiplier`` each time up
  to ``max_backoff_s``, for ``max_attempts`` tries; then the notification is *failed*,
  visibly, in the delivery log (and the channel's health shows it).
* **Nothing is lost in a restart.** A notification is in SQLite before it is queued;
  :meth:`start` re-queues every one still pending (at least once: an attempt cut short
  by a shutdown may be sent again).

Time comes from an injectable clock. The background task sleeps until the next attempt
is due; tests call :meth:`run_due` with the time they want instead of sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from alerts.alerting_config import AlertingOptions
from alerts.notify.channels import Channel, DeliveryError
from alerts.notify.store import Attempt, Notification, NotifyStore, Status
from gateway.errors import StoreError
from gateway.model import now_ms

log = logging.getLogger(__name__)

#: Asked before every attempt: None to send, or (status, reason) to stop without sending.
Verdict = Callable[[int], tuple[Status, str] | None]


@dataclass(slots=True)
class ChannelHealth:
    """What the API shows per channel: is it delivering, and since when is it not."""

    in_flight: int = 0
    delivered: int = 0
    failed_attempts: int = 0
    consecutive_failures: int = 0
    last_ok_ms: int | None = None
    last_error_ms: int | None = None
    last_error: str = ""


class DeliveryQueue:
    def __init__(
        self,
        store: NotifyStore,
        channels: Mapping[str, Channel],
        options: AlertingOptions,
        clock: Callable[[], int] = now_ms,
        verdict: Verdict | None = None,
    ) -> None:
        self._store = store
        self._channels = channels
        self._options = options
        self._clock = clock
        self._verdict: Verdict = verdict or (lambda _alert_id: None)
        self._heap: list[tuple[int, int, Notification]] = []
        self._seq = itertools.count()
        self._slots = {
            name: asyncio.Semaphore(options.max_in_flight_per_channel) for name in channels
        }
        self._health = {name: ChannelHealth() for name in channels}
        self._running: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def set_verdict(self, verdict: Verdict) -> None:
        self._verdict = verdict

    # -- feeding -----------------------------------------------------------------------

    async def start(self) -> int:
        """Queue what a previous run left pending; return how many."""
        pending = await self._store.pending()
        self.push(pending)
        if pending:
            log.info("re-queued %d pending notification(s)", len(pending))
        return len(pending)

    def push(self, notifications: Iterable[Notification]) -> None:
        """Queue pending notifications (no I/O: safe from anywhere on the loop)."""
        for n in notifications:
            if n.status is not Status.PENDING:
                continue
            due = n.next_attempt_ms if n.next_attempt_ms is not None else self._clock()
            heapq.heappush(self._heap, (due, next(self._seq), n))
        self._wake.set()

    def next_due(self) -> int | None:
        """When the next queued attempt is due (ms), or None if nothing waits."""
        return self._heap[0][0] if self._heap else None

    def queued(self) -> int:
        return len(self._heap)

    def health(self) -> dict[str, ChannelHealth]:
        return self._health

    # -- running -----------------------------------------------------------------------

    async def run_due(self, now: int | None = None) -> None:
        """Start every attempt due at ``now`` and wait for them all (tests, and shutdown)."""
        tasks = self._dispatch(self._clock() if now is None else now)
        if tasks:
            await asyncio.gather(*tasks)

    def _dispatch(self, now: int) -> list[asyncio.Task[None]]:
        started: list[asyncio.Task[None]] = []
        while self._heap and self._heap[0][0] <= now:
            _, _, n = heapq.heappop(self._heap)
            task = asyncio.create_task(self._attempt(n), name=f"ewg-notify-{n.id}")
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            started.append(task)
        return started

    def start_background(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="ewg-notify-queue")

    async def stop(self) -> None:
        """Stop dispatching and cancel attempts in flight (they stay pending in SQLite)."""
        tasks = [t for t in (self._task, *self._running) if t is not None]
        self._task = None
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self._clock()
            self._dispatch(now)
            await sleep_until(self._wake, self.next_due(), now, self._options.max_sleep_s)

    # -- one attempt -------------------------------------------------------------------

    async def _attempt(self, n: Notification) -> None:
        try:
            await self._try(n)
        except Exception:  # one broken notification must never stop the others
            log.exception("notification %d for alert %d failed unexpectedly", n.id, n.alert_id)

    async def _try(self, n: Notification) -> None:
        verdict = self._verdict(n.alert_id)
        if verdict is not None:
            status, reason = verdict
            n.status, n.reason = status, reason
            await self._store.finish(n.id, status, reason, self._clock())
            return
        channel = self._channels.get(n.channel)
        if channel is None:
            n.status, n.reason = Status.FAILED, f"channel {n.channel} is no longer configured"
            await self._store.finish(n.id, n.status, n.reason, self._clock())
            return
        health = self._health[n.channel]
        async with self._slots[n.channel]:
            health.in_flight += 1
            started = self._clock()
            ok = False
            try:
                async with asyncio.timeout(self._options.send_timeout_s):
                    detail = await channel.send(n.message)
                ok = True
            except DeliveryError as exc:
                detail = str(exc)
            except TimeoutError:
                detail = f"no answer within {self._options.send_timeout_s:g} s"
            except Exception as exc:  # a channel bug is a failed attempt, not a dead queue
                log.exception("channel %s raised on notification %d", n.channel, n.id)
                detail = f"{type(exc).__name__}: {exc}"
            finally:
                health.in_flight -= 1
            finished = self._clock()
        number = n.attempts + 1
        retry = self._options.retry
        next_ms: int | None = None
        if ok:
            status, reason = Status.DELIVERED, ""
            health.delivered += 1
            health.consecutive_failures = 0
            health.last_ok_ms = finished
        else:
            health.failed_attempts += 1
            health.consecutive_failures += 1
            health.last_error_ms, health.last_error = finished, detail
            if number >= retry.max_attempts:
                status, reason = Status.FAILED, f"gave up after {number} attempt(s): {detail}"
                log.error(
                    "notification %d (alert %d, %s via %s) %s",
                    n.id, n.alert_id, n.recipient, n.channel, reason,
                )  # fmt: skip
            else:
                status, reason = Status.PENDING, f"retrying: {detail}"
                next_ms = finished + retry.backoff_ms(number)
                log.warning(
                    "notification %d via %s failed (attempt %d): %s",
                    n.id, n.channel, number, detail,
                )  # fmt: skip
        n.attempts, n.status, n.reason, n.next_attempt_ms = number, status, reason, next_ms
        attempt = Attempt(number, started, finished, ok, detail)
        n.attempt_log.append(attempt)
        try:
            await self._store.record_attempt(n.id, attempt, status, reason, next_ms)
        except StoreError:
            log.exception("cannot record attempt %d of notification %d", number, n.id)
        if status is Status.PENDING:
            self.push([n])


async def sleep_until(wake: asyncio.Event, due_ms: int | None, now: int, max_s: float) -> None:
    """Sleep until ``due_ms`` (at most ``max_s``), or until ``wake`` is set."""
    timeout = max_s if due_ms is None else min(max_s, max(0.0, (due_ms - now) / 1000))
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await wake.wait()
