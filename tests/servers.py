"""Real servers for tests and benchmarks, each on a free loopback port in a temp dir."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MOSQUITTO_CTRL = shutil.which("mosquitto_ctrl") or "/usr/bin/mosquitto_ctrl"
DYNSEC_PLUGIN = next(
    (
        str(path)
        for pattern in ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_*.so")
        for path in sorted(Path("/").glob(pattern.lstrip("/")))
        if path.name == "mosquitto_dynamic_security.so"
    ),
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s}s")


@dataclass(frozen=True, slots=True)
class TlsListener:
    """A second listener speaking TLS with these PEM files (the plain one stays)."""

    certfile: Path
    keyfile: Path
    port: int = 0


def dynsec_config(directory: Path, admin: str, password: str) -> list[str]:
    """Config lines loading the dynamic-security plugin, its file made by ``mosquitto_ctrl``
    exactly as an operator would (``dynsec init`` gives the admin account its role)."""
    state = directory / "dynamic-security.json"
    subprocess.run(
        [MOSQUITTO_CTRL, "dynsec", "init", str(state), admin, password],
        check=True,
        capture_output=True,
    )
    return [f"plugin {DYNSEC_PLUGIN}", f"plugin_opt_config_file {state}"]


def terminate(process: subprocess.Popen[bytes] | None, timeout_s: float) -> None:
    """SIGTERM, and SIGKILL if the server has not exited within ``timeout_s``."""
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Mosquitto:
    """A real Mosquitto broker; ``restart()`` keeps its port and persistence file.

    The keyword arguments are for security tests: ``allow_anonymous=False``,
    ``extra_config`` lines (e.g. :func:`dynsec_config`) and a ``tls`` listener. With
    any of them the broker keeps running as the invoking user: started as root,
    Mosquitto would switch to the ``mosquitto`` user, which cannot read (or, for the
    plugin, write) files in pytest's private temp directory.
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        *,
        allow_anonymous: bool = True,
        extra_config: Sequence[str] = (),
        tls: TlsListener | None = None,
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.conf = directory / "mosquitto.conf"
        self.log = directory / "mosquitto.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            f"allow_anonymous {'true' if allow_anonymous else 'false'}",
            "persistence true",
            f"persistence_location {directory}/",
            "max_inflight_messages 1000",
            "max_queued_messages 1000000",
            "message_size_limit 0",
            f"log_dest file {self.log}",
        ]
        secured = not allow_anonymous or bool(extra_config) or tls is not None
        if secured:
            lines += [f"user {getpass.getuser()}", "log_type all"]
        lines += list(extra_config)
        self.tls_port: int | None = None
        if tls is not None:
            self.tls_port = tls.port or free_port()
            lines += [
                f"listener {self.tls_port} 127.0.0.1",
                f"certfile {tls.certfile}",
                f"keyfile {tls.keyfile}",
            ]
        self.conf.write_text("\n".join(lines) + "\n")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        assert self.tls_port is not None, "no TLS listener configured"
        return f"mqtts://127.0.0.1:{self.tls_port}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def start(self) -> Mosquitto:
        if not Path(MOSQUITTO).exists():
            raise RuntimeError("mosquitto is not installed (the test command installs it)")
        self.process = subprocess.Popen(
            [MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        wait_for_port(self.port)
        if self.tls_port is not None:
            wait_for_port(self.tls_port)
        return self

    def stop(self) -> None:
        terminate(self.process, 10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()


VICTORIA_METRICS = shutil.which("victoria-metrics") or "/usr/bin/victoria-metrics"


class VictoriaMetrics:
    """A real single-node VictoriaMetrics; ``restart()`` keeps its port and data directory.

    Started as operators are told to run it for EWG: ``-dedup.minScrapeInterval=1ms``
    keeps one sample per series and millisecond, so a redelivered reading is stored once.
    """

    def __init__(
        self,
        directory: Path,
        port: int | None = None,
        flags: tuple[str, ...] = ("-dedup.minScrapeInterval=1ms",),
    ) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.flags = flags
        self.data = directory / "data"
        self.log = directory / "victoria-metrics.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VictoriaMetrics:
        if not Path(VICTORIA_METRICS).exists():
            raise RuntimeError("victoria-metrics is not installed (the test command installs it)")
        self.directory.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    VICTORIA_METRICS,
                    f"-storageDataPath={self.data}",
                    f"-httpListenAddr=127.0.0.1:{self.port}",
                    "-loggerLevel=WARN",
                    *self.flags,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for_port(self.port, 20)
        return self

    def flush(self) -> None:
        """Make what was written searchable now instead of within about a second."""
        import urllib.request

        with urllib.request.urlopen(f"{self.url}/internal/force_flush", timeout=10) as reply:
            reply.read()

    def stop(self) -> None:
        """A graceful stop: VictoriaMetrics writes what it buffered to disk first."""
        terminate(self.process, 20)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()
