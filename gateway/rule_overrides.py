"""Per-site and per-device changes to profile rules, from one YAML file.

A profile carries the defaults from ``domain.md``; a real site differs: its
dust's explosion limit, its collector's baseline, a cold store whose "normal"
is -18 °C. Rather than copying a whole profile per site (and then missing the
next fix to it), a site or a device overrides just the fields it needs::

    sites:
      site-sawmill:                    # every device at this site
        hopper_temp:                   # a rule name from the device's profile
          alarm: {value: 65}           # severity and everything else kept
    devices:
      dc-7:                            # one device, over its site
        pressure_drift: {baseline: 1150}
        dust_concentration: {enabled: false}

Precedence: device over site over profile. Stage specs merge field by field
(``alarm: {value: 65}`` keeps the alarm's severity); ``prewarning: null`` removes
a stage. ``name``, ``type`` and ``metric`` cannot be overridden: that would be a
different rule, which belongs in a profile. Every override is validated at load
against every profile that has a rule of that name, and errors name the file
and the field (``rules.yaml: sites.site-sawmill.hopper_temp.alarm.value: ...``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gateway.errors import ConfigError
from gateway.profiles import RULE_MODELS, Profile, ThresholdRule, without_rule_tags
from gateway.yamlfile import describe, read_mapping

_FIXED = ("name", "type", "metric")

#: One scope's changes: rule name -> the fields to change.
RuleChanges = dict[str, dict[str, Any]]


class RuleOverrideError(ConfigError):
    """The override file is unreadable or an override does not make a valid rule."""


class _File(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sites: dict[str, RuleChanges] = Field(default_factory=dict)
    devices: dict[str, RuleChanges] = Field(default_factory=dict)


def merge(rule: ThresholdRule, *changes: Mapping[str, Any]) -> ThresholdRule:
    """``rule`` with each mapping of changes applied in turn (later ones win); validated.

    Raises :class:`pydantic.ValidationError` if the result is not a valid rule, and
    ValueError for a change to ``name``, ``type`` or ``metric``.

    >>> from gateway.profiles import ThresholdRule
    >>> hopper = ThresholdRule.model_validate({
    ...     "name": "hopper_temp", "metric": "hopper_temp_c", "hazard": "explosion_risk",
    ...     "prewarning": {"value": 60, "severity": "yellow"},
    ...     "alarm": {"value": 70, "severity": "orange"}, "title_zh": "灰斗", "title_en": "Hopper"})
    >>> site = merge(hopper, {"alarm": {"value": 65}}, {"prewarning": None})
    >>> site.alarm.value, site.alarm.severity.value, site.prewarning
    (65.0, 'orange', None)
    """
    data: dict[str, Any] = rule.model_dump(mode="json", exclude_none=True)
    for change in changes:
        fixed = [k for k in _FIXED if k in change]
        if fixed:
            raise ValueError(f"{', '.join(fixed)} cannot be overridden (make a new rule instead)")
        for key, value in change.items():
            old = data.get(key)
            if isinstance(value, Mapping) and isinstance(old, dict):
                merged = dict(old)
                if "high" in value:
                    merged.pop("value", None)
                if "value" in value:
                    merged.pop("high", None)
                merged.update(value)
                data[key] = merged
            elif value is None:
                data.pop(key, None)
            else:
                data[key] = value
    return RULE_MODELS[rule.type].model_validate(data)


class RuleOverrides:
    """The effective rules of a device: its profile's, changed by its site's and its own."""

    __slots__ = ("devices", "sites", "source")

    def __init__(
        self,
        sites: Mapping[str, RuleChanges] | None = None,
        devices: Mapping[str, RuleChanges] | None = None,
        source: str = "(rule overrides)",
    ) -> None:
        self.sites: dict[str, RuleChanges] = dict(sites or {})
        self.devices: dict[str, RuleChanges] = dict(devices or {})
        self.source = source

    def __len__(self) -> int:
        return sum(len(v) for v in self.sites.values()) + sum(len(v) for v in self.devices.values())

    def rules_for(
        self, profile: Profile, site_id: str | None, device_id: str
    ) -> tuple[ThresholdRule, ...]:
        """The enabled rules of ``device_id`` (at ``site_id``) with ``profile``, overridden.

        Not cached here: the detector bank keeps each device's rules for as long as its
        profile object and site stay the same."""
        site = self.sites.get(site_id, {}) if site_id is not None else {}
        device = self.devices.get(device_id, {})
        rules: list[ThresholdRule] = []
        for rule in profile.rules:
            changes = [c for c in (site.get(rule.name), device.get(rule.name)) if c]
            effective = merge(rule, *changes) if changes else rule
            if effective.enabled:
                rules.append(effective)
        return tuple(rules)

    def unregistered(self, site_ids: Collection[str], device_ids: Collection[str]) -> list[str]:
        """The entries naming a site or device the registry does not hold: a typo (the
        override would never apply) or one not registered yet (it applies once it is).

        >>> o = RuleOverrides({"sawmill": {}, "sawmil": {}}, {"dc-7": {}})
        >>> o.unregistered({"sawmill"}, set())
        ['sites.sawmil', 'devices.dc-7']
        """
        return [f"sites.{s}" for s in self.sites if s not in site_ids] + [
            f"devices.{d}" for d in self.devices if d not in device_ids
        ]

    def check(self, profiles: Mapping[str, Profile]) -> None:
        """Validate every override against every profile with that rule name.

        Raises :class:`RuleOverrideError` naming the file and the field.
        """
        by_name: dict[str, list[ThresholdRule]] = {}
        for profile in profiles.values():
            for rule in profile.rules:
                by_name.setdefault(rule.name, []).append(rule)
        for scope, entries in (("sites", self.sites), ("devices", self.devices)):
            for who, changes in entries.items():
                for rule_name, change in changes.items():
                    where = f"{scope}.{who}.{rule_name}"
                    if rule_name not in by_name:
                        raise RuleOverrideError(
                            f"{self.source}: {where}: no device profile has a rule {rule_name!r}"
                        )
                    if not isinstance(change, Mapping):
                        raise RuleOverrideError(
                            f"{self.source}: {where}: must be a mapping of rule fields"
                        )
                    for rule in by_name[rule_name]:
                        try:
                            merge(rule, change)
                        except ValidationError as exc:
                            detail = describe(without_rule_tags(exc), "(rule)")
                            raise RuleOverrideError(f"{self.source}: {where}.{detail}") from None
                        except ValueError as exc:
                            raise RuleOverrideError(f"{self.source}: {where}: {exc}") from None


def load_overrides(path: Path, profiles: Mapping[str, Profile]) -> RuleOverrides:
    """Read and validate a rule-override file against the loaded profiles.

    >>> import tempfile, pathlib
    >>> from gateway.profiles import load_profiles
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "rules.yaml"
    >>> _ = p.write_text("sites:\\n  s1:\\n    hopper_temp: {alarm: {value: 'hot'}}\\n")
    >>> load_overrides(p, load_profiles())
    Traceback (most recent call last):
    ...
    gateway.rule_overrides.RuleOverrideError: .../rules.yaml: sites.s1.hopper_temp.alarm.value: \
Input should be a valid number, unable to parse string as a number
    """
    data = read_mapping(path, "rule override file", RuleOverrideError)
    try:
        parsed = _File.model_validate(data)
    except ValidationError as exc:
        raise RuleOverrideError(f"{path}: {describe(exc, '(file)')}") from exc
    overrides = RuleOverrides(parsed.sites, parsed.devices, source=str(path))
    overrides.check(profiles)
    return overrides
