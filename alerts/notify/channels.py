"""How a message leaves the gateway: one class per channel type, all with ``send(message)``.

``send`` returns a short account of success ("HTTP 200, errcode 0") or raises
:class:`DeliveryError` with what went wrong; the delivery queue records either, retries
failures, and bounds each attempt with a timeout. Channels never retry by themselves.

Which library does the work, and why:

* E-mail and generic ``apprise`` URLs go through apprise (``async_notify``; its plugins run
  in a worker thread, off the event loop). Apprise handles SMTP, TLS modes and MIME.
* DingTalk and WeCom robots are a plain HTTP POST of the vendors' documented robot JSON
  (httpx). Apprise's ``dingtalk://`` and ``wecombot://`` hard-code the vendors' hosts, so
  they cannot be pointed at a relay, a proxy in a government network, or a test server;
  and they count any HTTP 200 as delivered, while both vendors answer HTTP 200 with a
  non-zero ``errcode`` when a message is refused (wrong keyword or signature, rate limit)
  — a fire alarm that silently went nowhere.
* EWG's own JSON webhook is also httpx: apprise's ``json://`` has a fixed envelope
  (title, message, type) and cannot carry the alert's fields for a machine to route on.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import apprise
import httpx

from alerts.alerting_config import (
    AlertingOptions,
    AppriseChannelConfig,
    ChannelConfig,
    DingTalkChannelConfig,
    EmailChannelConfig,
    Language,
    LogChannelConfig,
    SmsChannelConfig,
    WebhookChannelConfig,
    WeComChannelConfig,
)
from alerts.notify.templates import Message
from gateway.errors import ConfigError

log = logging.getLogger(__name__)

#: WeCom robot text messages are cut by the vendor at 2048 bytes of UTF-8.
WECOM_TEXT_MAX_BYTES = 2048
#: DingTalk documents no exact limit; stay well under what robots accept.
DINGTALK_TEXT_MAX_BYTES = 18000


class DeliveryError(Exception):
    """One attempt failed; ``str(exc)`` is what the delivery log shows."""


class Channel:
    """Base of every channel: a name from the config, and what it needs to address someone."""

    type: ClassVar[str]
    #: What a recipient must have for this channel to reach them (None: nothing).
    needs: ClassVar[Literal["phone", "email"] | None] = None

    def __init__(self, name: str, languages: list[Language]) -> None:
        self.name = name
        self.languages = languages

    def endpoint(self) -> str:
        """Where it sends, without credentials or query (safe to show to any operator)."""
        return ""

    def public(self) -> dict[str, Any]:
        """The channel as the API shows it: never a token, password or full URL."""
        return {
            "name": self.name,
            "type": self.type,
            "endpoint": self.endpoint(),
            "languages": list(self.languages),
            "needs": self.needs,
        }

    async def send(self, message: Message) -> str:
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release what the channel holds (nothing, for most)."""


def _endpoint(url: str) -> str:
    """``scheme://host[:port]`` of a URL: the part of a webhook URL that is not a secret.

    >>> _endpoint("https://oapi.dingtalk.com/robot/send?access_token=abc")
    'https://oapi.dingtalk.com'
    >>> _endpoint("mailtos://ewg:pw@smtp.example.org:465?from=a@b")
    'mailtos://smtp.example.org:465'
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def _cut_utf8(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8, never inside a character.

    >>> _cut_utf8("火灾报警", 7)
    '火灾'
    """
    raw = text.encode("utf-8")
    if len(raw) <= max_bytes:
        return text
    return raw[:max_bytes].decode("utf-8", errors="ignore")


class LogChannel(Channel):
    """Writes the notification to the gateway log: visible, and never fails."""

    type = "log"

    def endpoint(self) -> str:
        return "gateway log"

    async def send(self, message: Message) -> str:
        log.info(
            "notification for alert %d to %s%s: %s",
            message.alert_id,
            message.recipient_en,
            f" ({message.contact_name})" if message.contact_name else "",
            message.title(self.languages),
        )
        return "written to the gateway log"


class _HttpChannel(Channel):
    """A channel that POSTs JSON with the gateway's shared httpx client."""

    def __init__(
        self, name: str, languages: list[Language], url: str, client: httpx.AsyncClient
    ) -> None:
        super().__init__(name, languages)
        self._url = url
        self._client = client

    def endpoint(self) -> str:
        return _endpoint(self._url)

    async def _post(
        self,
        body: dict[str, Any],
        url: httpx.URL | str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        try:
            response = await self._client.post(
                url or self._url, json=body, headers=dict(headers or {})
            )
        except httpx.TimeoutException as exc:
            raise DeliveryError(f"timed out: {type(exc).__name__}") from exc
        except httpx.HTTPError as exc:
            raise DeliveryError(f"cannot reach {self.endpoint()}: {exc!s}") from exc
        if not response.is_success:
            raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}")
        return response

    def _vendor_ok(self, response: httpx.Response, vendor: str) -> str:
        """Robot APIs answer HTTP 200 even when they refuse: the verdict is ``errcode``."""
        try:
            answer = response.json()
        except ValueError as exc:
            raise DeliveryError(f"{vendor} answered HTTP 200 without JSON") from exc
        if not isinstance(answer, dict):
            raise DeliveryError(f"{vendor} answered HTTP 200 with {answer!r:.100}")
        code = answer.get("errcode")
        if code != 0:
            raise DeliveryError(f"{vendor} refused: errcode {code}, {answer.get('errmsg', '')}")
        return f"HTTP {response.status_code}, errcode 0"


class WebhookChannel(_HttpChannel):
    """EWG's JSON: the alert's fields, who is told and why, both texts and the link."""

    type = "webhook"

    def __init__(
        self,
        name: str,
        languages: list[Language],
        url: str,
        client: httpx.AsyncClient,
        headers: Mapping[str, str],
    ) -> None:
        super().__init__(name, languages, url, client)
        self._headers = dict(headers)

    async def send(self, message: Message) -> str:
        body = {
            "version": "1",
            "source": "ewg",
            "alert": message.alert,
            "link": message.link,
            "reason": message.reason,
            "recipient": {
                "role": message.recipient,
                "title_zh": message.recipient_zh,
                "title_en": message.recipient_en,
                "name": message.contact_name,
                "phones": list(message.phones),
                "emails": list(message.emails),
            },
            "title": message.title(self.languages),
            "text": message.text(self.languages),
            "titles": {k: v for k, v in message.titles.items() if k in self.languages},
            "texts": {k: v for k, v in message.bodies.items() if k in self.languages},
        }
        response = await self._post(body, headers=self._headers)
        return f"HTTP {response.status_code}"


class DingTalkChannel(_HttpChannel):
    """DingTalk custom robot: a markdown message, @-mentioning the recipient's phones."""

    type = "dingtalk"

    def __init__(
        self,
        name: str,
        languages: list[Language],
        url: str,
        client: httpx.AsyncClient,
        secret: str | None,
    ) -> None:
        super().__init__(name, languages, url, client)
        self._secret = secret

    def payload(self, message: Message) -> dict[str, Any]:
        """The robot JSON (``msgtype: markdown``); mentions must also appear in the text."""
        title = message.title(self.languages)
        # Markdown needs a blank line for a line break; keep one line per field.
        lines = message.text(self.languages).replace("\n", "\n\n")
        mentions = " ".join(f"@{p}" for p in message.phones)
        text = f"### {title}\n\n{lines}" + (f"\n\n{mentions}" if mentions else "")
        return {
            "msgtype": "markdown",
            "markdown": {"title": title, "text": _cut_utf8(text, DINGTALK_TEXT_MAX_BYTES)},
            "at": {"atMobiles": list(message.phones), "isAtAll": False},
        }

    def signed_url(self, now_ms: int | None = None) -> httpx.URL:
        """The webhook URL with ``timestamp`` and ``sign`` (加签) when a secret is set.

        sign = base64(HMAC-SHA256(key=secret, msg=f"{timestamp}\\n{secret}")), URL-encoded;
        DingTalk refuses a timestamp more than an hour from its own clock, so this is the
        wall clock, not the gateway's injectable one.
        """
        url = httpx.URL(self._url)
        if not self._secret:
            return url
        timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
        digest = hmac.new(
            self._secret.encode(), f"{timestamp}\n{self._secret}".encode(), hashlib.sha256
        ).digest()
        return url.copy_merge_params(
            {"timestamp": timestamp, "sign": base64.b64encode(digest).decode()}
        )

    async def send(self, message: Message) -> str:
        response = await self._post(self.payload(message), url=self.signed_url())
        return self._vendor_ok(response, "DingTalk")


class WeComChannel(_HttpChannel):
    """WeCom group robot: a text message (the type that can @-mention by phone number)."""

    type = "wecom"

    def payload(self, message: Message) -> dict[str, Any]:
        content = f"{message.text(self.languages)}"
        return {
            "msgtype": "text",
            "text": {
                "content": _cut_utf8(content, WECOM_TEXT_MAX_BYTES),
                "mentioned_mobile_list": list(message.phones),
            },
        }

    async def send(self, message: Message) -> str:
        response = await self._post(self.payload(message))
        return self._vendor_ok(response, "WeCom")


class SmsChannel(_HttpChannel):
    """An SMS relay over HTTP: ``{"phones", "content", "alert_id", "link"}``, 2xx = accepted."""

    type = "sms"
    needs = "phone"

    def __init__(
        self,
        name: str,
        languages: list[Language],
        url: str,
        client: httpx.AsyncClient,
        token: str | None,
    ) -> None:
        super().__init__(name, languages, url, client)
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def send(self, message: Message) -> str:
        if not message.phones:
            raise DeliveryError("no phone number to send to")
        body = {
            "phones": list(message.phones),
            "content": message.text(self.languages),
            "alert_id": message.alert_id,
            "link": message.link,
        }
        response = await self._post(body, headers=self._headers)
        return f"HTTP {response.status_code}, {len(message.phones)} phone(s)"


class _AppriseChannel(Channel):
    """Delivery through apprise's ``async_notify``; failures carry apprise's own log lines."""

    def __init__(self, name: str, languages: list[Language], url: str, timeout_s: float) -> None:
        super().__init__(name, languages)
        self._url = url
        self._timeout_s = timeout_s
        if not apprise.Apprise().add(url):
            raise ConfigError(f"channel {name}: apprise does not accept this URL")

    def endpoint(self) -> str:
        return _endpoint(self._url)

    def _target_url(self, message: Message) -> str:
        return self._url

    async def send(self, message: Message) -> str:
        notifier = apprise.Apprise()
        if not notifier.add(self._target_url(message)):
            raise DeliveryError("apprise does not accept the channel URL")
        result = await notifier.async_notify(
            body=message.text(self.languages),
            title=message.title(self.languages),
            body_format=apprise.NotifyFormat.TEXT,
            timeout=self._timeout_s,
        )
        if result:
            return "accepted by apprise"
        raise DeliveryError(_apprise_failure(result))


def _apprise_failure(result: Any) -> str:
    """Apprise's warnings for a failed call (2.x results carry them), else a plain verdict."""
    lines: list[str] = []
    logs = getattr(result, "logs", None)
    if callable(logs):
        try:
            lines = [e.message for e in logs() if getattr(e, "level", "") in ("WARNING", "ERROR")]
        except Exception:  # the detail is a courtesy; the failure is what counts
            lines = []
    status = getattr(result, "status", None)
    verdict = f"apprise: {getattr(status, 'name', 'FAILURE').lower()}"
    return verdict + (": " + "; ".join(dict.fromkeys(lines))[:300] if lines else "")


class EmailChannel(_AppriseChannel):
    """E-mail: the apprise ``mailto(s)://`` URL with the recipient's addresses as ``to=``."""

    type = "email"
    needs = "email"

    def _target_url(self, message: Message) -> str:
        if not message.emails:
            raise DeliveryError("no e-mail address to send to")
        parts = urlsplit(self._url)
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "to"]
        query.append(("to", ",".join(message.emails)))
        return urlunsplit(parts._replace(query=urlencode(query)))


class AppriseChannel(_AppriseChannel):
    """Any other apprise URL: the message's title and text, without per-person addressing."""

    type = "apprise"


def build_channel(
    name: str, config: ChannelConfig, options: AlertingOptions, client: httpx.AsyncClient
) -> Channel:
    """The channel for one ``channels:`` entry; a URL apprise rejects is a ConfigError."""
    languages = list(config.languages or options.languages)
    if isinstance(config, LogChannelConfig):
        return LogChannel(name, languages)
    if isinstance(config, WebhookChannelConfig):
        headers = {k: v.get_secret_value() for k, v in config.headers.items()}
        return WebhookChannel(name, languages, config.url.get_secret_value(), client, headers)
    if isinstance(config, DingTalkChannelConfig):
        secret = config.secret.get_secret_value() if config.secret else None
        return DingTalkChannel(name, languages, config.url.get_secret_value(), client, secret)
    if isinstance(config, WeComChannelConfig):
        return WeComChannel(name, languages, config.url.get_secret_value(), client)
    if isinstance(config, SmsChannelConfig):
        token = config.token.get_secret_value() if config.token else None
        return SmsChannel(name, languages, config.url.get_secret_value(), client, token)
    if isinstance(config, EmailChannelConfig):
        return EmailChannel(name, languages, config.url.get_secret_value(), options.send_timeout_s)
    if isinstance(config, AppriseChannelConfig):
        return AppriseChannel(
            name, languages, config.url.get_secret_value(), options.send_timeout_s
        )
    raise ConfigError(f"channel {name}: unknown type")  # pragma: no cover - union is closed


def http_client(options: AlertingOptions) -> httpx.AsyncClient:
    """One pooled client for every HTTP channel; proxies only as configured, never from env."""
    return httpx.AsyncClient(
        timeout=options.send_timeout_s,
        trust_env=False,
        proxy=options.http_proxy,
        follow_redirects=False,
        headers={"User-Agent": "ewg-notify/1"},
    )
