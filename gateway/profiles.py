"""Device profiles: one YAML file per device type, validated with pydantic.

A profile says which canonical metrics a device type reports (unit, valid range),
how a vendor's own field names and scales map onto them, which events it sends,
how often it must be heard from, and the default alert rules from ``domain.md``.
A broken profile is reported with its file, the offending field and the reason.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


class StageSpec(_Strict):
    value: float
    severity: Severity


class ThresholdRule(_Strict):
    """Two-stage threshold: pre-warning then alarm, with a delay and hysteresis."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: Literal["threshold"] = "threshold"
    metric: str
    direction: Literal["above", "below"] = "above"
    prewarning: StageSpec | None = None
    alarm: StageSpec
    delay_s: float = Field(default=0.0, ge=0)
    delay_samples: int = Field(default=1, ge=1)
    hysteresis: float = Field(default=0.0, ge=0)
    alert_class: AlertClass = AlertClass.HAZARD
    hazard: str
    title_zh: str
    title_en: str

    @model_validator(mode="after")
    def _stages_in_order(self) -> Self:
        if self.prewarning is not None:
            above = self.direction == "above"
            if (
                (self.prewarning.value >= self.alarm.value)
                if above
                else (self.prewarning.value <= self.alarm.value)
            ):
                raise ValueError(
                    f"prewarning {self.prewarning.value} must come before alarm "
                    f"{self.alarm.value} for direction {self.direction}"
                )
        return self


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
    rules: list[ThresholdRule] = Field(default_factory=list)

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


def load_profile(path: Path) -> Profile:
    """Load and validate one profile file; errors name the file and the field."""
    data = read_mapping(path, "profile", ProfileError)
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        raise ProfileError(f"{path}: {describe(exc, '(profile)')}") from exc
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
