"""The driver host of a tomato 2.x driver package, run inside the legacy environment.

Run as ``python -m drivers.legacy.host --module tomato_jumo --driver jumo --port PORT
[--settings JSON] [--logfile PATH]`` (the daemon does, through :mod:`drivers.origins`);
``--check`` only imports the package and prints what it is. It answers the same commands as
:mod:`drivers.host`, translating each into the driver's DriverInterface 2.1 calls:

- tasks run in the driver's own task thread (``task_start`` queues a 2.x ``Task``); when a
  task ends, by itself or by ``task_stop``, the driver's ``task_stop`` is called, so threads
  it runs for the task (such as a temperature ramp) stop with it;
- idle measurements run every ``idle_measurement_interval`` (the driver's, or the driver
  settings'), and the last one is the ``idle`` part of the component status;
- a ``RuntimeError`` while registering (a 2.x driver's way of saying "try again") is retried
  up to three times; any other exception, and a ``sys.exit`` inside the driver, fails only
  that call, with the driver's message;
- calls into the driver are made one at a time, as tomato 2.2's driver loop made them
  (:mod:`drivers.legacy.adapters` holds the driver, component and task as our interface
  sees them).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from typing import Any

from drivers.declarations import task_timing
from drivers.host import argument_parser, serve, setup_logging
from drivers.host_commands import DriverHost, component_key
from drivers.legacy.adapters import (
    ERRORS,
    INTERFACE_VERSION,
    LegacyCallError,
    LegacyComponent,
    LegacyDriver,
    LegacyTask,
    describe,
    load_interface,
)
from drivers.legacy.convert import datasets_to_block
from tomato_cli.rpc import RpcError

log = logging.getLogger("drivers.legacy")

REGISTER_TRIES = 3
REGISTER_RETRY_S = 0.5


class LegacyDriverHost(DriverHost):
    """:class:`DriverHost` commands answered by a 2.x driver."""

    driver: LegacyDriver
    components: dict[str, LegacyComponent]  # type: ignore[assignment]
    tasks: dict[str, LegacyTask]  # type: ignore[assignment]

    def __init__(self, driver: LegacyDriver, name: str = ""):
        super().__init__(driver, name=name)
        self._idle = threading.Thread(target=self._idle_loop, name="idle", daemon=True)
        self._idle.start()

    def cmd_register(self, components: list[dict[str, Any]]) -> dict[str, Any]:
        keys, failures = [], []
        with self.state_lock:
            for item in components:
                try:
                    address, channel = str(item["address"]), str(item["channel"])
                except (KeyError, TypeError):
                    raise RpcError(f"component needs 'address' and 'channel': {item!r}") from None
                key = component_key(address, channel)
                keys.append(key)
                if key in self.components and (address, channel) in self.driver.interface.devmap:
                    continue
                error = self._register(address, channel)
                if error:
                    failures.append(f"{key}: {error}")
                    continue
                self.components[key] = LegacyComponent(self.driver, address, channel)
                self.locks[key] = self.driver.lock
                log.info("registered component %s", key)
            if failures:
                raise RpcError(f"driver {self.name!r} cannot register " + "; ".join(failures))
            return {k: self._offer(self.components[k]) for k in keys}

    def _register(self, address: str, channel: str) -> str | None:
        """None once registered, else why not (a 2.x RuntimeError is retried)."""
        msg = ""
        for attempt in range(1, REGISTER_TRIES + 1):
            try:
                reply = self.driver.call("cmp_register", address=address, channel=channel)
            except LegacyCallError as exc:
                return str(exc)
            if reply.success:
                return None
            msg = str(reply.msg).splitlines()[0]
            log.warning("register %s,%s: %s (try %d)", address, channel, msg, attempt)
            if attempt < REGISTER_TRIES:
                time.sleep(REGISTER_RETRY_S)
        return f"{msg} (tried {REGISTER_TRIES} times)"

    def cmd_deregister(self, keys: list[str]) -> list[str]:
        removed = []
        with self.state_lock:
            for key in keys:
                comp = self.components.pop(key, None)
                if comp is None:
                    continue
                if (runner := self.tasks.pop(key, None)) is not None:
                    runner.stop()
                try:
                    self.driver.expect("cmp_teardown", key=comp.ident)
                except LegacyCallError as exc:
                    log.warning("teardown of %s failed: %s", key, exc)
                self.locks.pop(key, None)
                removed.append(key)
        return removed

    def cmd_task_start(
        self,
        key: str,
        technique_name: str,
        max_duration: Any,
        sampling_interval: Any,
        task_params: dict[str, Any] | None = None,
        stop_when: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Start a task in the 2.x driver's own thread; it samples there, so ``stop_when``
        is checked by the job as it collects the samples, not here."""
        comp = self._component(key)
        params = task_params or {}
        comp.check_task(technique_name, params, sampling_interval)
        interval, duration = task_timing(max_duration, sampling_interval)
        with self.state_lock, self.driver.lock:
            old = self.tasks.get(key)
            if old is not None and old.running:
                raise RpcError(f"a task ({old.technique}) is already running on {key!r}")
            values = comp.driver_values(params)
            if not comp.device().thread.is_alive():
                comp.reset()  # a crashed task left no thread to run the next one
            task = self.driver.task_class(
                component_role=key,
                technique_name=technique_name,
                max_duration=duration,
                sampling_interval=interval,
                task_params=values,
            )
            runner = LegacyTask(comp, technique_name, duration, interval)
            self.driver.expect("task_start", key=comp.ident, task=task)
            self.tasks[key] = runner
        log.info("task_start %s %s %g s every %g s", key, technique_name, duration, interval)
        return runner.status()

    def cmd_task_status(self, key: str) -> dict[str, Any]:
        runner = self._sampler(key)
        return super().cmd_task_status(key) if runner is None else runner.status()

    def cmd_task_data(self, key: str) -> dict[str, Any]:
        comp = self._component(key)
        runner = self.tasks.get(key)
        if runner is None:
            return {"uts": [], "data": {}, "units": {}}
        block, rest = datasets_to_block(runner.collect())
        if rest:
            with comp.driver.lock:
                runner.pending[:0] = rest  # the next call takes them
        comp.data_units.update(block["units"])
        runner.samples += len(block["uts"])
        return block

    def cmd_task_stop(self, key: str) -> dict[str, Any]:
        runner = self._sampler(key)
        if runner is None:
            return self.cmd_task_status(key)
        runner.stop()
        log.info("task_stop %s", key)
        return runner.status()

    def _idle_loop(self) -> None:
        interval = self.driver.idle_interval()
        if interval is None:
            return
        last = -interval
        while not self.stopping.wait(0.1):
            if time.monotonic() - last < interval:
                continue
            last = time.monotonic()
            for key, comp in list(self.components.items()):
                runner = self.tasks.get(key)
                if runner is not None and runner.running:
                    continue
                try:
                    self.driver.call("cmp_measure", key=comp.ident)
                except LegacyCallError:
                    pass


def main(argv: list[str] | None = None) -> int:
    """Run the host of a tomato 2.x driver until ``shutdown``, SIGTERM or SIGINT."""
    parser = argument_parser("python -m drivers.legacy.host")
    parser.add_argument("--module", required=True, help="the 2.x driver module (tomato_<name>)")
    parser.add_argument("--check", action="store_true", help="load, describe as JSON, exit")
    args = parser.parse_args(argv)
    setup_logging(args)
    logging.getLogger().addHandler(ERRORS)
    try:
        settings = json.loads(args.settings)
        if not isinstance(settings, dict):
            raise ValueError("driver settings are not a JSON object")
        cls = load_interface(args.module)
        if args.check:
            print(
                json.dumps(
                    {
                        "driver": args.driver,
                        "module": args.module,
                        "interface": INTERFACE_VERSION,
                        "idle_measurement_interval": cls.idle_measurement_interval,
                    }
                )
            )
            return 0
        driver = LegacyDriver(args.driver, cls(settings=settings), settings)
    except (Exception, SystemExit) as exc:
        log.error("cannot start driver %r: %s", args.driver, describe(exc))
        print(
            f"cannot start driver {args.driver!r}: {describe(exc)}".splitlines()[0], file=sys.stderr
        )
        return 2
    return serve(LegacyDriverHost(driver, name=args.driver), args.port)


if __name__ == "__main__":
    sys.exit(main())
