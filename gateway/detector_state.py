"""The detectors' state on disk (``data_dir/detectors.json``), so a restart forgets nothing.

A drift baseline learnt after a bag change, an anomaly model trained over weeks
of a meter's daily load, a 10 s delay half run: all of it lives in the
:class:`~detectors.bank.DetectorBank` and would be lost on every upgrade or power
cut. The gateway writes it at shutdown and every ``interval_s`` while running,
and reads it at start before resuming the open alerts.

Writes are atomic (temporary file, fsync, rename, fsync of the directory), so a
power cut mid-write leaves the previous file, never half a file. The snapshot is
taken and encoded on the event loop (detectors are only touched there, so it is
consistent); the slow part, writing and syncing, runs in a thread. A file that
cannot be read or restored is logged, moved aside as ``detectors.json.corrupt``
for a person to look at, and the gateway starts fresh: losing learnt state is
bad, refusing to start the fire-alarm gateway over it is worse.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path

from detectors.bank import DetectorBank

log = logging.getLogger(__name__)

STATE_FILE = "detectors.json"


def write_atomically(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` so that a crash leaves the old or the new file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)  # the rename itself is durable only once the directory is synced
    finally:
        os.close(fd)


def encode(bank: DetectorBank) -> str:
    """The bank's state as JSON text (call on the event loop)."""
    return json.dumps(bank.state(), separators=(",", ":"))


def restore(bank: DetectorBank, path: Path) -> bool:
    """Load ``path`` into ``bank``; False (logged, file moved aside) if missing or unusable."""
    if not path.exists():
        return False
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            raise ValueError(f"expected a JSON object, got {type(state).__name__}")
        bank.restore(state)
    except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
        aside = path.with_name(path.name + ".corrupt")
        log.error(
            "detector state %s is unusable (%s); starting without it, moved to %s", path, exc, aside
        )
        try:
            os.replace(path, aside)
        except OSError:
            log.exception("could not move %s aside", path)
        return False
    log.info("detector state restored from %s", path)
    return True


async def save(bank: DetectorBank, path: Path) -> None:
    """Snapshot now, write in a thread."""
    await asyncio.to_thread(write_atomically, path, encode(bank))


async def save_periodically(bank: DetectorBank, path: Path, interval_s: float) -> None:
    """Every ``interval_s`` until cancelled; a failed write is logged and retried next time."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            await save(bank, path)
        except OSError:
            log.exception("could not write detector state to %s", path)


class StateKeeper:
    """Owns the periodic save task and the final save at shutdown (one object to wire)."""

    def __init__(self, bank: DetectorBank, data_dir: Path, interval_s: float) -> None:
        self.bank = bank
        self.path = data_dir / STATE_FILE
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> bool:
        """Restore the saved state (call before ``expect``/``resume``), then save periodically."""
        restored = restore(self.bank, self.path)
        self._task = asyncio.create_task(
            save_periodically(self.bank, self.path, self.interval_s), name="ewg-detector-state"
        )
        return restored

    async def stop(self) -> None:
        """Stop the periodic task and write the final state."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        try:
            await save(self.bank, self.path)
        except OSError:
            log.exception("could not write detector state to %s at shutdown", self.path)
