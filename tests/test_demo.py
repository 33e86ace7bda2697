"""``ewg demo`` on the embedded broker raises the scripted alerts within a minute."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.conftest import TOKEN
from tests.servers import free_port, wait_for_port

#: The demo's scripted hazards (see simulator/town.py): a fire, a leakage creep,
#: an overheating cable and a dust-collector blockage.
SCRIPTED = {"fire", "leakage", "overheating", "blockage"}


def test_demo_raises_the_scripted_alerts_on_the_embedded_broker(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "EWG_API_TOKEN": TOKEN}
    demo = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gateway",
            "demo",
            "--http",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path / "demo"),
            "--duration",
            "120",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: set[str] = set()
    try:
        wait_for_port(port, 30)
        with httpx.Client(
            base_url=f"http://127.0.0.1:{port}",
            timeout=5,
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as client:
            health = client.get("/api/health").json()
            assert health["broker"]["url"].startswith("mqtt://127.0.0.1:")
            deadline = time.monotonic() + 75  # "within a minute", plus start-up slack
            while time.monotonic() < deadline and not SCRIPTED <= seen:
                alerts = client.get("/api/alerts").json()
                seen = {a["hazard"] for a in alerts if a["alert_class"] == "hazard"}
                time.sleep(1)
            devices = client.get("/api/devices").json()
            assert len(devices) >= 10 and all(
                d["online"] for d in devices if d["profile"] != "smoke_alarm_nbiot"
            )
        assert SCRIPTED <= seen, f"demo raised only {sorted(seen)}"
    finally:
        demo.send_signal(signal.SIGINT)
        out, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0, out
    # The console link is the login page, with the accounts to sign in with; no token in a URL.
    assert f"EWG console: http://127.0.0.1:{port}/login.html" in out
    assert "#token=" not in out and f"={TOKEN}" not in out
    assert "demo accounts" in out and re.search(r"^\s+duty\s+duty\s+\S{10,}", out, re.M), out
