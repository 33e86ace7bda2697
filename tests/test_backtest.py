"""``ewg backtest``: a rule over a CSV or a device's history, exactly as the live gateway runs."""

from __future__ import annotations

import asyncio
import csv
import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from typer.testing import CliRunner

from detectors.backtest import BacktestError, read_series_csv
from gateway.cli import app
from gateway.model import Reading
from gateway.profiles import load_profiles
from gateway.registry_model import Device, Site
from gateway.stores.sqlite import SqliteStore
from tests.conftest import LiveGateway, eventually, register

runner = CliRunner()
PROFILES = load_profiles()

#: 2026-12-01 00:00 in Asia/Shanghai.
LOCAL_MIDNIGHT_MS = 1_796_054_400_000


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["timestamp,value", *(f"{t},{v}" for t, v in rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def read_scores(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as src:
        return list(csv.DictReader(src))


def iso(ts_ms: int) -> str:
    """Naive local wall time (Asia/Shanghai, UTC+8) as ``YYYY-MM-DD HH:MM:SS``."""
    seconds = (ts_ms + 8 * 3_600_000) // 1000
    return str(np.datetime64(seconds, "s")).replace("T", " ")


def backtest(*args: str) -> Any:
    return runner.invoke(app, ["backtest", *args])


def test_a_spike_at_t_flags_t_and_nothing_else(tmp_path: Path) -> None:
    # Arc faults: >= 14 half-cycles per second alarm at once (GB 14287); <= 9 must not.
    values = ["0", "2", "9", "0", "20", "3", "0", "1"]
    rows = [(iso(LOCAL_MIDNIGHT_MS + i * 60_000), v) for i, v in enumerate(values)]
    src = write_csv(tmp_path / "arc.csv", rows)
    out = tmp_path / "scores.csv"
    result = backtest("--detector", "arc_fault", "--input", str(src), "--scores", str(out))
    assert result.exit_code == 0, result.output
    assert "1 alerts" in result.output
    scored = read_scores(out)
    assert [r["timestamp"] for r in scored] == [t for t, _ in rows]
    assert [r["value"] for r in scored] == values
    assert [r["alert"] for r in scored] == ["0", "0", "0", "0", "1", "0", "0", "0"]
    scores = [float(r["anomaly_score"]) for r in scored]
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert scores[4] == 1.0 and scores[2] < 1.0  # 9 is 9/14 of the way to the alarm


def test_delay_and_set_overrides_change_the_answer(tmp_path: Path) -> None:
    # Residual current: alarm 300 mA after 10 s. A 5 s excursion does not alarm;
    # a sustained one does, 10 s after it began. --set delay_s=0 makes the spike alarm too.
    mA = [150, 350, 150, 150, 320, 320, 330, 150]
    rows = [(iso(LOCAL_MIDNIGHT_MS + i * 5_000), str(v)) for i, v in enumerate(mA)]
    src = write_csv(tmp_path / "leak.csv", rows)
    out = tmp_path / "scores.csv"
    result = backtest("--detector", "residual_current", "--input", str(src), "--scores", str(out))
    assert result.exit_code == 0, result.output
    assert [r["alert"] for r in read_scores(out)] == ["0", "0", "0", "0", "0", "0", "1", "0"]
    tuned = backtest(
        "--detector", "residual_current", "--input", str(src), "--scores", str(out),
        "--set", "delay_s=0", "--set", "prewarning=null",
    )  # fmt: skip
    assert tuned.exit_code == 0, tuned.output
    assert [r["alert"] for r in read_scores(out)] == ["0", "1", "0", "0", "1", "0", "0", "0"]
    assert "delay_s=0" in tuned.output
    raised = backtest(
        "--detector", "residual_current", "--input", str(src),
        "--set", "alarm=400", "--set", "prewarning=null",
    )  # fmt: skip
    assert raised.exit_code == 0 and "0 alerts" in raised.output
    # the pre-warning alone (240 mA) still sees the sustained leak
    warned = backtest("--detector", "residual_current", "--input", str(src), "--set", "alarm=400")
    assert warned.exit_code == 0 and "1 alerts" in warned.output


def test_both_timestamp_formats_and_offsets_mean_the_same_instant(tmp_path: Path) -> None:
    rows = [
        ("2026-12-01 08:00:00", "1"),  # naive: Asia/Shanghai wall time
        ("2026-12-01T08:00:05", "2"),  # naive ISO
        ("2026-12-01T00:00:10Z", "3"),  # UTC
        ("2026-12-01T08:00:15+08:00", "4"),
        ("2026-11-30T19:00:20-05:00", "5"),
        ("2026-12-01T08:00:25.500", "6"),
    ]
    src = write_csv(tmp_path / "mixed.csv", rows)
    series = read_series_csv(src)
    base = 1_796_083_200_000  # 2026-12-01 00:00:00 UTC
    assert series.ts_ms.tolist() == [base, base + 5000, base + 10_000, base + 15_000,
                                     base + 20_000, base + 25_500]  # fmt: skip
    in_utc = read_series_csv(src, timezone="UTC")
    assert in_utc.ts_ms[0] == base + 8 * 3_600_000  # naive rows move, offset rows do not
    assert in_utc.ts_ms[2] == base + 10_000


def test_a_zone_with_daylight_saving_reads_each_naive_time_in_its_own_offset(
    tmp_path: Path,
) -> None:
    src = write_csv(tmp_path / "dst.csv", [("2026-01-15 12:00:00", "1"), ("2026-07-15 12:00", "1")])
    series = read_series_csv(src, timezone="Europe/Berlin")
    winter = datetime.fromisoformat("2026-01-15T11:00:00+00:00").timestamp() * 1000
    summer = datetime.fromisoformat("2026-07-15T10:00:00+00:00").timestamp() * 1000
    assert series.ts_ms.tolist() == [int(winter), int(summer)]


@pytest.mark.parametrize(
    ("body", "line", "says"),
    [
        ("2026-12-01 08:00:00,1\nyesterday,2\n", 3, "timestamp 'yesterday'"),
        ("2026-12-01 08:00:00,1\n2026-12-01 08:00:01,hot\n", 3, "value 'hot' is not a number"),
        ("2026-12-01 08:00:00,1\n\n2026-12-01 08:00:01,NaN\n", 4, "not finite"),
        ("2026-12-01 08:00:00,1\n2026-13-01 08:00:01,1\n", 3, "timestamp '2026-13-01 08:00:01'"),
        ("2026-12-01 08:00:00 1\n", 2, "expected 'timestamp,value'"),
        ("2026-12-01 08:00:00,1,extra\n", 2, "not a number"),
        (",5\n", 2, "timestamp ''"),
    ],
)
def test_bad_rows_get_an_error_naming_the_line(
    tmp_path: Path, body: str, line: int, says: str
) -> None:
    src = tmp_path / "bad.csv"
    src.write_text("timestamp,value\n" + body, encoding="utf-8")
    result = backtest("--detector", "residual_current", "--input", str(src))
    assert result.exit_code == 2
    assert f"line {line}:" in result.output and says in result.output
    assert "Traceback" not in result.output


def test_a_wrong_header_an_unknown_detector_and_an_ambiguous_type_are_explained(
    tmp_path: Path,
) -> None:
    src = tmp_path / "x.csv"
    src.write_text("time,reading\n2026-12-01 08:00:00,1\n", encoding="utf-8")
    with pytest.raises(BacktestError, match="line 1: header must be 'timestamp,value'"):
        read_series_csv(src)
    good = write_csv(tmp_path / "ok.csv", [("2026-12-01 08:00:00", "1")])
    unknown = backtest("--detector", "toaster", "--input", str(good))
    assert unknown.exit_code == 2 and "no rule of that name or type" in unknown.output
    ambiguous = backtest("--detector", "threshold", "--input", str(good))
    assert ambiguous.exit_code == 2 and "give --profile and --metric" in ambiguous.output
    by_type = backtest(
        "--detector", "threshold", "--profile", "gas_detector", "--metric", "gas_lel_pct",
        "--input", str(good),
    )  # fmt: skip
    assert by_type.exit_code == 0 and "gas_detector/gas_lel" in by_type.output
    bad_set = backtest("--detector", "gas_lel", "--input", str(good), "--set", "delay_s=-3")
    assert bad_set.exit_code == 2 and "delay_s" in bad_set.output
    missing = backtest("--detector", "gas_lel", "--input", str(tmp_path / "nope.csv"))
    assert missing.exit_code == 2 and "nope.csv: cannot read" in missing.output
    unwritable = backtest(
        "--detector", "gas_lel", "--input", str(good), "--scores", str(tmp_path / "no/such/x.csv")
    )
    assert unwritable.exit_code == 2 and "cannot write" in unwritable.output
    no_rule = backtest("--input", str(good))
    assert no_rule.exit_code == 2 and "give --detector" in no_rule.output
    assert "Traceback" not in missing.output + unwritable.output + no_rule.output


def test_rows_the_gateway_would_refuse_are_skipped_not_scored(tmp_path: Path) -> None:
    # 5000 mA is outside the monitor's 0-3000 mA valid range: the gateway dead-letters it.
    rows = [(iso(LOCAL_MIDNIGHT_MS + i * 5_000), v) for i, v in enumerate(["150", "5000", "150"])]
    src = write_csv(tmp_path / "range.csv", rows)
    out = tmp_path / "scores.csv"
    result = backtest(
        "--detector", "residual_current", "--input", str(src), "--scores", str(out),
        "--set", "delay_s=0",
    )  # fmt: skip
    assert result.exit_code == 0 and "1 rows outside" in result.output
    scored = read_scores(out)
    assert scored[1]["anomaly_score"] == "" and scored[1]["alert"] == "0"


def test_a_million_rows_are_read_scored_and_written(tmp_path: Path) -> None:
    n = 1_000_000
    ts = LOCAL_MIDNIGHT_MS + np.arange(n, dtype=np.int64) * 1000
    values = np.full(n, 150.0)
    starts = np.arange(5_000, n - 100, 50_000)  # a 30 s leak every ~14 h of seconds
    for s in starts:
        values[s : s + 30] = 320.0
    stamps = (ts // 1000 + 8 * 3600).astype("datetime64[s]").astype(str)
    src = tmp_path / "big.csv"
    with src.open("w", encoding="utf-8") as f:
        f.write("timestamp,value\n")
        f.write(
            "\n".join(f"{t},{v:g}" for t, v in zip(stamps.tolist(), values.tolist(), strict=True))
        )
    out = tmp_path / "scores.csv"
    result = backtest(
        "--detector", "residual_current", "--input", str(src), "--scores", str(out), "--json"
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["rows"] == n and summary["alerts"] == len(starts)
    alert = np.loadtxt(out, delimiter=",", skiprows=1, usecols=3, dtype=np.int8)
    # delay_s 10: raised at the 11th second of each leak
    assert np.flatnonzero(alert).tolist() == (starts + 10).tolist()


# -- over a device's stored history -------------------------------------------------------------


def test_history_backtest_counts_alerts_now_and_with_the_change(tmp_path: Path) -> None:
    data = ["--data-dir", str(tmp_path)]
    assert (
        runner.invoke(
            app, ["site", "add", "s1", "--name", "n", "--village", "v", "--industry", "i", *data]
        ).exit_code
        == 0
    )
    add = ["device", "add", "efm-1", "--profile", "electrical_fire_monitor", "--site", "s1"]
    assert runner.invoke(app, [*add, *data]).exit_code == 0
    now = int(time.time() * 1000)
    # Four 3-minute leaks over the last day: 320 mA (alarms at 300) three times, 360 mA once.
    readings = []
    for i in range(24 * 60):
        ts = now - (24 * 60 - i) * 60_000
        mA = 150.0
        if i % 400 in range(100, 103):
            mA = 360.0 if i > 1000 else 320.0
        readings.append(Reading("efm-1", "residual_current_ma", ts, mA))

    async def store() -> None:
        db = await SqliteStore(tmp_path / "readings.db").open()
        await db.write(readings, [])
        await db.close()

    asyncio.run(store())
    result = backtest(
        "--detector", "residual_current", "--device", "efm-1", "--since", "2d",
        "--set", "alarm=350", "--set", "prewarning=null", *data,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "1440 readings" in result.output
    assert "current rule: 4 alerts" in result.output
    assert "with alarm=350, prewarning=None: 1 alerts" in result.output and "(-3)" in result.output
    # the site's override (alarm at 350 mA, no pre-warning) is what is in force now
    overrides = tmp_path / "rules.yaml"
    overrides.write_text(
        "sites:\n  s1:\n    residual_current: {alarm: {value: 350}, prewarning: null}\n",
        encoding="utf-8",
    )
    config = tmp_path / "ewg.toml"
    config.write_text(f'rule_overrides = "{overrides}"\n', encoding="utf-8")
    site_rule = backtest(
        "--detector", "residual_current", "--device", "efm-1", "--config", str(config), *data
    )
    assert site_rule.exit_code == 0, site_rule.output
    assert "current rule: 1 alerts" in site_rule.output
    every = backtest("--device", "efm-1", "--metric", "residual_current_ma", "--json", *data)
    assert every.exit_code == 0, every.output
    in_force = [r.name for r in PROFILES["electrical_fire_monitor"].rules
                if r.metric == "residual_current_ma"]  # fmt: skip
    assert [r["rule"] for r in json.loads(every.output)["rules"]] == in_force
    unknown = backtest("--detector", "residual_current", "--device", "ghost", *data)
    assert unknown.exit_code == 2 and "ghost" in unknown.output


# -- the same stream through the live gateway ---------------------------------------------------


def leak_series(start_ms: int) -> list[tuple[int, float]]:
    """Every 30 s: a lone spike (too short for the 10 s delay), a sustained leak, a clear, and
    a pre-warning 15 min later (outside the flap window)."""
    series = []
    for i in range(120):
        mA = 150.0
        if i == 20:
            mA = 350.0
        elif 40 <= i < 50:
            mA = 320.0
        elif 80 <= i < 90:
            mA = 260.0
        series.append((start_ms + i * 30_000, mA))
    return series


@pytest.mark.integration
async def test_backtest_rows_are_the_alerts_the_live_gateway_raised(
    live: LiveGateway, tmp_path: Path
) -> None:
    await register(
        live.gateway,
        [Site("bt-site", "五金店", "陂头村", "small_shop")],
        [Device("bt-efm", "electrical_fire_monitor", "bt-site")],
    )
    start = (int(time.time() * 1000) // 60_000 - 90) * 60_000
    series = leak_series(start)
    assert live.settings.broker_url is not None
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bt-efm")
    client.connect("127.0.0.1", int(live.settings.broker_url.rsplit(":", 1)[1]))
    client.loop_start()
    infos = [
        client.publish(
            "ewg/v1/bt-efm/telemetry",
            json.dumps({"ts": ts, "values": {"residual_current_ma": mA}}),
            qos=1,
        )
        for ts, mA in series
    ]
    for info in infos:
        await asyncio.to_thread(info.wait_for_publish, 10)
    client.loop_stop()
    client.disconnect()

    async def stored() -> int | None:
        rows = (
            await live.client.get(
                "/api/telemetry",
                params={
                    "device_id": "bt-efm",
                    "metric": "residual_current_ma",
                    "start_ms": start,
                    "end_ms": start + 4 * 3_600_000,
                },
            )
        ).json()
        return len(rows) if len(rows) == len(series) else None

    await eventually(stored, timeout_s=20)

    async def raised_at() -> list[int] | None:
        alerts = (await live.client.get("/api/alerts", params={"device_id": "bt-efm"})).json()
        times: list[int] = []
        for alert in alerts:
            history = (await live.client.get(f"/api/alerts/{alert['id']}/history")).json()
            times += [
                int(datetime.fromisoformat(h["ts"]).timestamp() * 1000)
                for h in history
                if h["to_state"] == "raised"
            ]
        return sorted(times) if len(times) >= 2 else None

    live_raises = await eventually(raised_at, timeout_s=20)

    src = write_csv(tmp_path / "stream.csv", [(iso(ts), f"{mA:g}") for ts, mA in series])
    out = tmp_path / "scores.csv"
    result = backtest(
        "--detector", "residual_current", "--profile", "electrical_fire_monitor",
        "--input", str(src), "--scores", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = read_scores(out)
    cli_raises = [series[i][0] for i, r in enumerate(rows) if r["alert"] == "1"]
    assert cli_raises == [series[41][0], series[81][0]]  # the known answer
    assert live_raises == cli_raises  # and the gateway's own

    # The history backtest over the gateway's own store says the same.
    history = await asyncio.to_thread(
        backtest,
        "--detector", "residual_current", "--device", "bt-efm", "--since", "1d",
        "--data-dir", str(live.settings.data_dir), "--json",
    )  # fmt: skip
    assert history.exit_code == 0, history.output
    assert json.loads(history.output)["rules"][0]["current"]["alerts"] == 2


def test_a_rule_type_can_be_tried_on_another_metric(tmp_path: Path) -> None:
    """The monitor's anomaly rule watches a cable temperature; staff try it on the leakage
    current: two days of a steady 150 mA, then a step to 300 mA is flagged where it happens."""
    rng = np.random.default_rng(3)
    n = 3000
    mA = 150 + 3 * rng.standard_normal(n)
    mA[2500:] += 150
    rows = [(iso(LOCAL_MIDNIGHT_MS + i * 60_000), f"{v:.1f}") for i, v in enumerate(mA)]
    src = write_csv(tmp_path / "step.csv", rows)
    out = tmp_path / "scores.csv"
    result = backtest(
        "--detector", "anomaly", "--profile", "electrical_fire_monitor",
        "--metric", "residual_current_ma", "--input", str(src), "--scores", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "residual_current_ma_anomaly (anomaly on residual_current_ma)" in result.output
    scored = read_scores(out)
    alerts = [i for i, r in enumerate(scored) if r["alert"] == "1"]
    assert alerts and alerts[0] >= 2500 and alerts[0] < 2510
    assert all(0.0 <= float(r["anomaly_score"]) <= 1.0 for r in scored if r["anomaly_score"])
