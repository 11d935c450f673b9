"""A tiny JSON-over-HTTP request/reply protocol on loopback.

Every process of tomato (daemon, driver hosts) answers ``POST /`` with a JSON body
``{"cmd": str, "args": {...}}`` and replies with ``{"success": bool, "msg": str, "data": ...}``.
A server may also answer ``GET`` on paths it registers (:meth:`RpcServer.add_get_route`),
for things a browser fetches, such as the daemon's live plots.
It uses only the standard library so that the CLIs start fast.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LOOPBACK = "127.0.0.1"


@dataclass
class Reply:
    success: bool
    msg: str = ""
    data: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"success": self.success, "msg": self.msg, "data": self.data}


@dataclass
class Unreachable(Exception):
    """The peer did not answer (not running, wrong port, or timed out)."""

    url: str
    reason: str = field(default="")

    def __str__(self) -> str:
        return f"no answer from {self.url}: {self.reason}"


class RpcError(Exception):
    """Raised by handlers for an expected, user-facing failure; becomes a failed Reply."""


Handler = Callable[[str, dict[str, Any]], Reply]


@dataclass
class HttpResponse:
    """The answer to a GET: status, body and its content type, extra headers."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


# a GET route gets the rest of the path after its prefix and the query parameters
GetRoute = Callable[[str, dict[str, str]], HttpResponse]


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "isoformat"):
        return obj.isoformat()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=_json_default).encode()


class RpcServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def __init__(self, host: str, port: int, handler: Handler):
        self.handler = handler
        self.get_routes: dict[str, GetRoute] = {}
        super().__init__((host, port), _RequestHandler)

    def add_get_route(self, prefix: str, route: GetRoute) -> None:
        """Answer ``GET <prefix><rest>?<query>`` with ``route(rest, query)``."""
        self.get_routes[prefix] = route

    @property
    def port(self) -> int:
        return self.server_address[1]

    def start_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="rpc-server", daemon=True)
        thread.start()
        return thread


class _RequestHandler(BaseHTTPRequestHandler):
    server: RpcServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        return

    def do_GET(self) -> None:  # noqa: N802 - stdlib naming
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        prefixes = [p for p in self.server.get_routes if url.path.startswith(p)]
        if not self._own_name():
            # a page whose own name was made to point here (DNS rebinding) reads nothing
            response = HttpResponse(403, b"only this server's own addresses are served\n")
        elif not prefixes:
            response = HttpResponse(404, b"not found\n")
        else:
            prefix = max(prefixes, key=len)
            try:
                response = self.server.get_routes[prefix](url.path[len(prefix) :], query)
            except Exception as exc:  # a bug must not kill the server thread
                response = HttpResponse(500, f"{type(exc).__name__}: {exc}\n".encode())
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(response.body)

    def _own_name(self) -> bool:
        """Whether the Host header names loopback or the address this server is bound to."""
        name = _host_name(self.headers.get("Host", ""))
        return (
            name in ("localhost", "::1")
            or name.startswith("127.")
            or (name == str(self.server.server_address[0]).lower())
        )

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        length = int(self.headers.get("Content-Length", 0))
        body_bytes = self.rfile.read(length)
        content_type = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/json" or not self._own_name():
            # a web page can POST text/plain to loopback without asking first; only a
            # JSON request sent to our own name is a tomato client's
            self._refuse_post()
            return
        try:
            body = json.loads(body_bytes or b"{}")
            cmd = str(body["cmd"])
            args = dict(body.get("args") or {})
        except (ValueError, KeyError, TypeError) as exc:
            reply = Reply(False, f"malformed request: {exc}")
        else:
            try:
                reply = self.server.handler(cmd, args)
            except RpcError as exc:
                reply = Reply(False, str(exc))
            except Exception as exc:  # a bug must not kill the server thread
                reply = Reply(False, f"internal error in {cmd!r}: {type(exc).__name__}: {exc}")
        payload = dumps(reply.as_dict())
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _refuse_post(self) -> None:
        body = b"tomato commands are JSON sent to this server's own address\n"
        self.send_response(403)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _host_name(host: str) -> str:
    """The name in a Host header, without its port."""
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return host.split(":", 1)[0].lower()


def call(port: int, cmd: str, timeout: float = 10.0, host: str = LOOPBACK, **args: Any) -> Reply:
    """Send one command; raise :class:`Unreachable` if nobody answers."""
    url = f"http://{host}:{port}/"
    request = urllib.request.Request(
        url, data=dumps({"cmd": cmd, "args": args}), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read())
    except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
        raise Unreachable(url, str(getattr(exc, "reason", exc))) from None
    return Reply(bool(body.get("success")), str(body.get("msg", "")), body.get("data"))


def free_port(host: str = LOOPBACK) -> int:
    """A port that was free a moment ago on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
