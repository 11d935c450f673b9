"""A small TLS-terminating TCP proxy in front of the lab's Prefect server.

    python -m tomato_cli.orchestration.tls_proxy --listen HOST:PORT --to HOST:PORT \
        --cert cert.pem --key key.pem

Bytes pass unchanged both ways, so HTTP, keep-alive and websockets all work. Started by
``tomato lab-server start --tls-port N``; a real lab may use nginx, Caddy or stunnel instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ssl
import sys

CHUNK = 65536


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()  # a half-close reaches the other side; the answer still comes
    except (ConnectionError, ssl.SSLError, OSError):
        pass


async def _handle(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    target: tuple[str, int],
) -> None:
    try:
        upstream_reader, upstream_writer = await asyncio.open_connection(*target)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        _pipe(client_reader, upstream_writer), _pipe(upstream_reader, client_writer)
    )
    for writer in (upstream_writer, client_writer):
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
            await writer.wait_closed()


async def serve(listen: tuple[str, int], target: tuple[str, int], cert: str, key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = await asyncio.start_server(
        lambda r, w: _handle(r, w, target), listen[0], listen[1], ssl=context
    )
    print(f"TLS proxy on {listen[0]}:{listen[1]} -> {target[0]}:{target[1]}", flush=True)
    async with server:
        await server.serve_forever()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tls_proxy")
    parser.add_argument("--listen", type=_address, required=True)
    parser.add_argument("--to", type=_address, required=True)
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.listen, args.to, args.cert, args.key))
    except (OSError, ssl.SSLError) as exc:
        print(f"TLS proxy cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
