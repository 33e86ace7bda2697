"""Backtests: run one profile rule over a recorded series, exactly as the gateway would.

Staff tune a rule before enabling it ("tune before you enable", issue 3): take a CSV export
or a device's stored history, run the rule with a changed bound or delay, and see where it
would have alerted. The detector is built by the same function the
:class:`~detectors.bank.DetectorBank` uses, and each point goes through the same stage
machine, so a backtest and the live gateway cannot disagree about a series (a test publishes
a series through a real broker and compares).

Scores are mapped onto [0, 1] so one column means the same for every rule type:
``1.0`` at or beyond the alarm bound, and below it the fraction of the way there
(``score / alarm`` for ``above`` rules, ``alarm / score`` for ``below`` rules, and for an
``outside`` band ``score / high`` above zero and ``score / low`` below it, as a drift in per
cent is). A rule whose bounds do not allow a ratio (a bound of zero or of the wrong sign)
scores 0, 0.5 at the pre-warning and 1 at the alarm. Anomaly scores are in [0, 1] already
and are kept as they are. ``alert`` is 1 on the rows where a
*new* alert would be raised (the stage went up from normal), which is what duty staff count;
an escalation from pre-warning to alarm updates the open alert and is not a new row.

The CSV reader is vectorised (numpy string and ``datetime64`` conversion of whole columns)
so a million rows parse in about a second; only when a column fails to convert is the file
walked row by row, to name the first bad line.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import ValidationError

from alerts.model import Stage
from detectors import rules
from detectors.base import Floats, Timestamps
from detectors.rules import detector_from_rule
from detectors.staged import Staged
from gateway.errors import EwgError
from gateway.profiles import Profile, ThresholdRule
from gateway.yamlfile import describe

#: Rule types a ``--detector`` may name instead of a rule name.
RULE_TYPES = ("threshold", "rate_of_rise", "drift", "flatline", "sensor_fault", "anomaly")

Bools = npt.NDArray[np.bool_]


class BacktestError(EwgError):
    """Input a backtest cannot use; the message says which line or option and why."""


# -- reading and writing series -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Series:
    """A series read from a file: timestamps and values as written (echoed back) and parsed."""

    text: npt.NDArray[np.str_]
    ts_ms: Timestamps
    values: Floats
    value_text: npt.NDArray[np.str_]


def read_series_csv(path: Path, timezone: str = "Asia/Shanghai") -> Series:
    """Read a ``timestamp,value`` CSV (header required), timestamps ISO-8601 or
    ``YYYY-MM-DD HH:MM:SS``; without an offset they are wall-clock time in ``timezone``.

    Blank lines are skipped. Any other line that is not a timestamp and a finite number
    raises :class:`BacktestError` naming the line.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "s.csv"
    >>> _ = p.write_text("timestamp,value\\n2026-12-01 08:00:00,1.5\\n2026-12-01T00:00:01Z,2\\n")
    >>> s = read_series_csv(p)
    >>> s.ts_ms.tolist(), s.values.tolist()
    ([1796083200000, 1796083201000], [1.5, 2.0])
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BacktestError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BacktestError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    lines = text.splitlines()
    if not lines or [c.strip().lower() for c in lines[0].split(",")] != ["timestamp", "value"]:
        first = lines[0][:60] if lines else ""
        raise BacktestError(f"{path}: line 1: header must be 'timestamp,value', got {first!r}")
    body = np.array(lines[1:], dtype=np.str_)
    line_no = np.arange(2, len(lines) + 1)
    keep = np.strings.str_len(np.strings.strip(body)) > 0
    if not keep.all():
        body, line_no = body[keep], line_no[keep]
    if body.size == 0:
        raise BacktestError(f"{path}: no data rows after the header")
    stamp, comma, value = np.strings.partition(body, ",")
    missing = np.strings.str_len(comma) == 0
    if missing.any():
        i = int(np.argmax(missing))
        raise BacktestError(
            f"{path}: line {line_no[i]}: expected 'timestamp,value', got {body[i]!r}"
        )
    stamp = np.strings.strip(stamp)
    value = np.strings.strip(value)
    values = _floats(path, value, line_no)
    ts_ms = _timestamps(path, stamp, line_no, ZoneInfo(timezone))
    return Series(stamp, ts_ms, values, value)


def _floats(path: Path, column: npt.NDArray[np.str_], line_no: npt.NDArray[np.int_]) -> Floats:
    try:
        values = column.astype(np.float64)
    except ValueError:
        for i, cell in enumerate(column.tolist()):
            try:
                float(cell)
            except ValueError:
                raise BacktestError(
                    f"{path}: line {line_no[i]}: value {cell!r} is not a number"
                ) from None
        raise  # pragma: no cover - astype and float() disagree
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.argmax(bad))
        raise BacktestError(f"{path}: line {line_no[i]}: value {column[i]!r} is not finite")
    return values


def _timestamps(
    path: Path, column: npt.NDArray[np.str_], line_no: npt.NDArray[np.int_], tz: ZoneInfo
) -> Timestamps:
    # numpy applies an explicit offset itself (and warns that datetime64 has no zone).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = column.astype("datetime64[ms]")
        except ValueError:
            parsed = None
    short = np.strings.str_len(column) < 10
    if parsed is None or short.any() or np.isnat(parsed).any():
        for i, cell in enumerate(column.tolist()):
            if len(cell) < 10 or _parse_one(cell) is None:
                raise BacktestError(
                    f"{path}: line {line_no[i]}: timestamp {cell!r} is not ISO-8601 or "
                    "'YYYY-MM-DD HH:MM:SS'"
                )
        raise BacktestError(f"{path}: timestamps could not be read")  # pragma: no cover
    ms = parsed.astype(np.int64)
    has_offset = (
        np.strings.endswith(column, "Z")
        | (np.strings.rfind(column, "+") > 10)
        | (np.strings.rfind(column, "-") > 10)
    )
    naive = ~has_offset
    if naive.any():
        ms[naive] -= _local_offsets_ms(ms[naive], tz)
    return ms


def _parse_one(cell: str) -> datetime | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if np.isnat(np.datetime64(cell, "ms")):
                return None
        return datetime.fromisoformat(cell.replace("Z", "+00:00"))
    except ValueError:
        return None


def _local_offsets_ms(wall_ms: Timestamps, tz: ZoneInfo) -> Timestamps:
    """UTC offsets (ms) of wall-clock times in ``tz``, looked up once per distinct hour.

    Zones with daylight saving change offset on the hour; an ambiguous wall time (the
    repeated hour in autumn) takes the first occurrence, as Python's ``fold=0`` does.
    """
    hours, inverse = np.unique(wall_ms // 3_600_000, return_inverse=True)
    epoch = datetime(1970, 1, 1)
    offsets = np.empty(hours.size, dtype=np.int64)
    for k, hour in enumerate(hours.tolist()):
        wall = (epoch + timedelta(hours=hour)).replace(tzinfo=tz)
        offset = wall.utcoffset()
        offsets[k] = 0 if offset is None else int(offset.total_seconds() * 1000)
    return offsets[inverse]


def write_scores_csv(
    path: Path, series: Series, scores: Floats, alerts: Bools, skipped: Bools | None = None
) -> None:
    """Write ``timestamp,value,anomaly_score,alert``, timestamps and values as they were read.

    A row the gateway would have refused (``skipped``, e.g. outside the metric's valid range)
    or that its scorer could not score has an empty score (and alert 0).
    """
    blank = ~np.isfinite(scores)
    if skipped is not None:
        blank |= skipped
    score_text = [f"{x:.4f}" for x in scores.tolist()]
    if blank.any():
        for i in np.flatnonzero(blank).tolist():
            score_text[i] = ""
    rows = [
        f"{t},{v},{s},{1 if a else 0}"
        for t, v, s, a in zip(
            series.text.tolist(),
            series.value_text.tolist(),
            score_text,
            alerts.tolist(),
            strict=True,
        )
    ]
    try:
        with path.open("w", encoding="utf-8", newline="") as out:
            out.write("timestamp,value,anomaly_score,alert\n")
            out.write("\n".join(rows))
            out.write("\n")
    except OSError as exc:
        raise BacktestError(f"{path}: cannot write: {exc.strerror or exc}") from exc


# -- choosing and changing a rule -----------------------------------------------------------


def parse_settings(pairs: Sequence[str]) -> dict[str, Any]:
    """``--set key=value`` options as a dict; values are read as YAML scalars.

    >>> parse_settings(["alarm=70", "delay_s=30", "prewarning=null", "direction=below"])
    {'alarm': 70, 'delay_s': 30, 'prewarning': None, 'direction': 'below'}
    """
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise BacktestError(f"--set {pair!r}: expected key=value, e.g. --set alarm=70")
        try:
            out[key] = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            out[key] = raw
    return out


def apply_settings(rule_data: dict[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """The rule's fields with ``settings`` applied.

    ``alarm=70`` / ``prewarning=60`` change a stage's bound and keep its colour (a new
    pre-warning takes yellow); ``alarm.severity=red`` reaches inside; ``prewarning=null``
    removes the stage; anything else replaces the field of that name.
    """
    data = dict(rule_data)
    for key, value in settings.items():
        head, _, rest = key.partition(".")
        current = data.get(head)
        if rest:
            if not isinstance(current, dict):
                raise BacktestError(f"--set {key}: the rule has no {head!r} to change")
            data[head] = {**current, rest: value}
        elif isinstance(current, dict) and isinstance(value, int | float) and "value" in current:
            data[head] = {**current, "value": value}
        elif head == "prewarning" and current is None and isinstance(value, int | float):
            data[head] = {"value": value, "severity": "yellow"}
        else:
            data[key] = value
    return data


def choose_rule(
    profiles: Mapping[str, Profile],
    detector: str,
    profile_name: str | None = None,
    metric: str | None = None,
    settings: Mapping[str, Any] | None = None,
) -> tuple[Profile, ThresholdRule]:
    """The profile and rule a backtest runs, with ``settings`` applied and re-validated.

    ``detector`` is a rule name, or a rule type (the profile's first rule of that type on
    ``metric``; if the profile has that type only on other metrics, its first such rule is
    tried on ``metric``, named ``<metric>_<type>``). Without ``--profile`` every profile is
    searched for a rule of that name, or (for a type with ``--metric``) a rule of that type on
    that metric; an ambiguous or empty match is an error that lists the choices.
    """
    if profile_name and profile_name not in profiles:
        raise BacktestError(
            f"--profile {profile_name!r} is not a profile (known: {', '.join(sorted(profiles))})"
        )
    candidates = [profiles[profile_name]] if profile_name else list(profiles.values())
    found: list[tuple[Profile, ThresholdRule]] = []
    for profile in candidates:
        for rule in profile.rules:
            kind = rule.type
            named = rule.name == detector
            typed = detector in RULE_TYPES and kind == detector
            if (named or typed) and (metric is None or rule.metric == metric):
                found.append((profile, rule))
    if not found and detector in RULE_TYPES and metric is not None and profile_name:
        found = _retargeted(profiles[profile_name], detector, metric)
    if not found:
        where = f"profile {profile_name!r}" if profile_name else "any profile"
        on = f" on metric {metric!r}" if metric else ""
        raise BacktestError(
            f"--detector {detector!r}: no rule of that name or type{on} in {where}; "
            "see `ewg profiles list` and the profiles' rules"
        )
    if len({(p.name, r.name) for p, r in found}) > 1 and (
        profile_name is None or detector not in RULE_TYPES or metric is None
    ):
        choices = ", ".join(f"{p.name}/{r.name} ({r.metric})" for p, r in found[:12])
        if profile_name is None:
            raise BacktestError(
                f"--detector {detector!r} matches several rules: {choices}; give --profile "
                "and --metric"
            )
        if detector in RULE_TYPES and metric is None:
            raise BacktestError(
                f"--detector {detector!r} matches several rules: {choices}; give --metric"
            )
    profile, rule = found[0]
    if settings:
        rule = change_rule(profile, rule, settings)
    return profile, rule


def _retargeted(profile: Profile, kind: str, metric: str) -> list[tuple[Profile, ThresholdRule]]:
    """A rule type the profile uses on another metric, tried on ``metric`` (an anomaly rule
    is written for one cable temperature, and staff ask how it would do on the current)."""
    if metric not in profile.metrics:
        raise BacktestError(f"--metric {metric!r} is not a metric of profile {profile.name!r}")
    template = next((r for r in profile.rules if r.type == kind), None)
    if template is None:
        return []
    data = {**template.model_dump(mode="json"), "metric": metric, "name": f"{metric}_{kind}"}
    return [(profile, type(template).model_validate(data))]


def change_rule(
    profile: Profile, rule: ThresholdRule, settings: Mapping[str, Any]
) -> ThresholdRule:
    """``rule`` with ``settings`` applied, validated as the profile loader would."""
    data = apply_settings(rule.model_dump(mode="json"), settings)
    try:
        changed = type(rule).model_validate(data)
    except ValidationError as exc:
        raise BacktestError(f"--set: rule {rule.name!r}: {describe(exc, '(rule)')}") from exc
    if changed.metric not in profile.metrics:
        raise BacktestError(f"--set: metric {changed.metric!r} is not in profile {profile.name!r}")
    return changed


# -- running ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backtest:
    """What a rule made of a series, row by row."""

    score: Floats  # in [0, 1], NaN where the scorer had nothing to say
    alert: Bools  # a new alert raised at this row
    stage: npt.NDArray[np.int8]  # the stage after the row (alerts.model.Stage values)
    skipped: Bools  # rows the gateway would refuse (outside the metric's valid range)

    @property
    def alerts(self) -> int:
        return int(self.alert.sum())


def run_rule(
    rule: ThresholdRule,
    ts_ms: Timestamps,
    values: Floats,
    profile: Profile | None = None,
    timezone: str = "Asia/Shanghai",
) -> Backtest:
    """Run ``rule`` over one series in the order given, as the gateway's bank would.

    The detector is :func:`detectors.rules.detector_from_rule`'s, the one the bank builds,
    run through its vectorised stage machine (equal to the per-point loop). With
    ``profile``, values outside the metric's valid range are skipped, because the gateway
    refuses them before any detector sees them (``out_of_range`` dead letters), and the
    metric's range is handed to the rule (a sensor-fault rule needs it). ``timezone`` is the
    gateway's, for rules with a schedule.
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    vals = np.asarray(values, dtype=np.float64)
    spec = profile.metrics.get(rule.metric) if profile is not None else None
    skipped = np.zeros(ts.size, dtype=np.bool_)
    if spec is not None:
        skipped = (vals < spec.min) | (vals > spec.max)
    staged = detector_from_rule(rule, spec, timezone)
    kept = np.flatnonzero(~skipped)
    run = rules.run_rule(rule, ts[kept], vals[kept], detector=staged)
    raw = np.full(ts.size, np.nan)
    raw[kept] = run.scores
    stage = np.zeros(ts.size, dtype=np.int8)
    if kept.size:
        # a skipped row leaves the stage as the previous kept row left it
        last = np.maximum.accumulate(np.where(~skipped, np.arange(ts.size), -1))
        filled = np.zeros(ts.size, dtype=np.int8)
        filled[kept] = run.stages
        stage = np.where(last >= 0, filled[np.maximum(last, 0)], 0).astype(np.int8)
    alert = np.zeros(ts.size, dtype=np.bool_)
    if ts.size:
        before = np.concatenate(([np.int8(Stage.NORMAL)], stage[:-1]))
        alert = (before == int(Stage.NORMAL)) & (stage != int(Stage.NORMAL)) & ~skipped
    return Backtest(unit_score(rule, staged, raw), alert, stage, skipped)


def unit_score(rule: ThresholdRule, staged: Staged, raw: Floats) -> Floats:
    """Map a rule's raw scores onto [0, 1] (see the module docstring).

    >>> from gateway.profiles import ThresholdRule
    >>> leak = ThresholdRule.model_validate({
    ...     "name": "leak", "metric": "residual_current_ma", "hazard": "leakage",
    ...     "prewarning": {"value": 240, "severity": "yellow"},
    ...     "alarm": {"value": 300, "severity": "orange"}, "title_zh": "x", "title_en": "x"})
    >>> unit_score(leak, detector_from_rule(leak), np.array([150.0, 300.0, 450.0])).tolist()
    [0.5, 1.0, 1.0]
    """
    band = staged.band(Stage.ALARM)
    pre = staged.band(Stage.PREWARNING)
    assert band is not None
    low, high = band
    with np.errstate(divide="ignore", invalid="ignore"):
        if rule.type == "anomaly":
            out = raw.copy()
        elif (
            staged.direction == "outside"
            and low is not None
            and high is not None
            and low < 0 < high
        ):
            out = np.where(raw >= 0, raw / high, raw / low)
        elif staged.direction == "above" and high is not None and high > 0:
            out = raw / high
        elif staged.direction == "below" and low is not None and low > 0:
            out = np.where(raw <= 0, 1.0, low / raw)
        else:
            out = np.where(_beyond(raw, band), 1.0, 0.0)
            if pre is not None:
                out = np.where((out < 1) & _beyond(raw, pre), 0.5, out)
            out = np.where(np.isnan(raw), np.nan, out)
    return np.clip(out, 0.0, 1.0)


def _beyond(raw: Floats, band: tuple[float | None, float | None]) -> Bools:
    low, high = band
    hit = np.zeros(raw.shape, dtype=np.bool_)
    if low is not None:
        hit |= raw <= low
    if high is not None:
        hit |= raw >= high
    return hit


def summarise(result: Backtest, ts_ms: Timestamps) -> dict[str, Any]:
    """Counts a person reads after a backtest: alerts, time in alarm, skipped rows."""
    ms = np.diff(ts_ms, append=ts_ms[-1:]) if ts_ms.size else np.zeros(0, dtype=np.int64)
    raised = result.stage != int(Stage.NORMAL)
    return {
        "rows": int(ts_ms.size),
        "alerts": result.alerts,
        "alert_rows": np.flatnonzero(result.alert).tolist()[:20],
        "hours_raised": round(float(ms[raised].clip(min=0).sum()) / 3_600_000, 2),
        "skipped": int(result.skipped.sum()),
        "max_score": None
        if not np.isfinite(result.score).any()
        else round(float(np.nanmax(result.score)), 4),
    }
