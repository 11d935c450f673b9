"""A thin client for one driver host."""

from __future__ import annotations

from typing import Any

from tomato_cli.rpc import LOOPBACK, call


class DriverError(RuntimeError):
    """The driver host answered with a failure."""


class DriverClient:
    """Talk to the driver host listening on ``127.0.0.1:port``."""

    def __init__(self, port: int, timeout: float = 10.0, host: str = LOOPBACK):
        self.port = port
        self.timeout = timeout
        self.host = host

    def call(self, cmd: str, **args: Any) -> Any:
        """Run ``cmd`` and return its data; raise :class:`DriverError` on failure.

        ``tomato_cli.rpc.Unreachable`` propagates if the host does not answer.
        """
        reply = call(self.port, cmd, timeout=self.timeout, host=self.host, **args)
        if not reply.success:
            raise DriverError(reply.msg)
        return reply.data

    def __repr__(self) -> str:
        return f"DriverClient(port={self.port})"
