"""In-process fan-out of alert changes to subscribers (the console's SSE streams).

The engine publishes from inside its critical section, so :meth:`AlertBus.publish`
must never block and never raise: a console tab on a bad link must not delay the
next fire alarm. Each subscriber has a bounded buffer; one that falls behind far
enough to fill it is dropped and its stream ends, so the client reconnects and
reloads a fresh snapshot instead of silently missing changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from alerts.model import AlertChange

DEFAULT_QUEUE_SIZE = 256


class Subscription:
    """One subscriber's bounded buffer, consumed as an async iterator of AlertChange.

    Iteration ends when the subscriber is dropped for falling behind (``dropped``
    is then True) or the bus is closed; changes already buffered are delivered first.
    """

    def __init__(self, maxsize: int) -> None:
        self._items: deque[AlertChange] = deque()
        self._maxsize = maxsize
        self._wakeup = asyncio.Event()
        self._ended = False
        self.dropped = False

    @property
    def ended(self) -> bool:
        return self._ended

    def offer(self, change: AlertChange) -> bool:
        """Buffer a change without waiting; False if the buffer is full or the stream ended."""
        if self._ended or len(self._items) >= self._maxsize:
            return False
        self._items.append(change)
        self._wakeup.set()
        return True

    def end(self, *, dropped: bool = False) -> None:
        """Tell the consumer no more changes will come (after the buffered ones)."""
        self._ended = True
        self.dropped = self.dropped or dropped
        self._wakeup.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> AlertChange:
        # Single consumer, single thread: nothing can slip in between the checks
        # and clear(), so a wakeup cannot be lost.
        while not self._items:
            if self._ended:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        return self._items.popleft()


class AlertBus:
    """Fan-out of AlertChange to any number of subscribers, on the event loop's thread.

    >>> import asyncio
    >>> from alerts.model import Alert, AlertClass, AlertState, Severity
    >>> async def demo() -> list[str]:
    ...     bus = AlertBus()
    ...     a = Alert(1, "d", "s", "r", Severity.RED, AlertClass.HAZARD, "fire",
    ...               AlertState.RAISED, 0, 0, None)
    ...     async with bus.subscribe() as changes:
    ...         bus.publish(AlertChange("raised", a))
    ...         bus.close()
    ...         return [c.kind async for c in changes]
    >>> asyncio.run(demo())
    ['raised']
    """

    def __init__(self, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self._queue_size = queue_size
        self._subscribers: set[Subscription] = set()
        self._closed = False

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def publish(self, change: AlertChange) -> None:
        """Hand a copy of the change to every subscriber; never waits, never raises.

        The alert is copied once here so the engine may go on mutating its own
        objects; subscribers share that copy and must treat it as read-only.
        A subscriber whose buffer is full is dropped and its stream ended.
        """
        if not self._subscribers:
            return
        frozen = AlertChange(change.kind, dataclasses.replace(change.alert))
        for sub in list(self._subscribers):
            if not sub.offer(frozen):
                self._subscribers.discard(sub)
                sub.end(dropped=True)

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Subscription]:
        """Receive every change published while the context is open.

        Subscribe before loading a snapshot of open alerts, so no change falls in
        the gap between the two.
        """
        sub = Subscription(self._queue_size)
        if self._closed:
            sub.end()
        else:
            self._subscribers.add(sub)
        try:
            yield sub
        finally:
            self._subscribers.discard(sub)
            sub.end()

    def close(self) -> None:
        """End every stream (on shutdown) and refuse new subscribers."""
        self._closed = True
        for sub in list(self._subscribers):
            sub.end()
        self._subscribers.clear()
