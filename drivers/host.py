"""The driver host process: all components of one driver type behind an RPC server.

Run as ``python -m drivers.host --driver NAME --port PORT [--settings JSON]
[--logfile PATH]``. Components are named by key ``"<address>,<channel>"``. Each running
task samples in its own thread (see :mod:`drivers.sampler` for the schedule and the
sample-count rule); samples stay buffered until ``task_data`` collects them, as one block
of scalars and traces per reply (see :mod:`drivers.samples` for its layout).

``set_attr`` is allowed while a task runs on the component (the change shows up in the
following samples). Set ``TOMATO_DEBUG_COMMANDS=1`` to enable ``debug_crash``,
``debug_segfault`` and ``debug_hang`` for fault-injection tests.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time

from drivers.host_commands import DriverHost
from drivers.registry import load_driver
from tomato_cli.rpc import LOOPBACK, RpcServer

log = logging.getLogger("drivers.host")
# the commands it answers: drivers.host_commands.DriverHost


def argument_parser(prog: str = "python -m drivers.host") -> argparse.ArgumentParser:
    """The command line of a driver host."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--driver", required=True, help="driver name (as the devices file has it)")
    parser.add_argument("--port", required=True, type=int)
    parser.add_argument("--settings", default="{}", help="driver settings as a JSON object")
    parser.add_argument("--logfile", default=None)
    parser.add_argument("--verbosity", default="INFO")
    return parser


def setup_logging(args: argparse.Namespace) -> None:
    """Log to ``args.logfile`` at ``args.verbosity``, naming the driver in every line."""
    logging.basicConfig(
        filename=args.logfile,
        level=getattr(logging, str(args.verbosity).upper(), logging.INFO),
        format=f"%(asctime)s %(levelname)s [{args.driver}:%(threadName)s] %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    """Run a driver host until ``shutdown``, SIGTERM or SIGINT."""
    args = argument_parser().parse_args(argv)
    setup_logging(args)
    try:
        settings = json.loads(args.settings)
        if not isinstance(settings, dict):
            raise ValueError("not a JSON object")
        driver = load_driver(args.driver)(settings)
    except Exception as exc:
        log.error("cannot start driver %r: %s", args.driver, exc)
        print(f"cannot start driver {args.driver!r}: {exc}", file=sys.stderr)
        return 2
    debug = os.environ.get("TOMATO_DEBUG_COMMANDS") == "1"
    return serve(DriverHost(driver, debug_commands=debug, name=args.driver), args.port)


def serve(host: DriverHost, port: int) -> int:
    """Answer commands on ``127.0.0.1:port`` until ``shutdown``, SIGTERM or SIGINT."""
    try:
        server = RpcServer(LOOPBACK, port, host.handle)
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", LOOPBACK, port, exc)
        print(f"cannot listen on {LOOPBACK}:{port}: {exc}", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: host.stopping.set())
    server.start_background()
    log.info(
        "driver host %r listening on %s:%d (pid %d)", host.name, LOOPBACK, server.port, os.getpid()
    )
    while not host.stopping.wait(0.1):
        host.idle_sweep()
    host.stop_all()
    try:
        host.driver.close()
    except Exception:
        log.exception("closing driver %r failed", host.name)
    time.sleep(0.1)  # let the reply to ``shutdown`` go out
    server.shutdown()
    server.server_close()
    log.info("driver host %r stopped", host.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
