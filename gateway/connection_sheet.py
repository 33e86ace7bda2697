"""The connection sheet: everything an enterprise's electrician needs to connect one device.

One sheet, three readers: the enterprise portal (JSON, with copy buttons), the API
(``POST /api/portal/devices`` answers with it) and ``ewg device add`` (printed lines).
Keeping it in one place means the topic scheme, the example payload and the
``mosquitto_pub`` line cannot drift apart between them.

What goes on it:

* the broker as *devices* reach it (``device_broker_url``, else ``broker_url`` without
  the gateway's own user:pass), split into host, port and TLS for a device's settings page;
* client id and username (both the device id, which the broker binds together) and the
  secret, but only on the sheet made in the same response that issued the secret;
  a sheet shown again later has no secret and its example reads it from
  ``$EWG_DEVICE_SECRET`` instead;
* the three topics of :data:`gateway.decode.TOPIC` and an example payload in the
  profile's own decoder format, with values from the profile's metrics that lie inside
  their valid ranges and below every alarm threshold (a test publish raises no alarm);
* a ``mosquitto_pub`` line that publishes that payload as printed (with QoS 1, as the
  gateway expects). Without ``ts`` in it, on purpose: the gateway stamps the receive
  time, whereas a fixed timestamp in a copied example would be refused as too old a
  month later.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

from gateway.broker_accounts import Credentials, DeviceAccounts, device_topics
from gateway.mqtt import BrokerAddress, without_credentials
from gateway.profiles import MetricSpec, Profile, ThresholdRule
from gateway.registry_model import Device

#: Where the example command reads the secret from when the sheet no longer has it.
SECRET_PLACEHOLDER = '"$EWG_DEVICE_SECRET"'
#: The file name the example passes to ``--cafile`` on a TLS broker: the town CA's certificate.
CA_FILE = "ca.crt"
#: At most this many metrics in the example payload (a readable line, not the whole profile).
EXAMPLE_METRICS = 3


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """The broker as a device's settings page asks for it."""

    url: str
    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> BrokerEndpoint:
        """
        >>> BrokerEndpoint.parse("mqtts://gw:pw@broker.example")
        BrokerEndpoint(url='mqtts://broker.example', host='broker.example', port=8883, tls=True)
        """
        address = BrokerAddress.parse(url)
        return cls(without_credentials(url), address.host, address.port, address.tls)


@dataclass(frozen=True, slots=True)
class ConnectionSheet:
    device_id: str
    profile: str
    broker: BrokerEndpoint
    client_id: str
    #: None when the broker is anonymous (``broker_accounts = "none"``).
    username: str | None
    #: Only on the sheet returned with a newly issued secret; never stored.
    secret: str | None
    telemetry_topic: str
    event_topic: str
    status_topic: str
    #: One telemetry message in the profile's decoder format (JSON text).
    example_payload: str
    #: Publishes ``example_payload`` as printed (reads the secret from $EWG_DEVICE_SECRET
    #: when ``secret`` is None and the broker has accounts).
    mosquitto_pub: str

    @property
    def accounts(self) -> bool:
        """Whether the broker wants a username and secret from this device."""
        return self.username is not None

    @property
    def topics(self) -> tuple[str, str, str]:
        return (self.telemetry_topic, self.event_topic, self.status_topic)

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "profile": self.profile,
            "broker_url": self.broker.url,
            "host": self.broker.host,
            "port": self.broker.port,
            "tls": self.broker.tls,
            "client_id": self.client_id,
            "username": self.username,
            "secret": self.secret,
            "accounts": self.accounts,
            "telemetry_topic": self.telemetry_topic,
            "event_topic": self.event_topic,
            "status_topic": self.status_topic,
            "qos": 1,
            "last_will": {"topic": self.status_topic, "payload": "offline", "retain": True},
            "example_payload": self.example_payload,
            "mosquitto_pub": self.mosquitto_pub,
        }

    def lines(self) -> list[str]:
        """For a terminal: what the electrician types into the device's settings.

        The labels are a stable interface (scripts and tests pick fields by them).
        """
        tls = "TLS" if self.broker.tls else "no TLS"
        out = [
            f"  broker:    {self.broker.url}  (host {self.broker.host}, port {self.broker.port},"
            f" {tls})",
            f"  client id: {self.client_id}",
        ]
        if self.username is None:
            out.append("  username:  (none: the broker accepts devices without an account)")
        else:
            out.append(f"  username:  {self.username}")
            if self.secret is not None:
                out.append(f"  secret:    {self.secret}")
        out += [
            f"  telemetry: {self.telemetry_topic}  (QoS 1)",
            f"  events:    {self.event_topic}",
            f"  status:    {self.status_topic}  (retained online/offline; offline as last will)",
            f"  payload:   {self.example_payload}",
            "  try it:",
            f"    {self.mosquitto_pub}",
        ]
        return out


# -- the example payload ------------------------------------------------------------------


def _rule_for(profile: Profile, metric: str) -> ThresholdRule | None:
    return next((r for r in profile.rules if r.metric == metric), None)


def example_value(spec: MetricSpec, rule: ThresholdRule | None) -> float | bool:
    """A plausible, quiet reading: inside the valid range and clear of every alarm stage.

    >>> from gateway.profiles import MetricSpec
    >>> example_value(MetricSpec(unit="°C", min=-40, max=200), None)
    25.0
    >>> example_value(MetricSpec(unit="", min=0, max=1, kind="bool"), None)
    False
    """
    if spec.kind == "bool":
        return False
    if rule is not None:
        stages = [s.value for s in (rule.prewarning, rule.alarm) if s is not None]
        if rule.direction == "above":
            value = max(spec.min, min(stages) / 2)
        else:
            value = min(spec.max, (max(stages) + spec.max) / 2)
    elif spec.unit == "°C":
        value = 25.0
    else:
        value = max(spec.min, min(spec.max, 0.0))
    return float(round(value, 1))


def example_values(profile: Profile | None) -> dict[str, float | bool]:
    if profile is None or not profile.metrics:
        return {"value": 0.0}
    chosen = list(profile.metrics.items())[:EXAMPLE_METRICS]
    return {name: example_value(spec, _rule_for(profile, name)) for name, spec in chosen}


def example_payload(profile: Profile | None) -> str:
    """One telemetry message in the format the profile's decoder reads."""
    values = example_values(profile)
    body: dict[str, Any]
    if profile is not None and profile.decoder == "alink":
        body = {
            "id": "1",
            "version": "1.0",
            "method": "thing.event.property.post",
            "params": {name: {"value": v} for name, v in values.items()},
        }
    else:
        body = {"values": values}
    return json.dumps(body, ensure_ascii=False)


# -- the command line that publishes it ---------------------------------------------------


def mosquitto_pub_line(
    broker: BrokerEndpoint,
    device_id: str,
    payload: str,
    *,
    username: str | None,
    secret: str | None,
) -> str:
    """``mosquitto_pub`` publishing ``payload`` as the device would; safe to paste in a shell."""
    words = ["mosquitto_pub", "-h", broker.host, "-p", str(broker.port)]
    if broker.tls:
        words += ["--cafile", CA_FILE]
    words += ["-i", device_id]
    line = shlex.join(words)
    if username is not None:
        line += " -u " + shlex.quote(username)
        line += " -P " + (shlex.quote(secret) if secret is not None else SECRET_PLACEHOLDER)
    return line + " " + shlex.join(["-q", "1", "-t", device_topics(device_id)[0], "-m", payload])


def connection_sheet(
    broker_url: str,
    device: Device,
    profile: Profile | None,
    *,
    accounts: bool,
    credentials: Credentials | None = None,
) -> ConnectionSheet:
    """The sheet for ``device``; pass the ``credentials`` just issued to include the secret."""
    broker = BrokerEndpoint.parse(credentials.broker_url if credentials else broker_url)
    telemetry, event, status = device_topics(device.id)
    username = (credentials.username if credentials else device.id) if accounts else None
    secret = credentials.secret if credentials else None
    client_id = credentials.client_id if credentials else device.id
    payload = example_payload(profile)
    return ConnectionSheet(
        device_id=device.id,
        profile=device.profile,
        broker=broker,
        client_id=client_id,
        username=username,
        secret=secret,
        telemetry_topic=telemetry,
        event_topic=event,
        status_topic=status,
        example_payload=payload,
        mosquitto_pub=mosquitto_pub_line(
            broker, device.id, payload, username=username, secret=secret
        ),
    )


def sheet_for(
    accounts: DeviceAccounts, device: Device, credentials: Credentials | None = None
) -> ConnectionSheet:
    """The sheet as the gateway (or the CLI) configured it: its broker, its accounts setting."""
    return connection_sheet(
        accounts.broker_url,
        device,
        accounts.registry.profiles.get(device.profile),
        accounts=accounts.enabled,
        credentials=credentials,
    )
