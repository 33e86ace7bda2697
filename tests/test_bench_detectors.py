"""The detector bench on tiny sizes: a check that every detector runs and is reported, never
a timing one (``python -m bench.detectors`` prints the figures)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.detectors import RULES, TARGETS, main, run


def test_every_rule_type_is_benched_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "bench.json"
    assert (
        main(["--series", "20", "--points", "30", "--stream-points", "5", "--json", str(out)]) == 0
    )
    table = capsys.readouterr().out
    data = json.loads(out.read_text(encoding="utf-8"))
    kinds = [d["kind"] for d in data["detectors"]]
    assert kinds == [k for k, _, _ in RULES]
    for d in data["detectors"]:
        assert d["vector_points"] == 20 * 30 and d["streaming_points"] == 20 * 5
        assert d["vector_rate"] > 0 and d["streaming_rate"] > 0
        assert d["bytes_per_series"] > 0 and d["state_json_bytes"] > 0
        assert d["grouped_rate"] > 0
        assert f"{d['kind']}: vectorised, all series" in table
    for kind in TARGETS:
        assert f"{kind}: vectorised" in table
    assert "reference: numpy" in table


def test_the_bench_feeds_the_gateways_detectors_a_series_that_alarms() -> None:
    """One series in ten ramps to twice its level: the benched threshold must see it."""
    from bench.detectors import _points, _rule
    from detectors.rules import run_rule

    rule, metric = _rule("threshold", "electrical_fire_monitor", "residual_current")
    ts, values = _points(rule, 50, 200)
    raised = [bool(run_rule(rule, ts, values[s], metric_spec=metric).changes) for s in range(50)]
    assert 0 < sum(raised) < 50
    assert len(run(5, 20, 5, ["threshold"])) == 1
