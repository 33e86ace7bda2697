"""The processes a bench run needs: Mosquitto (from tests.servers), the gateway, clients.

Everything started here is owned by a :class:`Workspace`, which stops every process
and removes its temp dir on exit, whether the run ended normally, on an error or
on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from tests.servers import Mosquitto, free_port, wait_for_port

MOSQUITTO_PUB = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = shutil.which("mosquitto_sub") or "/usr/bin/mosquitto_sub"
REPO = Path(__file__).resolve().parents[1]
TOKEN = "ewg_bench_token_0123456789abcdef"


def stop_process(process: subprocess.Popen[Any], timeout_s: float = 10.0, *,
                 group: bool = False) -> None:
    """Terminate, then kill if it does not go; never raises for a process already gone.

    With ``group`` (a process started in a session of its own), whatever it started
    and left behind in its process group is killed too.
    """
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if group:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


class Workspace:
    """A temp dir, a Mosquitto in it, and every other process the run starts."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.directory = Path(tempfile.mkdtemp(prefix=f"ewg-bench-{name}-"))
        self._processes: list[subprocess.Popen[Any]] = []
        self._files: list[IO[Any]] = []
        self.broker = Mosquitto(self._subdir("mosquitto"))

    def _subdir(self, name: str) -> Path:
        path = self.directory / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path(self, name: str) -> Path:
        """A directory inside the workspace (created)."""
        return self._subdir(name)

    def __enter__(self) -> Self:
        try:
            self.broker.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def spawn(self, args: Sequence[str], *, stdin: IO[Any] | int | None = subprocess.DEVNULL,
              stdout: IO[Any] | int | None = subprocess.DEVNULL,
              stderr: IO[Any] | int | None = subprocess.DEVNULL,
              env: dict[str, str] | None = None,
              cwd: Path | None = None) -> subprocess.Popen[bytes]:
        """Start a process the workspace stops on exit.

        It gets a session of its own, so a Ctrl-C reaches only the bench, which then
        stops everything in order instead of racing its children's own shutdown.
        """
        process = subprocess.Popen(list(args), stdin=stdin, stdout=stdout, stderr=stderr,
                                   env=env, cwd=cwd, start_new_session=True)
        self._processes.append(process)
        return process

    def open(self, path: Path, mode: str) -> IO[Any]:
        """Open a file the workspace closes on exit (for child processes' stdio)."""
        handle = open(path, mode)  # closed in close()
        self._files.append(handle)
        return handle

    def close(self) -> None:
        # Clients first (newest first), then the broker, then the files and the dir.
        try:
            while self._processes:
                stop_process(self._processes.pop(), group=True)
            self.broker.stop()
        finally:
            while self._files:
                self._files.pop().close()
            if not os.environ.get("EWG_BENCH_KEEP"):
                shutil.rmtree(self.directory, ignore_errors=True)


class GatewayProcess:
    """``ewg serve`` as a subprocess, with its own data dir and an admin token."""

    def __init__(self, workspace: Workspace, *, extra_env: dict[str, str] | None = None) -> None:
        self.workspace = workspace
        self.data_dir = workspace.path("gateway-data")
        self.log_path = workspace.directory / "gateway.log"
        self.http_port = free_port()
        self.token = TOKEN
        self.extra_env = extra_env or {}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def command(self) -> list[str]:
        script = Path(sys.executable).parent / "ewg"
        ewg = [str(script)] if script.exists() else (
            [found] if (found := shutil.which("ewg")) else
            [sys.executable, "-c", "from gateway.cli import main; main()"])
        return [*ewg, "serve", "--broker", self.workspace.broker.url,
                "--data-dir", str(self.data_dir), "--http", f"127.0.0.1:{self.http_port}"]

    def start(self, timeout_s: float = 30.0) -> Self:
        env = {**os.environ, "EWG_API_TOKEN": self.token,
               "EWG_MQTT_CLIENT_ID": f"ewg-bench-{self.http_port}", **self.extra_env}
        log = self.workspace.open(self.log_path, "wb")
        self.process = self.workspace.spawn(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            env=env)
        try:
            wait_for_port(self.http_port, timeout_s)
            self._wait_connected(timeout_s)
        except Exception as exc:
            raise RuntimeError(f"the gateway did not start: {exc}\n{self.log_tail()}") from exc
        return self

    def _wait_connected(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        headers = {"Authorization": f"Bearer {self.token}"}
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"ewg serve exited with {self.process.returncode}")
            try:
                body = httpx.get(f"{self.base_url}/api/health", headers=headers, timeout=2).json()
                if body["broker"]["connected"]:
                    return
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.05)
        raise TimeoutError(f"not connected to the broker after {timeout_s}s")

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, group=True)
            self.process = None
