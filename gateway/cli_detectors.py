"""``ewg backtest`` and ``ewg evaluate``: tune a rule before enabling it, and score the detectors.

Kept apart from :mod:`gateway.cli` (which registers these commands) because they are offline
tools: they read files or the store and never start the gateway.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from gateway.errors import EwgError

if TYPE_CHECKING:
    from gateway.config import Settings

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="change a rule field for this run, e.g. --set alarm=350 --set delay_s=30"
    ),
]

_SINCE = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str) -> int:
    """``30m``, ``12h``, ``7d``, ``2w`` as milliseconds.

    >>> parse_since("7d")
    604800000
    """
    match = _SINCE.match(text.strip())
    if match is None:
        raise typer.BadParameter(f"{text!r}: expected a number and s/m/h/d/w, e.g. 7d")
    return int(float(match.group(1)) * _UNIT_S[match.group(2)] * 1000)


def _fail(exc: Exception) -> typer.Exit:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    return typer.Exit(2)


def _settings(config: Path | None, data_dir: Path | None) -> Settings:
    from gateway.config import load_settings

    try:
        return load_settings(config, data_dir=data_dir)
    except EwgError as exc:
        raise _fail(exc) from exc


def backtest(
    detector: Annotated[
        str | None,
        typer.Option(
            help="a rule type (threshold, rate_of_rise, drift, flatline, sensor_fault, anomaly) "
            "or a profile rule name (residual_current); with --device it may be left out: "
            "every rule on --metric"
        ),
    ] = None,
    input_csv: Annotated[
        Path | None, typer.Option("--input", help="CSV with header timestamp,value")
    ] = None,
    scores: Annotated[
        Path | None,
        typer.Option(help="write timestamp,value,anomaly_score,alert here (with --input)"),
    ] = None,
    profile: Annotated[str | None, typer.Option(help="device profile whose rule to run")] = None,
    metric: Annotated[str | None, typer.Option(help="the rule's metric")] = None,
    device: Annotated[
        str | None, typer.Option(help="backtest over this device's stored history instead")
    ] = None,
    since: Annotated[str, typer.Option(help="how far back, with --device: 30m, 12h, 7d")] = "7d",
    set_: SetOpt = None,
    timezone: Annotated[
        str | None, typer.Option(help="zone of timestamps without an offset (default: config)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file")] = None,
) -> None:
    """Run one rule over a CSV file or a device's history, as the gateway would."""
    from detectors.backtest import BacktestError, parse_settings

    settings = _settings(config, data_dir)
    try:
        changes = parse_settings(set_ or [])
        if device is not None:
            if input_csv is not None:
                raise BacktestError("give either --input or --device, not both")
            summary = asyncio.run(
                _history(settings, detector, device, metric, parse_since(since), changes)
            )
        else:
            if input_csv is None:
                raise BacktestError("give --input FILE.csv (or --device ID --metric M)")
            if detector is None:
                raise BacktestError("give --detector (a rule name or type) with --input")
            summary = _csv(
                settings,
                detector,
                input_csv,
                scores,
                profile,
                metric,
                changes,
                timezone or settings.timezone,
            )
    except EwgError as exc:
        raise _fail(exc) from exc
    lines = summary.pop("lines")
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False, indent=2))
        return
    for line in lines:
        typer.echo(line)


def _csv(
    settings: Settings,
    detector: str,
    path: Path,
    out: Path | None,
    profile_name: str | None,
    metric: str | None,
    changes: dict[str, Any],
    timezone: str,
) -> dict[str, Any]:
    from detectors.backtest import (
        choose_rule,
        read_series_csv,
        run_rule,
        summarise,
        write_scores_csv,
    )
    from gateway.profiles import load_profiles

    started = time.perf_counter()
    profiles = load_profiles(settings.profiles_dir)
    profile, rule = choose_rule(profiles, detector, profile_name, metric, changes)
    series = read_series_csv(path, timezone)
    result = run_rule(rule, series.ts_ms, series.values, profile, settings.timezone)
    if out is not None:
        write_scores_csv(out, series, result.score, result.alert, result.skipped)
    summary = summarise(result, series.ts_ms)
    seconds = time.perf_counter() - started
    lines = [
        f"rule {profile.name}/{rule.name} ({getattr(rule, 'type', 'threshold')} on "
        f"{rule.metric}){_changed(changes)}",
        f"{summary['rows']} rows, {summary['alerts']} alerts, raised for "
        f"{summary['hours_raised']} h, in {seconds:.2f} s",
    ]
    if summary["skipped"]:
        spec = profile.metrics[rule.metric]
        lines.append(
            f"{summary['skipped']} rows outside {rule.metric}'s valid range "
            f"{spec.min:g}..{spec.max:g} were skipped, as the gateway refuses them"
        )
    if out is not None:
        lines.append(f"scores written to {out}")
    return {
        **summary,
        "profile": profile.name,
        "rule": rule.name,
        "settings": changes,
        "seconds": round(seconds, 3),
        "lines": lines,
    }


def _changed(changes: dict[str, Any]) -> str:
    if not changes:
        return ""
    return " with " + ", ".join(f"{k}={v}" for k, v in changes.items())


async def _history(
    settings: Settings,
    detector: str | None,
    device_id: str,
    metric: str | None,
    since_ms: int,
    changes: dict[str, Any],
) -> dict[str, Any]:
    """The device's rules as they are in force (profile, then site and device overrides) and
    as changed, over its stored readings: how many alerts each would have raised."""
    from detectors.backtest import BacktestError, change_rule, choose_rule, run_rule, summarise
    from gateway.model import now_ms
    from gateway.profiles import load_profiles
    from gateway.registry import Registry
    from gateway.rule_overrides import RuleOverrides, load_overrides
    from gateway.service import open_main_db
    from gateway.stores import open_store

    profiles = load_profiles(settings.profiles_dir)
    async with open_main_db(settings) as db:
        registry = Registry(db, profiles)
        await registry.refresh()
        await registry.get_device(device_id)
        profile = registry.profile_of(device_id)
        site_id = registry.site_of(device_id)
    if profile is None:
        raise BacktestError(f"device {device_id!r} has no profile")
    overrides = (
        RuleOverrides()
        if settings.rule_overrides is None
        else load_overrides(settings.rule_overrides, profiles)
    )
    in_force = overrides.rules_for(profile, site_id, device_id)
    effective = profile.model_copy(update={"rules": list(in_force)})
    if detector is not None:
        rules = [choose_rule({profile.name: effective}, detector, profile.name, metric)[1]]
    else:
        if metric is None:
            raise BacktestError("give --detector or --metric (every rule on that metric)")
        rules = [r for r in in_force if r.metric == metric]
        if not rules:
            raise BacktestError(
                f"device {device_id!r} ({profile.name}) has no rule in force on {metric!r}"
            )
    end = now_ms()
    start = end - since_ms
    store = await open_store(settings)
    series: dict[str, tuple[Any, Any]] = {}
    try:
        for m in sorted({r.metric for r in rules}):
            readings = await store.query(device_id, m, start, end, limit=50_000_000)
            series[m] = (
                np.array([r.ts_ms for r in readings], dtype=np.int64),
                np.array([r.value for r in readings], dtype=np.float64),
            )
    finally:
        await store.close()
    lines = [f"device {device_id} ({profile.name}), the last {since_ms / 3_600_000:g} h"]
    results = []
    for rule in rules:
        ts, values = series[rule.metric]
        now_rule = summarise(run_rule(rule, ts, values, profile, settings.timezone), ts)
        lines.append(
            f"rule {rule.name} ({rule.type} on {rule.metric}), {ts.size} readings: "
            f"current rule: {now_rule['alerts']} alerts, raised for {now_rule['hours_raised']} h"
        )
        entry: dict[str, Any] = {"rule": rule.name, "readings": int(ts.size), "current": now_rule}
        if changes:
            changed = change_rule(profile, rule, changes)
            new_rule = summarise(run_rule(changed, ts, values, profile, settings.timezone), ts)
            lines.append(
                f"  with{_changed(changes)[5:]}: {new_rule['alerts']} alerts, raised for "
                f"{new_rule['hours_raised']} h ({new_rule['alerts'] - now_rule['alerts']:+d})"
            )
            entry["changed"] = new_rule
        results.append(entry)
    return {"device_id": device_id, "settings": changes, "rules": results, "lines": lines}


def evaluate(
    days: Annotated[int, typer.Option(min=1, help="simulated days (7 holds every incident)")] = 7,
    seed: Annotated[int, typer.Option(help="random seed of the simulated town")] = 11,
    seeds: Annotated[
        int, typer.Option(min=1, help="towns to pool (seeds seed, seed+1, ...): more incidents")
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="print the results as JSON")] = False,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="TOML config file")] = None,
) -> None:
    """Score every detector on the simulator's labelled town: recall, precision, false
    alarms per device-day and detection delay, per detector and incident kind."""
    from detectors.evaluate import evaluate as run
    from detectors.evaluate import format_table
    from gateway.profiles import load_profiles

    settings = _settings(config, data_dir)
    try:
        result = run(days, seed, load_profiles(settings.profiles_dir), settings.timezone, seeds)
    except EwgError as exc:
        raise _fail(exc) from exc
    if as_json:
        typer.echo(json.dumps(result.to_json(), ensure_ascii=False, indent=2))
    else:
        typer.echo(format_table(result))


def register(app: typer.Typer) -> None:
    """Add the commands to the ``ewg`` app."""
    app.command()(backtest)
    app.command()(evaluate)
