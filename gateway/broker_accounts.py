"""Per-device MQTT accounts on the broker, and the gateway's own.

Every device gets its own username (its id) and a random secret at registration.
The secret is shown once; EWG keeps only an argon2id hash of it, for its own
records (to check a secret an electrician reads back off a device, and as proof of
what was issued when). The broker is what actually admits devices, and it is driven
here, through Mosquitto's **dynamic-security plugin** (``broker_accounts = "dynsec"``).

Why the plugin and not a generated ``password_file`` + ``acl_file`` with SIGHUP:

* Revocation and rotation bite at once, per client: ``deleteClient`` and
  ``setClientPassword`` disconnect a connected client immediately, without reloading
  the whole broker configuration.
* It works over MQTT, so the broker may run in another container or on another host.
  The file approach needs a shared file system, file ownership the broker can read,
  and the right to signal the broker's process (a sudo rule or the Docker socket),
  which is more privilege for EWG than one broker account.
* The broker hashes the secret itself (salted PBKDF2-SHA512 in its
  ``dynamic-security.json``), so EWG keeps a single hash of its own and nothing in
  EWG's database is a credential Mosquitto would accept.
* The broker binds the MQTT client id to the device id, which a password file cannot.

What it costs, and how that is handled:

* The broker's state is a second source of truth. EWG never sees the secret again
  after issuing it, so a lost ``dynamic-security.json`` cannot be rebuilt from EWG's
  database: back that file up with the broker. At start the gateway reconciles what it
  can: it deletes the accounts of revoked devices and logs every active device that
  has no account (``ewg device rotate-secret`` gives it a new one).
* EWG needs the plugin's admin account. It is kept separate from the gateway's ingest
  account (which only reads ``ewg/v1/#``) and used for short connections only.
* Mosquitto 2.0's plugin does not expand ``%u`` in ACLs (tried on 2.0.11), so each
  device gets its own role ``ewg-device-<id>`` allowing ``ewg/v1/<id>/#`` and denying
  everything else explicitly, whatever the broker's default ACL access says.

With ``broker_accounts = "none"`` (the default, and the demo's embedded broker) no
secrets are issued and devices connect anonymously, as before.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import aiomqtt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from gateway.config import Settings
from gateway.errors import BrokerError, ConfigError, ConflictError, NotFoundError
from gateway.mqtt import BrokerAddress, TlsOptions, tls_context, without_credentials
from gateway.profiles import Profile
from gateway.registry import Registry
from gateway.registry_model import Device, DeviceAccess

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = "$CONTROL/dynamic-security/v1/response"
GATEWAY_ROLE = "ewg-gateway"
DEVICE_ROLE_PREFIX = "ewg-device-"

_HASHER = PasswordHash((Argon2Hasher(),))


# -- secrets ------------------------------------------------------------------------------


def new_secret() -> str:
    """256 random bits, URL- and shell-safe (``[A-Za-z0-9_-]``)."""
    return secrets.token_urlsafe(32)


async def hash_secret(secret: str) -> str:
    """argon2id, in a thread: it costs ~0.1 s of CPU on purpose and must not stall ingestion."""
    return await asyncio.to_thread(_HASHER.hash, secret)


async def verify_secret(secret: str, secret_hash: str) -> bool:
    return await asyncio.to_thread(_HASHER.verify, secret, secret_hash)


# -- what a device is allowed ---------------------------------------------------------------


def device_topics(device_id: str) -> tuple[str, str, str]:
    return (
        f"ewg/v1/{device_id}/telemetry",
        f"ewg/v1/{device_id}/event",
        f"ewg/v1/{device_id}/status",
    )


def device_role(device_id: str) -> str:
    return DEVICE_ROLE_PREFIX + device_id


def _acl(acltype: str, topic: str, allow: bool, priority: int = 0) -> dict[str, Any]:
    return {"acltype": acltype, "topic": topic, "allow": allow, "priority": priority}


def device_acls(device_id: str) -> list[dict[str, Any]]:
    """Publish under its own id (incl. a retained status / last will); read nothing.

    The denials are explicit so a broker whose default ACL access was opened up
    (``setDefaultACLAccess ... allow``) still confines the device.

    >>> [(a["acltype"], a["topic"], a["allow"]) for a in device_acls("efm-1")][:2]
    [('publishClientSend', 'ewg/v1/efm-1/#', True), ('publishClientSend', '#', False)]
    """
    return [
        _acl("publishClientSend", f"ewg/v1/{device_id}/#", True, priority=1),
        _acl("publishClientSend", "#", False),
        _acl("subscribePattern", "#", False),
        _acl("subscribeLiteral", "#", False),
        _acl("publishClientReceive", "#", False),
    ]


GATEWAY_ACLS = [
    _acl("subscribePattern", "ewg/v1/#", True, priority=1),
    _acl("publishClientReceive", "ewg/v1/#", True, priority=1),
    _acl("publishClientSend", "#", False),
]


# -- what the operator is told once -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """A device's connection details, with the secret: returned once, never stored."""

    broker_url: str
    client_id: str
    username: str
    secret: str
    topics: tuple[str, ...]
    mosquitto_pub: str


def device_broker_url(settings: Settings) -> str:
    """The broker as devices should be told: the configured one, or broker_url sans user:pass.

    >>> from gateway.config import load_settings
    >>> device_broker_url(load_settings(broker_url="mqtts://gw:pw@broker.example:8883"))
    'mqtts://broker.example:8883'
    """
    url = settings.device_broker_url or settings.broker_url
    if url is None:
        return f"mqtt://127.0.0.1:{settings.embedded_broker_port}"
    return without_credentials(url)


def credentials(
    broker_url: str, device: Device, profile: Profile | None, secret: str
) -> Credentials:
    """Connection details plus a ``mosquitto_pub`` line that really publishes one reading.

    The line is the connection sheet's (:func:`gateway.connection_sheet.mosquitto_pub_line`,
    with its example payload in the profile's own format), so ``POST /api/devices``, the
    portal and ``ewg device add`` print the same command. Imported here, not at the top:
    the sheet module builds on this one.
    """
    from gateway.connection_sheet import BrokerEndpoint, example_payload, mosquitto_pub_line

    line = mosquitto_pub_line(
        BrokerEndpoint.parse(broker_url),
        device.id,
        example_payload(profile),
        username=device.id,
        secret=secret,
    )
    return Credentials(
        broker_url=broker_url,
        client_id=device.id,
        username=device.id,
        secret=secret,
        topics=device_topics(device.id),
        mosquitto_pub=line,
    )


# -- the broker side ----------------------------------------------------------------------


class BrokerAccounts(Protocol):
    """Where device accounts live. Every call is idempotent where it can be."""

    enabled: bool

    async def prepare(self, registry: Registry) -> None:
        """Before the gateway connects: its own account, and a reconcile with the registry."""

    async def create_device(self, device: Device, secret: str) -> None:
        """Create the account; ConflictError if the broker already has that username."""

    async def set_device_secret(self, device: Device, secret: str) -> None:
        """Replace the secret (disconnecting a session that used the old one)."""

    async def remove_device(self, device_id: str) -> None:
        """Delete the account and disconnect the device; fine if it is already gone."""


class NoBrokerAccounts:
    """``broker_accounts = "none"``: an anonymous broker; nothing to manage."""

    enabled = False

    async def prepare(self, registry: Registry) -> None:
        return None

    async def create_device(self, device: Device, secret: str) -> None:
        raise ConflictError(_ACCOUNTS_OFF)

    async def set_device_secret(self, device: Device, secret: str) -> None:
        raise ConflictError(_ACCOUNTS_OFF)

    async def remove_device(self, device_id: str) -> None:
        return None


_ACCOUNTS_OFF = (
    'broker accounts are off (broker_accounts = "none"): devices connect without credentials'
)


class DynsecError(BrokerError):
    """The dynamic-security plugin refused a command; ``error`` is its own text."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"broker refused {command}: {error}")
        self.command = command
        self.error = error


@dataclass(frozen=True, slots=True)
class _Reply:
    command: str
    error: str | None
    data: dict[str, Any]


class DynsecClient:
    """Sends one batch of commands to ``$CONTROL/dynamic-security/v1`` and waits for the answer.

    One short connection per batch: account changes are rare operator actions, and
    the CLI (another process) uses the very same code. Each connection has its own
    client id, so two of them never kick each other off, and each command carries
    its own correlation data because every admin receives every response.
    """

    def __init__(
        self,
        address: BrokerAddress,
        username: str,
        password: str,
        *,
        tls: TlsOptions | None = None,
        timeout_s: float = 5.0,
    ) -> None:
        self.address = address
        self.username = username
        self._password = password
        self.tls = tls
        self.timeout_s = timeout_s

    async def run(self, commands: Sequence[dict[str, Any]]) -> list[_Reply]:
        tag = secrets.token_hex(6)
        tagged = [{**c, "correlationData": f"{tag}-{i}"} for i, c in enumerate(commands)]
        context = await tls_context(self.address, self.tls)
        where = f"{self.address.host}:{self.address.port}"
        try:
            async with asyncio.timeout(self.timeout_s):
                async with aiomqtt.Client(
                    self.address.host,
                    self.address.port,
                    identifier=f"ewg-admin-{tag}",
                    username=self.username,
                    password=self._password,
                    tls_context=context,
                    timeout=self.timeout_s,
                ) as client:
                    granted = await client.subscribe(RESPONSE_TOPIC, qos=1)
                    if any(_code(g) >= 0x80 for g in granted):
                        raise BrokerError(
                            f"broker account {self.username!r} may not use the "
                            "dynamic-security API (is it the plugin's admin?)"
                        )
                    await client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
                    async for message in client.messages:
                        replies = _match(message.payload, tagged)
                        if replies is not None:
                            return replies
        except TimeoutError:
            raise BrokerError(
                f"no answer from the dynamic-security plugin at {where} within "
                f"{self.timeout_s:g}s: is the plugin loaded?"
            ) from None
        except aiomqtt.MqttError as exc:
            raise BrokerError(
                f"cannot manage accounts on the broker at {where} as {self.username!r}: {exc}"
            ) from exc
        raise BrokerError(f"connection to {where} closed before the broker answered")

    async def check(self, commands: Sequence[dict[str, Any]], *, ok: Sequence[str] = ()) -> None:
        """Run and raise :class:`DynsecError` on the first error not listed in ``ok``."""
        for reply in await self.run(commands):
            if reply.error is not None and reply.error not in ok:
                raise DynsecError(reply.command, reply.error)


def _code(granted: object) -> int:
    value = getattr(granted, "value", granted)
    return value if isinstance(value, int) else 0


def _match(payload: object, tagged: list[dict[str, Any]]) -> list[_Reply] | None:
    """Our replies in the order of our commands, or None if this response is someone else's."""
    if not isinstance(payload, bytes | bytearray):
        return None
    try:
        responses = json.loads(payload).get("responses", [])
    except (ValueError, AttributeError):
        return None
    by_tag = {r.get("correlationData"): r for r in responses if isinstance(r, dict)}
    if tagged[0]["correlationData"] not in by_tag:
        return None
    replies = []
    for command in tagged:
        r = by_tag.get(command["correlationData"], {"error": "no response"})
        replies.append(_Reply(command["command"], r.get("error"), r.get("data") or {}))
    return replies


_NOT_FOUND = ("Client not found", "Role not found")


class DynsecAccounts:
    """Device and gateway accounts in Mosquitto's dynamic-security plugin."""

    enabled = True

    def __init__(self, client: DynsecClient, gateway_username: str, gateway_password: str) -> None:
        self.client = client
        self.gateway_username = gateway_username
        self._gateway_password = gateway_password

    def _reserved(self) -> set[str]:
        return {self.gateway_username, self.client.username}

    def _role_commands(self, rolename: str, acls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Make the role exactly ``acls``: delete whatever is there, create it afresh."""
        return [
            {"command": "deleteRole", "rolename": rolename},
            {"command": "createRole", "rolename": rolename, "acls": acls},
        ]

    async def prepare(self, registry: Registry) -> None:
        if await registry.find_device(self.gateway_username) is not None:
            raise ConfigError(
                f"the gateway's broker username {self.gateway_username!r} is a device id; "
                "give the gateway its own username in broker_url"
            )
        await self.client.check(self._role_commands(GATEWAY_ROLE, GATEWAY_ACLS), ok=_NOT_FOUND)
        user = self.gateway_username
        created = await self.client.run(
            [
                {
                    "command": "createClient",
                    "username": user,
                    "password": self._gateway_password,
                    "textname": "EWG gateway (ingest)",
                    "roles": [{"rolename": GATEWAY_ROLE}],
                }
            ]
        )
        if created[0].error == "Client already exists":
            await self.client.check(
                [
                    {
                        "command": "setClientPassword",
                        "username": user,
                        "password": self._gateway_password,
                    },
                    {"command": "addClientRole", "username": user, "rolename": GATEWAY_ROLE},
                ]
            )
        elif created[0].error is not None:
            raise DynsecError("createClient", created[0].error)
        await self._reconcile(registry)

    async def _reconcile(self, registry: Registry) -> None:
        listed = await self.client.run([{"command": "listClients", "count": -1, "offset": 0}])
        on_broker = set(listed[0].data.get("clients", []))
        for device in registry.devices():
            access = registry.access(device.id)
            if access.revoked_ms is not None:
                if device.id in on_broker:
                    log.warning("deleting the broker account of revoked device %s", device.id)
                    await self.remove_device(device.id)
            elif device.id not in on_broker:
                log.warning(
                    "device %s has no broker account and cannot connect; "
                    "`ewg device rotate-secret %s` issues one",
                    device.id,
                    device.id,
                )

    async def create_device(self, device: Device, secret: str) -> None:
        if device.id in self._reserved():
            raise ConflictError(f"{device.id!r} is the name of one of EWG's own broker accounts")
        created = await self.client.run(
            [
                {
                    "command": "createClient",
                    "username": device.id,
                    "clientid": device.id,
                    "password": secret,
                    "textname": device.name or device.id,
                }
            ]
        )
        if created[0].error == "Client already exists":
            raise ConflictError(f"the broker already has an account named {device.id!r}")
        if created[0].error is not None:
            raise DynsecError("createClient", created[0].error)
        try:
            await self._grant(device.id)
        except BaseException:
            await self.remove_device(device.id)  # the account is ours: we just created it
            raise

    async def _grant(self, device_id: str) -> None:
        role = device_role(device_id)
        await self.client.check(
            [
                *self._role_commands(role, device_acls(device_id)),
                {"command": "addClientRole", "username": device_id, "rolename": role},
            ],
            ok=_NOT_FOUND[1:],
        )

    async def set_device_secret(self, device: Device, secret: str) -> None:
        if device.id in self._reserved():
            raise ConflictError(f"{device.id!r} is the name of one of EWG's own broker accounts")
        changed = await self.client.run(
            [
                {"command": "setClientPassword", "username": device.id, "password": secret},
                {"command": "setClientId", "username": device.id, "clientid": device.id},
            ]
        )
        if changed[0].error == "Client not found":
            log.warning("device %s had no broker account; creating it", device.id)
            await self.create_device(device, secret)
            return
        for reply in changed:
            if reply.error is not None:
                raise DynsecError(reply.command, reply.error)
        await self._grant(device.id)  # also repairs a role edited by hand

    async def remove_device(self, device_id: str) -> None:
        if device_id in self._reserved():
            return
        await self.client.check(
            [
                {"command": "deleteClient", "username": device_id},
                {"command": "deleteRole", "rolename": device_role(device_id)},
            ],
            ok=_NOT_FOUND,
        )


def broker_accounts(settings: Settings) -> BrokerAccounts:
    """The account backend the settings ask for, with its settings checked."""
    if settings.broker_accounts == "none":
        return NoBrokerAccounts()
    if settings.broker_url is None:
        raise ConfigError('broker_accounts = "dynsec" needs broker_url (a real Mosquitto)')
    address = BrokerAddress.parse(settings.broker_url)
    if not address.username or not address.password:
        raise ConfigError(
            'broker_accounts = "dynsec" needs the gateway\'s own account in broker_url: '
            "mqtt(s)://USER:PASSWORD@host:port"
        )
    admin, admin_password = settings.broker_admin_username, settings.broker_admin_password
    if not admin or admin_password is None:
        raise ConfigError(
            'broker_accounts = "dynsec" needs broker_admin_username and broker_admin_password'
        )
    if admin == address.username:
        raise ConfigError(
            "broker_admin_username must differ from the gateway's username in broker_url: "
            "the admin account can change every account, the gateway's only reads ewg/v1/#"
        )
    client = DynsecClient(
        BrokerAddress(address.host, address.port, address.tls),
        admin,
        admin_password.get_secret_value(),
        tls=tls_options(settings),
        timeout_s=settings.broker_admin_timeout_s,
    )
    return DynsecAccounts(client, address.username, address.password)


def tls_options(settings: Settings) -> TlsOptions:
    return TlsOptions(settings.mqtt_ca_file, settings.mqtt_client_cert, settings.mqtt_client_key)


# -- registry + broker, in the right order --------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrolment:
    device: Device
    #: None when broker accounts are off.
    credentials: Credentials | None


class DeviceAccounts:
    """Registration, secret rotation and revocation: the registry and the broker together.

    The order of the two writes is chosen so a failure half-way leaves nothing that
    lets a device in by mistake:

    * add: the broker account first (it doubles as a reservation of the id), then the
      registry; if the registry refuses, the fresh account is deleted again.
    * rotate: the broker first, then the hash; if the broker fails nothing changed.
    * revoke: the registry first (the gateway ignores the device from then on), then
      the broker; revoking again retries the broker, and the gateway's start-up
      reconcile deletes what is left.
    """

    def __init__(self, registry: Registry, broker: BrokerAccounts, broker_url: str) -> None:
        self.registry = registry
        self.broker = broker
        self.broker_url = broker_url
        self._lock = asyncio.Lock()

    @property
    def enabled(self) -> bool:
        return self.broker.enabled

    async def prepare(self) -> None:
        await self.broker.prepare(self.registry)

    def _credentials(self, device: Device, secret: str) -> Credentials:
        return credentials(
            self.broker_url, device, self.registry.profiles.get(device.profile), secret
        )

    async def add(self, device: Device, actor: str) -> Enrolment:
        async with self._lock:
            if not self.enabled:
                return Enrolment(await self.registry.add_device(device, actor), None)
            await self.registry.check_new_device(device)
            secret = new_secret()
            secret_hash = await hash_secret(secret)
            await self.broker.create_device(device, secret)
            try:
                added = await self.registry.add_device(device, actor, secret_hash=secret_hash)
            except BaseException:
                await self.broker.remove_device(device.id)
                raise
            return Enrolment(added, self._credentials(added, secret))

    async def rotate(self, device_id: str, actor: str) -> Credentials:
        async with self._lock:
            device = await self.registry.get_device(device_id)
            if not self.enabled:
                raise ConflictError(_ACCOUNTS_OFF)
            if self.registry.access(device_id).revoked_ms is not None:
                raise ConflictError(f"device {device_id!r} is revoked; register a new device id")
            secret = new_secret()
            secret_hash = await hash_secret(secret)
            await self.broker.set_device_secret(device, secret)
            await self.registry.set_secret(device_id, secret_hash, actor)
            return self._credentials(device, secret)

    async def revoke(self, device_id: str, actor: str) -> DeviceAccess:
        async with self._lock:
            access = await self.registry.revoke(device_id, actor)
            await self.broker.remove_device(device_id)
            return access

    async def verify(self, device_id: str, secret: str) -> bool:
        """Whether ``secret`` is the device's current one (and it is not revoked)."""
        try:
            await self.registry.get_device(device_id)
        except NotFoundError:
            return False
        if self.registry.access(device_id).revoked_ms is not None:
            return False
        secret_hash = await self.registry.secret_hash(device_id)
        return secret_hash is not None and await verify_secret(secret, secret_hash)


def device_accounts(settings: Settings, registry: Registry) -> DeviceAccounts:
    return DeviceAccounts(registry, broker_accounts(settings), device_broker_url(settings))
