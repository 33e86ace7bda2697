"""A steady background load: telemetry at a fixed rate through ``mosquitto_pub -l``.

Runs as its own process (``python -m bench.loadgen --port P --rate R DEVICE...``) so
its work never shares a GIL with the latency measurement. Every 10 ms it writes the
lines now due, round-robin over one ``mosquitto_pub`` per device, each stamped with
the current time (distinct and increasing per device). SIGTERM or SIGINT ends it:
the publishers get EOF, finish what they read, and exit.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from types import FrameType

from bench.servers import MOSQUITTO_PUB, stop_process
from bench.telemetry import line, values_in
from gateway.model import now_ms

TICK_S = 0.01


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loadgen")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True, help="messages per second")
    parser.add_argument("--qos", type=int, choices=(0, 1), default=1)
    parser.add_argument("devices", nargs="+")
    args = parser.parse_args(argv)

    stopping = False

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    publishers = [
        subprocess.Popen([MOSQUITTO_PUB, "-h", "127.0.0.1", "-p", str(args.port), "-q",
                          str(args.qos), "-t", f"ewg/v1/{device}/telemetry", "-l"],
                         stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
        for device in args.devices
    ]
    parent = os.getppid()  # stop if the bench that started us is gone
    rng = random.Random(50116)
    last_ts = [0] * len(publishers)
    sent = 0
    start = time.monotonic()
    try:
        while not stopping and os.getppid() == parent:
            due = int((time.monotonic() - start) * args.rate) - sent
            batches: list[list[str]] = [[] for _ in publishers]
            now = now_ms()
            for k in range(sent, sent + due):
                i = k % len(publishers)
                last_ts[i] = max(now, last_ts[i] + 1)
                batches[i].append(line(last_ts[i], rng, values_in(k)) + "\n")
            for publisher, batch in zip(publishers, batches, strict=True):
                if batch and publisher.stdin is not None:
                    publisher.stdin.write("".join(batch).encode())
                    publisher.stdin.flush()
            sent += due
            time.sleep(TICK_S)
    except BrokenPipeError:
        print("loadgen: a publisher exited early", file=sys.stderr)
        return 1
    finally:
        for publisher in publishers:
            if publisher.stdin is not None:
                try:
                    publisher.stdin.close()
                except BrokenPipeError:
                    pass
        deadline = time.monotonic() + 5
        for publisher in publishers:
            try:
                publisher.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stop_process(publisher, timeout_s=1)
    print(f"loadgen: sent {sent} messages in {time.monotonic() - start:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
