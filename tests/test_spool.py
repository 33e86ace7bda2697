"""The store-and-forward spool on a real file: order, durability, and the full policy."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.model import DeviceEvent, Reading
from gateway.spool import Spool, SpoolFull, encode_batch


def batch(n: int, size: int = 10) -> tuple[list[Reading], list[DeviceEvent]]:
    """Batch number ``n``: ``size`` readings and one event, all distinct from other batches."""
    base = 1_700_000_000_000 + n * 1_000
    readings = [
        Reading(f"dev-{i % 3}", "temperature_c", base + i, 20.0 + n + i / 8, ts_assumed=i == 0)
        for i in range(size)
    ]
    events = [DeviceEvent("dev-0", "smoke_alarm", base, {"batch": n, "zone": "北区"})]
    return readings, events


async def test_batches_come_back_in_order_with_their_content(tmp_path: Path) -> None:
    spool = await Spool(tmp_path / "spool.db", max_bytes=10**9).open()
    try:
        ids = [await spool.append(*batch(n)) for n in range(5)]
        assert ids == sorted(ids)
        assert (spool.batches, spool.readings, spool.events) == (5, 50, 5)

        everything = await spool.peek(max_readings=1_000)
        assert [b.id for b in everything] == ids
        assert [(b.readings, b.events) for b in everything] == [batch(n) for n in range(5)]

        # A replay step takes whole batches up to the limit, but always at least one.
        assert [b.id for b in await spool.peek(max_readings=25)] == ids[:2]
        assert [b.id for b in await spool.peek(max_readings=1)] == ids[:1]

        await spool.remove(ids[1])
        assert (spool.batches, spool.readings, spool.events) == (3, 30, 3)
        assert [b.id for b in await spool.peek(max_readings=1_000)] == ids[2:]
        assert spool.oldest_ms == everything[2].created_ms

        await spool.remove(ids[-1])
        assert spool.empty and spool.bytes == 0 and spool.oldest_ms is None
        assert await spool.peek(max_readings=1_000) == []
        # Ids are never reused, so a late remove of an old id cannot drop a new batch.
        assert await spool.append(*batch(9)) > ids[-1]
    finally:
        await spool.close()


async def test_backlog_survives_closing_and_reopening(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    spool = await Spool(path, max_bytes=10**9).open()
    for n in range(4):
        await spool.append(*batch(n))
    first = (await spool.peek(max_readings=10))[0]
    await spool.remove(first.id)
    size = spool.bytes
    await spool.close()

    again = await Spool(path, max_bytes=10**9).open()
    try:
        assert (again.batches, again.readings, again.events, again.bytes) == (3, 30, 3, size)
        kept = await again.peek(max_readings=1_000)
        assert [(b.readings, b.events) for b in kept] == [batch(n) for n in (1, 2, 3)]
    finally:
        await again.close()


def test_backlog_survives_a_killed_process(tmp_path: Path) -> None:
    """Appended means durable: the writer is SIGKILLed right after, without closing."""
    path = tmp_path / "spool.db"
    script = textwrap.dedent(
        f"""
        import asyncio, os, signal
        from gateway.spool import Spool
        from tests.test_spool import batch

        async def main() -> None:
            spool = await Spool({str(path)!r}, max_bytes=10**9).open()
            for n in range(3):
                await spool.append(*batch(n))
            os.kill(os.getpid(), signal.SIGKILL)

        asyncio.run(main())
        """
    )
    cwd = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=os.environ.copy())
    assert done.returncode == -9

    async def reopen() -> list[tuple[list[Reading], list[DeviceEvent]]]:
        spool = await Spool(path, max_bytes=10**9).open()
        try:
            assert (spool.batches, spool.readings) == (3, 30)
            return [(b.readings, b.events) for b in await spool.peek(max_readings=1_000)]
        finally:
            await spool.close()

    assert asyncio.run(reopen()) == [batch(n) for n in range(3)]


async def test_full_spool_refuses_the_batch_and_keeps_what_it_has(tmp_path: Path) -> None:
    sizes = [len(encode_batch(*batch(n))) for n in range(3)]
    path = tmp_path / "spool.db"
    # Room for batches 0 and 1, one byte short of batch 2.
    spool = await Spool(path, max_bytes=sum(sizes) - 1).open()
    try:
        await spool.append(*batch(0))
        await spool.append(*batch(1))
        assert spool.bytes == sizes[0] + sizes[1]
        with pytest.raises(SpoolFull, match="does not fit"):
            await spool.append(*batch(2))
        assert (spool.batches, spool.readings, spool.bytes) == (2, 20, sizes[0] + sizes[1])

        # Replaying the oldest batch makes room again.
        await spool.remove((await spool.peek(max_readings=1))[0].id)
        await spool.append(*batch(2))
        assert [(b.readings, b.events) for b in await spool.peek(1_000)] == [batch(1), batch(2)]
    finally:
        await spool.close()

    # The refused batch never reached the file.
    reopened = await Spool(path, max_bytes=10**9).open()
    try:
        assert reopened.batches == 2
    finally:
        await reopened.close()


async def test_a_batch_larger_than_the_whole_spool_is_refused_even_when_empty(
    tmp_path: Path,
) -> None:
    readings, events = batch(0, size=200)
    too_small = len(encode_batch(readings, events)) - 1
    spool = await Spool(tmp_path / "spool.db", max_bytes=too_small).open()
    try:
        with pytest.raises(SpoolFull):
            await spool.append(readings, events)
        assert spool.empty
    finally:
        await spool.close()
