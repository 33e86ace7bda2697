"""EWG benchmarks: ingest throughput against a raw-broker reference, and alert latency.

Run ``python -m bench`` from the repository root. Every figure is measured against a
reference taken in the same run (these machines are noisy); nothing here asserts
a speed, and the command exits 0 whatever the figures are.
"""
