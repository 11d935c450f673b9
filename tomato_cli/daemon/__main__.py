"""Entry point of the ``tomato-daemon`` process (started by ``tomato start``)."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from tomato_cli.models import ConfigError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tomato-daemon")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--appdir", type=Path, required=True)
    parser.add_argument("--settings", type=Path, required=True)
    parser.add_argument("--logdir", type=Path, required=True)
    parser.add_argument("--verbosity", default="INFO")
    args = parser.parse_args(argv)

    args.logdir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=args.logdir / f"daemon_{args.port}.log",
        level=getattr(logging, args.verbosity.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Prefect call is noise
    from tomato_cli.daemon.daemon import Daemon
    from tomato_cli.prefect_internals import PrefectInternalsChanged, check_version

    host = "127.0.0.1"
    try:
        check_version()
        daemon = Daemon(args.port, args.appdir, args.settings)
        host = daemon.settings.daemon.host
        signal.signal(signal.SIGTERM, lambda *_: daemon.api.cmd_stop(mode="leave"))
        daemon.serve()
    except (ConfigError, PrefectInternalsChanged) as exc:
        print(str(exc), file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"cannot serve on {host}:{args.port}: {exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
