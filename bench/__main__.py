"""``python -m bench``: ingest throughput at QoS 0 and 1, then alert latency under load.

Prints one table; ``--json PATH`` also writes the figures as JSON. Exits 0 whatever
the figures are (they are measurements, not tests); 1 on an error, 130 on Ctrl-C.
Every process and temp dir is cleaned up in all three cases.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

from bench.ingest import IngestConfig, IngestResult, run_ingest
from bench.latency import LatencyConfig, run_latency
from bench.report import Section, ingest_json, ingest_section, latency_json, latency_section, render
from tests.servers import MOSQUITTO


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--messages", type=int, default=100_000, help="messages per QoS (100,000)")
    p.add_argument("--devices", type=int, default=50, help="electrical fire monitors (50)")
    p.add_argument("--qos", type=int, nargs="+", choices=(0, 1), default=[0, 1],
                   help="QoS levels of the ingest bench (0 1)")
    p.add_argument("--alarms", type=int, default=200, help="smoke alarms published (200)")
    p.add_argument("--alarm-interval-ms", type=float, default=50.0, help="between alarms (50)")
    p.add_argument("--load-fraction", type=float, default=0.4,
                   help="background load as a fraction of the QoS 1 gateway rate (0.4)")
    p.add_argument("--load-rate", type=float, default=None,
                   help="background load in msg/s (overrides --load-fraction; 2,000 when the "
                        "QoS 1 ingest bench did not run)")
    p.add_argument("--only", choices=("ingest", "latency"), default=None)
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write JSON here")
    args = p.parse_args(argv)
    if args.messages < args.devices or args.devices < 1:
        p.error("--messages must be at least --devices, and --devices at least 1")
    return args


def mosquitto_version() -> str:
    try:
        out = subprocess.run([MOSQUITTO, "-h"], capture_output=True, text=True, timeout=5).stdout
    except OSError:
        return "?"
    return out.splitlines()[0].removeprefix("mosquitto version ").strip() if out else "?"


def header(args: argparse.Namespace) -> list[str]:
    return [
        f"EWG bench  {time.strftime('%Y-%m-%d %H:%M:%S')}  python {platform.python_version()}"
        f"  {os.cpu_count()} CPUs  mosquitto {mosquitto_version()}",
        f"ingest: {args.messages:,} messages per QoS from {args.devices} electrical fire monitors"
        " (3.5 values each),",
        "  one mosquitto_pub -l per device, all detectors on. raw = mosquitto_sub alone, in its"
        " own pass",
        "  over the same stream just before the gateway's. Rates: raw = messages / (first ->"
        " last message",
        "  received); gateway = messages / (first publish -> flush that stored the last"
        " reading).",
        "BELOW = short of the design target; these are measurements, the exit status is 0"
        " either way.",
    ]


def progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> tuple[list[Section], dict[str, Any]]:
    sections: list[Section] = []
    out: dict[str, Any] = {"messages": args.messages, "devices": args.devices}
    ingest: dict[int, IngestResult] = {}
    if args.only in (None, "ingest"):
        for qos in args.qos:
            progress(f"ingest at QoS {qos}: {args.messages:,} messages ...")
            result = run_ingest(IngestConfig(messages=args.messages, qos=qos,
                                             devices=args.devices))
            ingest[qos] = result
            sections.append(ingest_section(result))
            out[f"ingest_qos{qos}"] = ingest_json(result)
            progress(f"  gateway {result.gateway.rate:,.0f} msg/s, raw {result.raw.rate:,.0f}")
    if args.only in (None, "latency"):
        rate, note = args.load_rate, "--load-rate"
        if rate is None and 1 in ingest:
            rate = args.load_fraction * ingest[1].gateway.rate
            note = f"{args.load_fraction:.0%} of the QoS 1 gateway rate"
        elif rate is None:
            rate, note = 2_000.0, "default; the QoS 1 ingest bench did not run"
        progress(f"alert latency: {args.alarms} alarms under {rate:,.0f} msg/s background ...")
        config = LatencyConfig(alarms=args.alarms, interval_s=args.alarm_interval_ms / 1000,
                               load_rate=max(1.0, rate))
        latency = run_latency(config)
        sections.append(latency_section(latency, args.alarm_interval_ms, note))
        out["latency"] = latency_json(latency)
    return sections, out


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through every cleanup, like Ctrl-C


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    try:
        sections, out = run(args)
    except KeyboardInterrupt:
        progress("interrupted; everything started was stopped")
        return 130
    except Exception as exc:
        progress(f"failed: {exc}")
        return 1
    print(render(sections, header(args)))
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
