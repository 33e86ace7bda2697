"""Who is told about an alert, how, and when: channels, recipients, escalation policies, options.

Everything about notification *routing* is configuration, loaded from one YAML file
(``alerting_config`` in the settings; the shipped :data:`DEFAULT_PATH` otherwise), so a
town changes its chain — who is called after how long — without touching code:

* ``channels``: how a message leaves the gateway (a DingTalk or WeCom group robot, an SMS
  relay, e-mail, a JSON webhook, any apprise URL, or the gateway log);
* ``recipients``: roles (site owner, grid officer, duty leader, fire station) with their
  contacts, per site and per village where they differ;
* ``policies``: for alerts matching a severity/class/hazard, a chain of steps ("after
  60 s, the grid officer by SMS"), and reminders while the alert stays unacknowledged;
* ``options``: every timing knob in one place (retries, backoff, timeouts).

Secrets (robot tokens, SMTP passwords) do not belong in the file: any ``${NAME}`` in a
string is replaced by the environment variable ``NAME`` when the file is loaded.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from alerts.model import Alert, AlertClass, Severity
from gateway.errors import ConfigError
from gateway.yamlfile import describe, read_mapping

DEFAULT_PATH = Path(__file__).resolve().parent / "default_alerting.yaml"

Language = Literal["zh", "en"]
ALL_LANGUAGES: tuple[Language, ...] = ("zh", "en")
CHINESE_ONLY: tuple[Language, ...] = ("zh",)


class AlertingConfigError(ConfigError):
    """An alerting file that cannot be used; the message names the file, field and reason."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- options ---------------------------------------------------------------------------------


class RetryOptions(_Strict):
    """Exponential backoff for a failed delivery: initial, initial*multiplier, ... up to max.

    The defaults try 8 times over about ten minutes: long enough to ride out a robot's
    rate limit (DingTalk throttles a robot for minutes after 20 messages a minute) or a
    mail server restart, short enough that a message still means something when it lands.
    """

    max_attempts: int = Field(default=8, ge=1)
    initial_backoff_s: float = Field(default=5.0, gt=0)
    multiplier: float = Field(default=2.0, ge=1)
    max_backoff_s: float = Field(default=300.0, gt=0)

    def backoff_ms(self, failed_attempts: int) -> int:
        """Pause after the ``failed_attempts``-th failure (1-based).

        >>> RetryOptions(initial_backoff_s=1, multiplier=2, max_backoff_s=5).backoff_ms(4)
        5000
        """
        pause = self.initial_backoff_s * self.multiplier ** max(0, failed_attempts - 1)
        return int(min(pause, self.max_backoff_s) * 1000)


class AlertingOptions(_Strict):
    """All timings and limits of escalation and delivery, in one object."""

    #: Base of the link in every message (``{public_url}/#alert={id}``); None: the API address.
    public_url: str | None = None
    #: Languages of a message, in order; a channel may narrow them (SMS: Chinese only).
    languages: list[Language] = Field(default_factory=lambda: list(ALL_LANGUAGES), min_length=1)
    #: One delivery attempt that takes longer counts as failed (and is retried).
    send_timeout_s: float = Field(default=10.0, gt=0)
    retry: RetryOptions = Field(default_factory=RetryOptions)
    #: Deliveries in flight at once per channel: a hung channel holds only its own slots.
    max_in_flight_per_channel: int = Field(default=4, ge=1)
    #: On start, an open unacknowledged alert with no escalation record (raised before
    #: notifications were configured) is escalated only if it was raised this recently.
    adopt_max_age_s: float = Field(default=3600.0, ge=0)
    #: The schedulers wake at least this often, whatever they expect (a guard, not a timing).
    max_sleep_s: float = Field(default=30.0, gt=0)
    #: HTTP(S) proxy for the HTTP channels; environment proxy variables are ignored on purpose.
    http_proxy: str | None = None


# -- channels --------------------------------------------------------------------------------


class _Channel(_Strict):
    #: Narrows ``options.languages`` for this channel (None: all of them).
    languages: list[Language] | None = None


class LogChannelConfig(_Channel):
    """Writes the message to the gateway log: the default, and a witness in demos."""

    type: Literal["log"]


class WebhookChannelConfig(_Channel):
    """EWG's own JSON (the alert's fields, both texts, the link) POSTed to ``url``."""

    type: Literal["webhook"]
    url: SecretStr
    headers: dict[str, SecretStr] = Field(default_factory=dict)


class DingTalkChannelConfig(_Channel):
    """A DingTalk group's custom robot (``https://oapi.dingtalk.com/robot/send?access_token=``).

    ``secret`` is the robot's 加签 key (``SEC...``); with the keyword security setting,
    choose a keyword every message carries, such as 预警.
    """

    type: Literal["dingtalk"]
    url: SecretStr
    secret: SecretStr | None = None


class WeComChannelConfig(_Channel):
    """A WeCom (企业微信) group robot (``https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=``)."""

    type: Literal["wecom"]
    url: SecretStr


class SmsChannelConfig(_Channel):
    """An HTTP SMS relay: ``{"phones": [...], "content": "..."}`` POSTed to ``url``.

    Carriers' and cloud SMS APIs each sign requests and demand pre-approved templates; a
    town runs (or buys) one relay that speaks its carrier, and EWG speaks to the relay.
    """

    type: Literal["sms"]
    url: SecretStr
    token: SecretStr | None = None
    languages: list[Language] | None = Field(default_factory=lambda: list(CHINESE_ONLY))


class EmailChannelConfig(_Channel):
    """E-mail through apprise: ``mailto://`` / ``mailtos://user:pass@host:port?from=...``.

    The recipients' addresses are added as ``to=`` per message; leave ``to`` out of the URL.
    """

    type: Literal["email"]
    url: SecretStr


class AppriseChannelConfig(_Channel):
    """Any apprise URL (``json://``, ``form://``, ``ntfy://``, ...): title and text only."""

    type: Literal["apprise"]
    url: SecretStr


ChannelConfig = Annotated[
    LogChannelConfig
    | WebhookChannelConfig
    | DingTalkChannelConfig
    | WeComChannelConfig
    | SmsChannelConfig
    | EmailChannelConfig
    | AppriseChannelConfig,
    Field(discriminator="type"),
]


# -- recipients ------------------------------------------------------------------------------


class Contact(_Strict):
    """How to reach one person or desk."""

    name: str = ""
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)


class Recipient(_Strict):
    """A role in the chain; its contact depends on where the alert is.

    The most specific contact wins: the alert's site, then its village, then ``contact``.
    """

    title_zh: str
    title_en: str
    contact: Contact | None = None
    by_site: dict[str, Contact] = Field(default_factory=dict)
    by_village: dict[str, Contact] = Field(default_factory=dict)

    def resolve(self, site_id: str, village: str) -> Contact | None:
        """The contact for an alert at this site and village, or None if nobody is set."""
        return self.by_site.get(site_id) or self.by_village.get(village) or self.contact


# -- policies --------------------------------------------------------------------------------


class Target(_Strict):
    """Tell recipient ``to`` over each channel in ``via``."""

    to: str
    via: list[str] = Field(min_length=1)


class Step(_Strict):
    """``after_s`` seconds after the chain started, notify ``notify``."""

    after_s: float = Field(ge=0)
    notify: list[Target] = Field(min_length=1)


class Repeat(_Strict):
    """Reminders every ``every_s`` after the last step while the alert is unacknowledged.

    ``notify`` None means everybody the chain has reached so far.
    """

    every_s: float = Field(gt=0)
    notify: list[Target] | None = None
    max_count: int | None = Field(default=None, ge=1)


class Match(_Strict):
    """Which alerts a policy is for; an empty list matches anything."""

    severity: list[Severity] = Field(default_factory=list)
    alert_class: list[AlertClass] = Field(default_factory=list)
    hazard: list[str] = Field(default_factory=list)
    rule: list[str] = Field(default_factory=list)

    def matches(self, alert: Alert) -> bool:
        return (
            (not self.severity or alert.severity in self.severity)
            and (not self.alert_class or alert.alert_class in self.alert_class)
            and (not self.hazard or alert.hazard in self.hazard)
            and (not self.rule or alert.rule in self.rule)
        )


class Policy(_Strict):
    """An escalation chain; stopped by acknowledgement or close (and by clear, if asked)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    match: Match = Field(default_factory=Match)
    steps: list[Step] = Field(min_length=1)
    repeat: Repeat | None = None
    #: A cleared fire alarm may still be a fire nobody has looked at: keep going by default.
    stop_on_clear: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        delays = [s.after_s for s in self.steps]
        if delays != sorted(delays):
            raise ValueError(f"steps must be in order of after_s, got {delays}")
        return self

    def targets_until(self, step_count: int) -> list[Target]:
        """The targets of the first ``step_count`` steps, each (recipient, channel) once."""
        seen: dict[tuple[str, str], None] = {}
        for step in self.steps[:step_count]:
            for target in step.notify:
                for channel in target.via:
                    seen[(target.to, channel)] = None
        return [Target(to=to, via=[channel]) for to, channel in seen]


class AlertingConfig(_Strict):
    options: AlertingOptions = Field(default_factory=AlertingOptions)
    channels: dict[str, ChannelConfig] = Field(default_factory=dict)
    recipients: dict[str, Recipient] = Field(default_factory=dict)
    #: Tried in order; the first policy that matches an alert is its chain.
    policies: list[Policy] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Self:
        names = [p.name for p in self.policies]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"policy names must be unique: {duplicates}")
        problems: list[str] = []
        for policy in self.policies:
            targets = [t for s in policy.steps for t in s.notify]
            if policy.repeat is not None and policy.repeat.notify:
                targets += policy.repeat.notify
            for target in targets:
                if target.to not in self.recipients:
                    problems.append(f"policy {policy.name}: unknown recipient {target.to!r}")
                problems += [
                    f"policy {policy.name}: unknown channel {c!r}"
                    for c in target.via
                    if c not in self.channels
                ]
        if problems:
            raise ValueError("; ".join(dict.fromkeys(problems)))
        return self

    def policy_for(self, alert: Alert) -> Policy | None:
        """The first policy matching the alert, or None: the alert is not notified."""
        return next((p for p in self.policies if p.match.matches(alert)), None)

    def policy(self, name: str) -> Policy | None:
        return next((p for p in self.policies if p.name == name), None)


# -- loading ---------------------------------------------------------------------------------

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(data: Any, environ: dict[str, str] | None = None, where: str = "") -> Any:
    """Replace ``${NAME}`` in every string with the environment variable, recursively.

    >>> expand_env({"url": "https://x/?key=${K}"}, {"K": "s3cret"})
    {'url': 'https://x/?key=s3cret'}
    """
    env = dict(os.environ) if environ is None else environ
    if isinstance(data, str):

        def value(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                raise AlertingConfigError(
                    f"{where or '(top)'}: environment variable {m.group(1)} is not set"
                )
            return env[m.group(1)]

        return _ENV.sub(value, data)
    if isinstance(data, dict):
        return {k: expand_env(v, env, f"{where}.{k}" if where else str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [expand_env(v, env, f"{where}[{i}]") for i, v in enumerate(data)]
    return data


def parse_alerting_config(
    data: dict[str, Any], source: str, environ: dict[str, str] | None = None
) -> AlertingConfig:
    """Validate an already-read mapping; errors name ``source`` and the field."""
    try:
        expanded = expand_env(data, environ)
    except AlertingConfigError as exc:
        raise AlertingConfigError(f"{source}: {exc}") from None
    try:
        return AlertingConfig.model_validate(expanded)
    except ValidationError as exc:
        raise AlertingConfigError(f"{source}: {describe(exc, '(alerting)')}") from exc


def load_alerting_config(
    path: Path | None = None, environ: dict[str, str] | None = None
) -> AlertingConfig:
    """Load ``path`` (the shipped default when None); errors name the file and field."""
    path = DEFAULT_PATH if path is None else path
    data = read_mapping(path, "alerting config", AlertingConfigError)
    return parse_alerting_config(data, str(path), environ)
