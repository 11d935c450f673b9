"""GET routes of the RPC server (what a browser fetches), beside its POST commands."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tomato_cli.rpc import HttpResponse, Reply, RpcServer, call


@pytest.fixture
def server() -> Iterator[RpcServer]:
    srv = RpcServer("127.0.0.1", 0, lambda cmd, args: Reply(True, cmd, args))
    seen: list[tuple[str, dict[str, str]]] = []

    def route(rest: str, query: dict[str, str]) -> HttpResponse:
        seen.append((rest, query))
        if rest == "boom":
            raise RuntimeError("drawing failed")
        return HttpResponse(200, b"<svg/>", "image/svg+xml", {"Cache-Control": "no-store"})

    srv.add_get_route("/plot/", route)
    srv.seen = seen  # type: ignore[attr-defined]
    srv.start_background()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(server: RpcServer, path: str) -> tuple[int, bytes, dict[str, str]]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
            return r.status, r.read(), dict(r.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), dict(exc.headers)


def test_a_route_gets_the_rest_of_the_path_and_the_query(server: RpcServer) -> None:
    status, body, headers = get(server, "/plot/5.svg?run=abc&x=1")
    assert (status, body) == (200, b"<svg/>")
    assert headers["Content-Type"] == "image/svg+xml"
    assert headers["Cache-Control"] == "no-store"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert server.seen == [("5.svg", {"run": "abc", "x": "1"})]  # type: ignore[attr-defined]


def test_unknown_paths_are_404_and_a_failing_route_is_500(server: RpcServer) -> None:
    assert get(server, "/")[0] == 404
    assert get(server, "/other/5.svg")[0] == 404
    status, body, _ = get(server, "/plot/boom")
    assert status == 500 and b"RuntimeError: drawing failed" in body
    # the server goes on answering commands
    assert call(server.port, "hello", x=1) == Reply(True, "hello", {"x": 1})


def test_only_loopback_names_are_served(server: RpcServer) -> None:
    import http.client

    for host, status in (
        (f"127.0.0.1:{server.port}", 200),
        (f"localhost:{server.port}", 200),
        ("127.0.0.2", 200),
        (f"[::1]:{server.port}", 200),
        ("evil.example:80", 403),  # a rebound name: its page must not read the plot
        ("", 403),
    ):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.putrequest("GET", "/plot/5.svg", skip_host=True)
        conn.putheader("Host", host)
        conn.endheaders()
        assert conn.getresponse().status == status, host
        conn.close()


def post(server: RpcServer, body: bytes, content_type: str, host: str) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.putrequest("POST", "/", skip_host=True)
    conn.putheader("Host", host)
    conn.putheader("Content-Type", content_type)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    response = conn.getresponse()
    try:
        return response.status, response.read()
    finally:
        conn.close()


def test_commands_come_only_as_json_to_our_own_name() -> None:
    """A web page may POST text/plain to loopback unasked (no CORS preflight): refused."""
    handled: list[str] = []
    srv = RpcServer("127.0.0.1", 0, lambda cmd, args: handled.append(cmd) or Reply(True, cmd))
    srv.start_background()
    try:
        body = b'{"cmd": "cancel", "args": {"jobid": 1}}'
        own = f"127.0.0.1:{srv.port}"
        for content_type, host in (
            ("text/plain", own),
            ("application/x-www-form-urlencoded", own),
            ("", own),
            ("application/json", "evil.example"),
        ):
            status, text = post(srv, body, content_type, host)
            assert status == 403, (content_type, host)
            assert b"JSON sent to this server's own address" in text
        assert handled == []
        status, text = post(srv, body, "application/json; charset=utf-8", own)
        assert status == 200 and b'"success": true' in text
        assert handled == ["cancel"]
    finally:
        srv.shutdown()
        srv.server_close()
