"""The MQTT adapter: the only module that knows aiomqtt and paho exist.

Messages leave here as our own frozen :class:`~gateway.model.InboundMessage` plus an
``ack`` callable. The gateway subscribes with QoS 1 on a persistent session and
acknowledges a message only after the pipeline has made it durable (stored or
dead-lettered), so a crash between receipt and storage makes the broker deliver
it again instead of losing it. Reconnection with backoff lives here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiomqtt

from gateway.errors import ConfigError
from gateway.model import InboundMessage, now_ms

log = logging.getLogger(__name__)

Ack = Callable[[], None]
Handler = Callable[[InboundMessage, Ack], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerAddress:
        """Parse ``mqtt://[user:pass@]host[:port]`` (or ``mqtts://`` for TLS).

        >>> BrokerAddress.parse("mqtt://127.0.0.1:1884")
        BrokerAddress(host='127.0.0.1', port=1884, tls=False, username=None, password=None)
        >>> BrokerAddress.parse("mqtts://gw:s3cret@broker.example").port
        8883
        """
        parts = urlsplit(url)
        shown = without_credentials(url)  # error messages end up in logs
        if parts.scheme not in ("mqtt", "mqtts", "tcp", "ssl"):
            raise ConfigError(f"broker URL {shown!r} must start with mqtt:// or mqtts://")
        tls = parts.scheme in ("mqtts", "ssl")
        if not parts.hostname:
            raise ConfigError(f"broker URL {shown!r} has no host")
        try:
            port = parts.port or (8883 if tls else 1883)
        except ValueError:
            raise ConfigError(f"broker URL {shown!r} has a bad port") from None
        username = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(parts.hostname, port, tls, username, password)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """How to trust the broker on ``mqtts://`` (and, rarely, how to prove who we are).

    ``ca_file`` is the CA that signed the broker's certificate; without it the system's
    store is used, which is right for a broker with a public certificate and wrong for
    the usual self-signed town-hall CA. Host names are always checked and there is
    deliberately no "insecure" switch: a gateway that trusts any certificate would hand
    its broker password to whoever sits in the middle.
    """

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None

    def context(self) -> ssl.SSLContext:
        """Build the context (reads files: call it off the event loop)."""
        try:
            context = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if self.cert_file is not None:
                context.load_cert_chain(
                    str(self.cert_file), str(self.key_file) if self.key_file else None
                )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load the MQTT TLS files: {exc}") from exc
        return context


async def tls_context(address: BrokerAddress, tls: TlsOptions | None) -> ssl.SSLContext | None:
    """The SSL context for ``address`` (None for plain ``mqtt://``), built in a thread."""
    if not address.tls:
        return None
    return await asyncio.to_thread((tls or TlsOptions()).context)


def without_credentials(url: str) -> str:
    """The broker URL safe to show or log: any ``user:password@`` removed.

    >>> without_credentials("mqtts://gw:s3cret@broker.example:8883")
    'mqtts://broker.example:8883'
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class MqttSource:
    """Subscribes to the device topics and hands every message to ``handler``.

    ``run()`` keeps the connection alive for as long as it is awaited, reconnecting
    with exponential backoff; ``connected`` tells the health endpoint how it goes.
    """

    def __init__(
        self,
        address: BrokerAddress,
        *,
        client_id: str,
        topics: list[str],
        qos: int = 1,
        max_backoff_s: float = 30.0,
        tls: TlsOptions | None = None,
    ) -> None:
        self.address = address
        self.tls = tls
        self._tls_context: ssl.SSLContext | None = None
        self.client_id = client_id
        self.topics = topics
        self.qos = qos
        self.max_backoff_s = max_backoff_s
        self.connected = False
        self.connects = 0
        self.last_error: str | None = None
        self._stopping = asyncio.Event()  # stop taking messages
        self._closing = asyncio.Event()  # then disconnect

    def _client(self, tls_context: ssl.SSLContext | None) -> aiomqtt.Client:
        return aiomqtt.Client(
            self.address.host,
            self.address.port,
            identifier=self.client_id,
            username=self.address.username,
            password=self.address.password,
            clean_session=False,  # persistent session: the broker queues QoS 1 while we are away
            keepalive=30,
            tls_context=tls_context,
        )

    def stop_reading(self) -> None:
        """Take no more messages, but stay connected so the last acks still reach the broker."""
        self._stopping.set()

    def close(self) -> None:
        """Disconnect (after the last batch was acknowledged)."""
        self._stopping.set()
        self._closing.set()

    async def run(self, handler: Handler) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            try:
                await self._session(handler)
                backoff = 0.5
            except Exception as exc:  # broker gone, unreadable TLS files, or a handler failure
                self.connected = False
                self.last_error = str(exc)
                if not isinstance(exc, aiomqtt.MqttError | ConfigError):
                    # Unacknowledged messages come back from the broker after the reconnect.
                    log.exception("ingestion failed; reconnecting")
                log.warning(
                    "MQTT connection to %s:%s lost (%s); retrying in %.1fs",
                    self.address.host,
                    self.address.port,
                    exc,
                    backoff,
                )
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)

    async def _session(self, handler: Handler) -> None:
        if self.address.tls and self._tls_context is None:
            self._tls_context = await tls_context(self.address, self.tls)
        client = self._client(self._tls_context)
        # paho acknowledges QoS 1 on receipt unless told otherwise; we ack after storing.
        client._client.manual_ack_set(True)
        async with client:
            self.connected = True
            self.connects += 1
            self.last_error = None
            log.info(
                "connected to MQTT broker %s:%s as %s",
                self.address.host,
                self.address.port,
                self.client_id,
            )
            for topic in self.topics:
                await client.subscribe(topic, qos=self.qos)
            reading = asyncio.create_task(self._read(client, handler))
            stopping = asyncio.create_task(self._stopping.wait())
            try:
                await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if reading.done():
                reading.result()  # the connection dropped: raise, and reconnect
                return
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            await self._closing.wait()  # the final acks go out on this connection
        self.connected = False

    @staticmethod
    async def _read(client: aiomqtt.Client, handler: Handler) -> None:
        paho = client._client
        async for message in client.messages:
            inbound = InboundMessage(
                topic=str(message.topic),
                payload=bytes(message.payload)
                if isinstance(message.payload, bytes | bytearray)
                else str(message.payload).encode(),
                qos=message.qos,
                retain=message.retain,
                received_ms=now_ms(),
            )
            await handler(inbound, _acker(paho, message.mid, message.qos))


def _acker(paho: object, mid: int, qos: int) -> Ack:
    def ack() -> None:
        if qos > 0:
            paho.ack(mid, qos)  # type: ignore[attr-defined]

    return ack
