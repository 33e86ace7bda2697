"""Real local servers that notifications are sent to: an HTTP receiver and an SMTP server.

Both listen on a free loopback port and record what arrives, so a test asserts what a
person (or a vendor's robot API) would actually have received. Nothing here talks to
anything outside 127.0.0.1.
"""

from __future__ import annotations

import email
import email.policy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.servers import free_port


@dataclass(frozen=True, slots=True)
class Received:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8"))


@dataclass(slots=True)
class Answer:
    status: int = 200
    body: Any = field(default_factory=lambda: {"errcode": 0, "errmsg": "ok"})
    #: When set, the handler waits for it before answering (a hung server, no timers).
    hold: threading.Event | None = None


class HttpReceiver:
    """A threaded stdlib HTTP server; ``answer(path, ...)`` sets what a path responds."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._answers: dict[str, Answer] = {}
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with receiver._lock:
                    receiver.received.append(
                        Received("POST", parts.path, query, dict(self.headers.items()), body)
                    )
                    answer = receiver._answers.get(parts.path, Answer())
                if answer.hold is not None:
                    answer.hold.wait(30)
                raw = json.dumps(answer.body).encode()
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(
        self, path: str, status: int = 200, body: Any = None, hold: threading.Event | None = None
    ) -> None:
        with self._lock:
            self._answers[path] = Answer(
                status, {"errcode": 0, "errmsg": "ok"} if body is None else body, hold
            )

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[tuple[Envelope, EmailMessage]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append((envelope, parsed))
        return "250 OK"


class SmtpServer:
    """aiosmtpd on a free loopback port, in its own thread; ``messages`` as parsed e-mail."""

    def __init__(self) -> None:
        self._box = _Mailbox()
        self._controller = Controller(self._box, hostname="127.0.0.1", port=free_port())

    @property
    def port(self) -> int:
        return int(self._controller.port)

    @property
    def messages(self) -> list[tuple[Envelope, EmailMessage]]:
        return self._box.messages

    def start(self) -> SmtpServer:
        self._controller.start()  # returns once the server answers on its port
        return self

    def stop(self) -> None:
        self._controller.stop()


def plain_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None and isinstance(part, EmailMessage)
    return str(part.get_content())


def iter_bodies(received: list[Received]) -> Iterator[Any]:
    for r in received:
        yield r.json()
