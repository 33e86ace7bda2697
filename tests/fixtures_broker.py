"""A real Mosquitto broker for tests, on a free loopback port, gone when the test ends.

Import the fixture into a test module (``from tests.fixtures_broker import mosquitto_port``); it is
kept out of ``conftest.py`` (whose ``mosquitto`` fixture serves the gateway tests) and named
apart from it so importing it shadows nothing.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on port {port} within {timeout_s} s")


@contextmanager
def running_mosquitto(directory: Path) -> Iterator[int]:
    """Run ``mosquitto`` (anonymous, no persistence) with its config in ``directory``."""
    if not Path(MOSQUITTO).exists():
        pytest.skip("mosquitto is not installed")
    port = free_port()
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n",
        encoding="utf-8",
    )
    with (directory / "mosquitto.log").open("wb") as log:
        proc = subprocess.Popen(
            [MOSQUITTO, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT
        )
        try:
            _wait_listening(port, proc, timeout_s=10.0)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture
def mosquitto_port(tmp_path: Path) -> Iterator[int]:
    """A fresh broker for one test; yields its port on 127.0.0.1."""
    with running_mosquitto(tmp_path) as port:
        yield port
