"""AlertBus: ordered fan-out, copies, and dropping subscribers that fall behind."""

from __future__ import annotations

import asyncio

import pytest

from alerts import Alert, AlertBus, AlertChange, AlertClass, AlertState, Severity


def change(kind: str, count: int = 1) -> AlertChange:
    alert = Alert(
        id=1,
        device_id="emf-1",
        site_id="site-a",
        rule="residual_current",
        severity=Severity.YELLOW,
        alert_class=AlertClass.HAZARD,
        hazard="electrical_leakage",
        state=AlertState.RAISED,
        raised_at=1000,
        updated_at=1000,
        value=350.0,
        count=count,
    )
    return AlertChange(kind, alert)


async def test_every_subscriber_receives_changes_in_order() -> None:
    bus = AlertBus()
    async with bus.subscribe() as one, bus.subscribe() as two:
        assert bus.subscriber_count == 2
        for kind in ("raised", "updated", "cleared"):
            bus.publish(change(kind))
        bus.close()
        assert [c.kind async for c in one] == ["raised", "updated", "cleared"]
        assert [c.kind async for c in two] == ["raised", "updated", "cleared"]


async def test_a_waiting_subscriber_wakes_on_publish() -> None:
    bus = AlertBus()
    async with bus.subscribe() as changes:
        nxt = asyncio.ensure_future(anext(changes))
        await asyncio.sleep(0)
        assert not nxt.done()
        bus.publish(change("raised"))
        assert (await asyncio.wait_for(nxt, 1)).kind == "raised"


async def test_published_alerts_are_copies() -> None:
    bus = AlertBus()
    original = change("raised")
    async with bus.subscribe() as changes:
        bus.publish(original)
        original.alert.count = 99
        original.alert.state = AlertState.CLOSED
        received = await anext(changes)
    assert received.alert.count == 1
    assert received.alert.state is AlertState.RAISED


async def test_a_stalled_subscriber_is_dropped_without_blocking_publish() -> None:
    bus = AlertBus(queue_size=3)
    async with bus.subscribe() as stalled, bus.subscribe() as healthy:
        received: list[int] = []
        for n in range(1, 11):
            bus.publish(change("updated", count=n))  # synchronous: cannot block
            received.append((await anext(healthy)).alert.count)

        assert received == list(range(1, 11))
        assert stalled.dropped and stalled.ended
        assert not healthy.dropped
        assert bus.subscriber_count == 1
        # The stalled stream delivers what it had buffered, then ends so the
        # client reconnects and reloads instead of silently missing changes.
        assert [c.alert.count async for c in stalled] == [1, 2, 3]


async def test_leaving_the_context_unsubscribes() -> None:
    bus = AlertBus()
    async with bus.subscribe() as changes:
        assert bus.subscriber_count == 1
    assert bus.subscriber_count == 0
    assert changes.ended and not changes.dropped
    bus.publish(change("raised"))  # nobody listening: fine


async def test_subscribing_after_close_ends_at_once() -> None:
    bus = AlertBus()
    bus.close()
    async with bus.subscribe() as changes:
        assert [c async for c in changes] == []
    assert bus.subscriber_count == 0


def test_queue_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="queue_size"):
        AlertBus(queue_size=0)
