"""Device profiles: one YAML file per device type, validated with pydantic.

A profile says which canonical metrics a device type reports (unit, valid range),
how a vendor's own field names and scales map onto them, which events it sends,
how often it must be heard from, and the default alert rules from ``domain.md``.
A broken profile is reported with its file, the offending field and the reason.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from alerts.model import AlertClass, Severity
from gateway.errors import ProfileError
from gateway.yamlfile import describe, read_mapping

#: Canonical metric names are snake_case and end in their unit.
METRIC_NAME = re.compile(
    r"^[a-z][a-z0-9]*(_[a-z0-9]+)*_(c|ma|a|v|kw|kwh|pa|pct|lel|dbm|db|gm3|count|per_s|bool|pctlel|m|m3h)$"
)

DEFAULT_PROFILE_DIR = Path(__file__).resolve().parent.parent / "device_profiles"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricSpec(_Strict):
    unit: str
    min: float
    max: float
    kind: Literal["number", "bool"] = "number"
    description: str = ""

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.min >= self.max:
            raise ValueError(f"min ({self.min}) must be below max ({self.max})")
        return self


class FieldMap(_Strict):
    """A vendor field mapped onto a canonical metric: ``canonical = raw * scale + offset``."""

    metric: str
    scale: float = 1.0
    offset: float = 0.0


class _Bound(_Strict):
    """A bound on a score: ``value`` for ``above``/``below``; ``low``..``high`` for ``outside``.

    In YAML an ``outside`` band is written ``{low: -20, high: 20}``; ``high`` is stored as
    ``value`` so every rule keeps one number other code can show as "the" bound.
    """

    value: float
    low: float | None = None

    @model_validator(mode="before")
    @classmethod
    def _high_is_value(cls, data: Any) -> Any:
        if isinstance(data, dict) and "high" in data:
            if "value" in data:
                raise ValueError("give either value (above/below) or low/high (outside), not both")
            data = {k: v for k, v in data.items() if k != "high"} | {"value": data["high"]}
        return data

    @property
    def high(self) -> float:
        return self.value

    def band(self, direction: str) -> tuple[float | None, float | None]:
        """``(low, high)``: a score crosses when ``<= low`` or ``>= high`` (None: no such side)."""
        if direction == "above":
            return None, self.value
        if direction == "below":
            return self.value, None
        return self.low, self.value


class StageSpec(_Bound):
    severity: Severity


class ClearSpec(_Bound):
    """A separate clear condition: a raised rule ends only once the score is back past it."""


Day = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DAYS: tuple[Day, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class ScheduleSpec(_Strict):
    """When a rule is active: local ``hours`` ranges (``"22:00-06:00"`` spans midnight) on
    ``days``. A range spanning midnight belongs to the day it starts on (cron's reading)."""

    hours: list[str] = Field(default_factory=lambda: ["00:00-24:00"])
    days: list[Day] = Field(default_factory=lambda: list(DAYS))

    @field_validator("hours", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("hours")
    @classmethod
    def _ranges_parse(cls, value: list[str]) -> list[str]:
        from detectors.schedule import parse_range  # detectors import this module

        if not value:
            raise ValueError("hours must list at least one range")
        for text in value:
            parse_range(text)
        return value

    @field_validator("days")
    @classmethod
    def _some_days(cls, value: list[Day]) -> list[Day]:
        if not value:
            raise ValueError("days must list at least one day (or leave days out: every day)")
        return value


Direction = Literal["above", "below", "outside"]


class ThresholdRule(_Strict):
    """A rule: a score thresholded in two stages (pre-warning, alarm), with delay and hysteresis.

    ``type: threshold`` scores a reading by its value; the other types (subclasses below)
    score it by a rate, a drift, a flat time... and share every field here, because one
    stage machine (:class:`detectors.staged.Staged`) runs them all. The base class is named
    for its oldest use so existing code that reads ``profile.rules`` keeps type-checking.
    """

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: str = "threshold"
    metric: str
    #: ``outside``: a stage is crossed at ``<= low`` or ``>= high`` (a band around normal).
    direction: Direction = "above"
    prewarning: StageSpec | None = None
    alarm: StageSpec
    delay_s: float = Field(default=0.0, ge=0)
    delay_samples: int = Field(default=1, ge=1)
    hysteresis: float = Field(default=0.0, ge=0)
    #: Instead of hysteresis for the lowest raised stage: the score must be back past this.
    clear: ClearSpec | None = None
    #: When the rule judges at all; outside it, an open stage clears (see detectors.rules).
    schedule: ScheduleSpec | None = None
    #: IANA zone the schedule is read in; None: the gateway's ``timezone`` setting.
    timezone: str | None = None
    #: False switches the rule off (for a site or device override).
    enabled: bool = True
    alert_class: AlertClass = AlertClass.HAZARD
    hazard: str
    title_zh: str
    title_en: str

    @model_validator(mode="after")
    def _stages_in_order(self) -> Self:
        if type(self) is ThresholdRule and self.type != "threshold":
            raise ValueError(f"unknown rule type {self.type!r}")
        outside = self.direction == "outside"
        bounds: list[tuple[str, _Bound]] = [("alarm", self.alarm)]
        if self.prewarning is not None:
            bounds.append(("prewarning", self.prewarning))
        if self.clear is not None:
            bounds.append(("clear", self.clear))
        for where, bound in bounds:
            if outside and bound.low is None:
                raise ValueError(f"{where}: direction outside needs low and high")
            if outside and bound.low is not None and bound.low >= bound.value:
                raise ValueError(f"{where}: low {bound.low} must be below high {bound.value}")
            if not outside and bound.low is not None:
                raise ValueError(f"{where}: low/high are for direction outside; use value")
        lowest: _Bound = self.alarm
        if self.prewarning is not None:
            pre, alarm = self.prewarning, self.alarm
            if not _inside(pre, alarm, self.direction, strict=True):
                raise ValueError(
                    f"prewarning {_show(pre, outside)} must come before alarm "
                    f"{_show(alarm, outside)} for direction {self.direction}"
                )
            lowest = pre
        if self.clear is not None and not _inside(self.clear, lowest, self.direction, strict=False):
            raise ValueError(
                f"clear {_show(self.clear, outside)} must be on the normal side of "
                f"{_show(lowest, outside)} for direction {self.direction}"
            )
        if self.timezone is not None:
            _check_zone(self.timezone)
        return self


def _inside(inner: _Bound, outer: _Bound, direction: str, *, strict: bool) -> bool:
    """Whether ``inner`` lies on the normal side of ``outer``."""

    def before(a: float, b: float) -> bool:
        return a < b if strict else a <= b

    if direction == "above":
        return before(inner.value, outer.value)
    if direction == "below":
        return before(outer.value, inner.value)
    assert inner.low is not None and outer.low is not None
    return before(outer.low, inner.low) and before(inner.value, outer.value)


def _show(bound: _Bound, outside: bool) -> str:
    return f"{bound.low:g}..{bound.value:g}" if outside else f"{bound.value:g}"


def _check_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name like Asia/Shanghai)"
        ) from None


class RateOfRiseRule(ThresholdRule):
    """Score: how fast the metric rises, in its unit per minute (robust slope over a window)."""

    type: Literal["rate_of_rise"] = "rate_of_rise"
    window_s: float = Field(default=60.0, gt=0)
    min_points: int = Field(default=3, ge=2)


class DriftRule(ThresholdRule):
    """Score: signed percent off a baseline, given or learnt from the first points."""

    type: Literal["drift"] = "drift"
    direction: Direction = "outside"
    baseline: float | None = None
    learn_points: int = Field(default=20, ge=1)
    #: Event types after which the baseline is learnt again (a dust collector's bag change).
    relearn_on: list[str] = Field(default_factory=list)


class FlatlineRule(ThresholdRule):
    """Score: seconds the reading has stayed within ``tolerance`` of itself (a stuck sensor)."""

    type: Literal["flatline"] = "flatline"
    tolerance: float = Field(default=0.0, ge=0)
    alert_class: AlertClass = AlertClass.FAULT
    hazard: str = "sensor_fault"


class SensorFaultRule(ThresholdRule):
    """Score 1 for a reading pinned at a range limit or an impossible jump, else 0.

    ``low``/``high`` default to the metric's valid range from the profile.
    """

    type: Literal["sensor_fault"] = "sensor_fault"
    low: float | None = None
    high: float | None = None
    max_step_per_s: float | None = Field(default=None, gt=0)
    alarm: StageSpec = StageSpec(value=0.5, severity=Severity.YELLOW)
    alert_class: AlertClass = AlertClass.FAULT
    hazard: str = "sensor_fault"
    title_zh: str = "传感器故障"
    title_en: str = "Sensor fault"


class AnomalyRule(ThresholdRule):
    """Score in [0, 1]: how unusual the reading is for this series (learnt online).

    Stage values left out come from ``detectors.anomaly.RECOMMENDED_STAGES``.
    """

    type: Literal["anomaly"] = "anomaly"
    method: str | None = None
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    hazard: str = "anomaly"

    @model_validator(mode="before")
    @classmethod
    def _recommended_stages(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for stage in ("prewarning", "alarm"):
            spec = data.get(stage)
            if isinstance(spec, dict) and "value" not in spec and "high" not in spec:
                data[stage] = {**spec, "value": _recommended(stage)}
        for key in ("delay_s", "delay_samples", "hysteresis"):
            if key not in data:
                with contextlib.suppress(ValueError):
                    data[key] = _recommended(key)
        if isinstance(data.get("delay_samples"), float):
            data["delay_samples"] = int(data["delay_samples"])
        return data


def _recommended(stage: str) -> float:
    """H2's recommended bound for an anomaly stage (imported late: detectors import us)."""
    try:
        from detectors.anomaly import RECOMMENDED_STAGES
    except ImportError:
        raise ValueError(
            f"{stage}.value is required (detectors.anomaly is not available)"
        ) from None
    stages: Any = RECOMMENDED_STAGES
    value = stages.get(stage) if isinstance(stages, dict) else getattr(stages, stage, None)
    if value is None:
        raise ValueError(f"{stage} is required (no recommended value for anomaly rules)")
    return float(value)


def _rule_type(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("type", "threshold"))
    return str(getattr(data, "type", "threshold"))


#: Every rule type a profile may use, by its ``type:`` key (built by detectors.rules).
RULE_MODELS: dict[str, type[ThresholdRule]] = {
    "threshold": ThresholdRule,
    "rate_of_rise": RateOfRiseRule,
    "drift": DriftRule,
    "flatline": FlatlineRule,
    "sensor_fault": SensorFaultRule,
    "anomaly": AnomalyRule,
}

AnyRule = Annotated[
    Annotated[ThresholdRule, Tag("threshold")]
    | Annotated[RateOfRiseRule, Tag("rate_of_rise")]
    | Annotated[DriftRule, Tag("drift")]
    | Annotated[FlatlineRule, Tag("flatline")]
    | Annotated[SensorFaultRule, Tag("sensor_fault")]
    | Annotated[AnomalyRule, Tag("anomaly")],
    Discriminator(_rule_type),
]


class EventSpec(_Strict):
    """An event type; with a severity it raises an alert, with ``clears`` it ends one."""

    severity: Severity | None = None
    alert_class: AlertClass = AlertClass.FAULT
    hazard: str = "device"
    clears: str | None = None
    title_zh: str
    title_en: str


class Profile(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title_zh: str
    title_en: str
    standard: str = ""
    decoder: str = "ewg"
    heartbeat_s: int = Field(gt=0)
    offline_after_heartbeats: int = Field(default=3, ge=1)
    fields: dict[str, FieldMap] = Field(default_factory=dict)
    metrics: dict[str, MetricSpec]
    events: dict[str, EventSpec] = Field(default_factory=dict)
    rules: list[AnyRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Self:
        for metric in self.metrics:
            if not METRIC_NAME.match(metric):
                raise ValueError(f"metric {metric!r} is not snake_case ending in a unit suffix")
        for raw, mapping in self.fields.items():
            if mapping.metric not in self.metrics:
                raise ValueError(f"field {raw!r} maps to unknown metric {mapping.metric!r}")
        names = set()
        for rule in self.rules:
            if rule.metric not in self.metrics:
                raise ValueError(f"rule {rule.name!r} watches unknown metric {rule.metric!r}")
            if rule.name in names:
                raise ValueError(f"rule name {rule.name!r} is used twice")
            names.add(rule.name)
        for etype, event in self.events.items():
            if event.clears is not None and event.clears not in self.events:
                raise ValueError(f"event {etype!r} clears unknown event {event.clears!r}")
        return self

    @property
    def offline_after_s(self) -> int:
        return self.heartbeat_s * self.offline_after_heartbeats


def without_rule_tags(exc: ValidationError) -> ValidationError:
    """The same errors without the rule-type tag pydantic puts in each location
    (``rules.0.threshold.alarm`` -> ``rules.0.alarm``): the tag is not in the file."""
    errors = []
    for err in exc.errors():
        loc = list(err["loc"])
        loc = [
            part
            for i, part in enumerate(loc)
            if not (part in RULE_MODELS and i > 0 and isinstance(loc[i - 1], int))
        ]
        errors.append({**err, "loc": tuple(loc)})
    return ValidationError.from_exception_data(exc.title, errors)  # type: ignore[arg-type]


def load_profile(path: Path) -> Profile:
    """Load and validate one profile file; errors name the file and the field."""
    data = read_mapping(path, "profile", ProfileError)
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {describe(without_rule_tags(exc), '(profile)')}") from exc
    if profile.name != path.stem:
        raise ProfileError(f"{path}: name: {profile.name!r} must match the file name {path.stem!r}")
    return profile


def load_profiles(directory: Path = DEFAULT_PROFILE_DIR) -> dict[str, Profile]:
    """Every ``*.yaml`` profile in ``directory``, by name."""
    profiles = {}
    for path in sorted(directory.glob("*.yaml")):
        profile = load_profile(path)
        profiles[profile.name] = profile
    if not profiles:
        raise ProfileError(f"{directory}: no device profiles (*.yaml) found")
    return profiles
