"""MQTT over TLS against a real Mosquitto, with a CA made up for each test.

This is how a town office runs it: its own CA, a certificate on the broker, the
CA file handed to the gateway (``mqtt_ca_file``) and to each device. A client that
does not trust that CA must not get through, whoever it is.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import shlex
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import Settings, load_settings
from gateway.service import Gateway
from tests.conftest import TOKEN, LiveGateway, eventually, run_gateway
from tests.servers import Mosquitto, TlsListener, dynsec_config, free_port

SITE = {"id": "mine-1", "name": "矿", "village": "长城社区", "industry": "mine"}
METRIC = "residual_current_ma"


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path
    other_ca: Path  # a CA that signed nothing of ours


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def _ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_pki(directory: Path) -> Pki:
    ca_key, ca_cert = _ca("EWG test town CA")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("broker.ewg.test"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.OID_SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _, other = _ca("Somebody else's CA")
    pki = Pki(
        directory / "ca.crt",
        directory / "broker.crt",
        directory / "broker.key",
        directory / "other-ca.crt",
    )
    pki.ca.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    pki.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.key, key)
    pki.other_ca.write_bytes(other.public_bytes(serialization.Encoding.PEM))
    return pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    return make_pki(directory)


@pytest.fixture
def tls_broker(tmp_path: Path, pki: Pki) -> Iterator[Mosquitto]:
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    broker = Mosquitto(directory, tls=TlsListener(pki.cert, pki.key)).start()
    yield broker
    broker.stop()


def tls_settings(tmp_path: Path, broker_url: str, ca_file: Path, **extra: Any) -> Settings:
    return load_settings(
        broker_url=broker_url,
        mqtt_ca_file=ca_file,
        data_dir=tmp_path / "data",
        http_port=free_port(),
        api_token=TOKEN,
        mqtt_client_id=f"ewg-tls-{free_port()}",
        **extra,
    )


def trusting(ca_file: Path | None) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


async def register(live: LiveGateway, device_id: str) -> dict[str, Any]:
    assert (await live.client.post("/api/sites", json=SITE)).status_code == 201
    created = await live.client.post(
        "/api/devices",
        json={"id": device_id, "profile": "electrical_fire_monitor", "site_id": SITE["id"]},
    )
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def arrived(live: LiveGateway, device_id: str) -> list[float]:
    async def stored() -> list[float]:
        rows = (
            await live.client.get(
                "/api/telemetry",
                params={"device_id": device_id, "metric": METRIC, "start_ms": 0},
            )
        ).json()
        return [r["value"] for r in rows]

    return await eventually(stored)


async def test_gateway_and_device_talk_over_tls(
    tmp_path: Path, pki: Pki, tls_broker: Mosquitto
) -> None:
    settings = tls_settings(tmp_path, tls_broker.tls_url, pki.ca)
    async with run_gateway(settings) as live:
        health = (await live.client.get("/api/health")).json()
        assert health["broker"]["connected"] and health["broker"]["url"].startswith("mqtts://")
        await register(live, "efm-1")
        assert tls_broker.tls_port is not None
        async with aiomqtt.Client(
            "127.0.0.1", tls_broker.tls_port, identifier="efm-1", tls_context=trusting(pki.ca)
        ) as efm:
            body = json.dumps({"values": {METRIC: 152}})
            await efm.publish("ewg/v1/efm-1/telemetry", body, qos=1)
        assert await arrived(live, "efm-1") == [152.0]


async def test_a_client_that_does_not_trust_the_ca_gets_nowhere(
    tmp_path: Path, pki: Pki, tls_broker: Mosquitto
) -> None:
    assert tls_broker.tls_port is not None
    for ca in (None, pki.other_ca):  # the system's CAs, somebody else's CA
        with pytest.raises(aiomqtt.MqttError, match="certificate verify failed"):
            async with aiomqtt.Client(
                "127.0.0.1", tls_broker.tls_port, identifier="stranger", tls_context=trusting(ca)
            ):
                pass

    # The gateway with the wrong CA file does not connect, and says why.
    settings = tls_settings(tmp_path, tls_broker.tls_url, pki.other_ca)
    async with Gateway(settings) as gateway:

        async def failed() -> str | None:
            return gateway.source.last_error

        assert "certificate verify failed" in await eventually(failed)
        health = gateway.health()
        assert health["status"] == "degraded" and not gateway.source.connected


async def test_device_accounts_over_tls_with_the_printed_example(tmp_path: Path, pki: Pki) -> None:
    """Production shape: accounts via the plugin, all of it (admin commands too) over TLS;
    the mosquitto_pub line the operator is given works as printed next to ca.crt."""
    directory = tmp_path / "mosquitto"
    directory.mkdir()
    broker = Mosquitto(
        directory,
        allow_anonymous=False,
        extra_config=dynsec_config(directory, "ewg-admin", "admin-pw"),
        tls=TlsListener(pki.cert, pki.key),
    ).start()
    try:
        assert broker.tls_port is not None
        settings = tls_settings(
            tmp_path,
            f"mqtts://ewg-gateway:gw-pw@127.0.0.1:{broker.tls_port}",
            pki.ca,
            broker_accounts="dynsec",
            broker_admin_username="ewg-admin",
            broker_admin_password="admin-pw",
        )
        async with run_gateway(settings) as live:
            creds = (await register(live, "efm-1"))["credentials"]
            assert creds["broker_url"] == f"mqtts://127.0.0.1:{broker.tls_port}"
            assert "--cafile ca.crt" in creds["mosquitto_pub"]
            pub = await asyncio.create_subprocess_exec(
                *shlex.split(creds["mosquitto_pub"]),
                cwd=pki.ca.parent,
                stderr=asyncio.subprocess.PIPE,
            )
            _, err = await pub.communicate()
            assert pub.returncode == 0, err
            words = shlex.split(creds["mosquitto_pub"])
            sent = json.loads(words[words.index("-m") + 1])["values"][METRIC]
            assert await arrived(live, "efm-1") == [sent]
    finally:
        broker.stop()
