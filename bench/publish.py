"""Publishing pre-generated feeds with ``mosquitto_pub -l``, one process per device."""

from __future__ import annotations

import subprocess
import time
from subprocess import Popen

from bench.servers import MOSQUITTO_PUB, Workspace
from bench.telemetry import Feed


def publish_once(port: int, topic: str, payload: str, qos: int = 0) -> None:
    """One message, synchronously (readiness probes)."""
    subprocess.run([MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(port), "-t", topic,
                    "-q", str(qos), "-m", payload], check=True, timeout=10,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


class Publishers:
    """All feeds published in parallel; ``started`` is the wall-clock time of the first."""

    def __init__(self, workspace: Workspace, feeds: list[Feed], qos: int) -> None:
        self.workspace = workspace
        self.feeds = feeds
        self.qos = qos
        self.started = 0.0
        self.finished: float | None = None
        self._processes: list[Popen[bytes]] = []

    @property
    def messages(self) -> int:
        return sum(f.messages for f in self.feeds)

    def start(self) -> Publishers:
        port = str(self.workspace.broker.port)
        log = self.workspace.open(self.workspace.directory / "publishers.log", "ab")
        inputs = [self.workspace.open(feed.path, "rb") for feed in self.feeds]
        self.started = time.time()
        for feed, stdin in zip(self.feeds, inputs, strict=True):
            self._processes.append(self.workspace.spawn(
                [MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", port, "-t", feed.topic,
                 "-q", str(self.qos), "-l"], stdin=stdin, stderr=log))
        return self

    def done(self) -> bool:
        """True once every publisher has exited (raises if one failed)."""
        if self.finished is not None:
            return True
        codes = [p.poll() for p in self._processes]
        if any(code is None for code in codes):
            return False
        self.finished = time.time()
        failed = [code for code in codes if code != 0]
        if failed:
            raise RuntimeError(f"{len(failed)} mosquitto_pub processes failed (exit {failed[0]});"
                               f" see {self.workspace.directory / 'publishers.log'}")
        return True

    def wait(self, timeout_s: float = 30.0) -> None:
        """Wait for every publisher to exit (they stop at the end of their feed)."""
        deadline = time.monotonic() + timeout_s
        while not self.done():
            if time.monotonic() > deadline:
                raise TimeoutError(f"mosquitto_pub still running after {timeout_s}s")
            time.sleep(0.01)

    @property
    def seconds(self) -> float | None:
        """From the first start to the last exit, as seen by polling ``done()``."""
        return None if self.finished is None else self.finished - self.started
