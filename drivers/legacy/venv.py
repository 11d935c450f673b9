"""The legacy driver environment: a virtual environment holding tomato 2.x driver packages.

Driver packages such as ``tomato-jumo`` depend on ``tomato`` 2.x, which installs commands
named ``tomato``, ``ketchup`` and ``passata``. Installed next to us they would replace ours,
so they go into a virtual environment of their own; their driver hosts run from there
(:mod:`drivers.legacy.host`), with our ``drivers`` and ``tomato_cli`` packages reachable
through a folder of links (:meth:`LegacyVenv.code_path`) and nothing else of ours.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import Distribution, distributions
from pathlib import Path

# tomato 3.x drivers speak another interface, and a driver's requirement such as
# ``tomato>=2.1rc3`` lets pip choose a 3.0 pre-release: keep the environment on 2.x.
TOMATO_CONSTRAINT = "tomato>=2.1,<3"
MODULE_PREFIX = "tomato_"
_CODE_DIR = "tomato-prefect-code"
_OUR_PACKAGES = ("drivers", "tomato_cli")


class LegacyVenvError(RuntimeError):
    """The legacy environment cannot be created or changed; the message says why."""


@dataclass(frozen=True)
class LegacyPackage:
    """One tomato 2.x driver package installed in the legacy environment."""

    driver: str  # the name a devices file uses, e.g. "example_counter"
    package: str  # the distribution, e.g. "tomato-example-counter"
    version: str
    module: str  # the module tomato 2.x imports, e.g. "tomato_example_counter"


def driver_name(module: str) -> str:
    """The driver name of a tomato 2.x module (``tomato_jumo`` -> ``jumo``)."""
    return module[len(MODULE_PREFIX) :]


def module_name(driver: str) -> str:
    """The module tomato 2.x imports for a driver name (as tomato 2.2 derives it)."""
    return MODULE_PREFIX + driver.replace("-", "_")


def _top_level(dist: Distribution) -> set[str]:
    text = dist.read_text("top_level.txt")
    if text:
        return {line.strip() for line in text.splitlines() if line.strip()}
    names = set()
    for file in dist.files or []:
        first = file.parts[0]
        if first.endswith((".dist-info", ".data")) or first == "..":
            continue
        names.add(first[:-3] if first.endswith(".py") else first)
    return names


def _requires_tomato(dist: Distribution) -> bool:
    for req in dist.requires or []:
        name = req.split(";")[0].strip()
        for sep in "<>=!~[ (":
            name = name.split(sep)[0]
        if name.strip().lower() == "tomato" and "extra ==" not in req:
            return True
    return False


class LegacyVenv:
    """The virtual environment at ``path`` (it may not exist yet)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def exists(self) -> bool:
        return self.python.exists()

    def site_packages(self) -> list[Path]:
        return sorted(self.path.glob("lib/python3*/site-packages"))

    def _distributions(self) -> list[Distribution]:
        paths = [str(p) for p in self.site_packages()]
        return list(distributions(path=paths)) if paths else []

    def packages(self) -> dict[str, LegacyPackage]:
        """Installed tomato 2.x driver packages by driver name (read from metadata only)."""
        found: dict[str, LegacyPackage] = {}
        for dist in self._distributions():
            if not _requires_tomato(dist):
                continue
            for module in sorted(_top_level(dist)):
                if module.startswith(MODULE_PREFIX) and len(module) > len(MODULE_PREFIX):
                    found[driver_name(module)] = LegacyPackage(
                        driver_name(module), dist.metadata["Name"], dist.version, module
                    )
        return found

    def tomato_version(self) -> str | None:
        """The version of tomato 2.x in the environment, or None."""
        for dist in self._distributions():
            if (dist.metadata["Name"] or "").lower() == "tomato":
                return dist.version
        return None

    def create(self) -> None:
        """Create the environment (with pip) if it does not exist."""
        if self.exists():
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._run([sys.executable, "-m", "venv", str(self.path)], "create the environment")
        (self.path / "constraints.txt").write_text(TOMATO_CONSTRAINT + "\n")

    def install(self, requirements: list[str], pip_args: list[str] | None = None) -> None:
        """``pip install`` into the environment, keeping tomato on 2.x."""
        self.create()
        constraints = self.path / "constraints.txt"
        if not constraints.exists():
            constraints.write_text(TOMATO_CONSTRAINT + "\n")
        self._pip(["install", "-c", str(constraints), *(pip_args or []), *requirements])

    def remove(self, packages: list[str]) -> None:
        """``pip uninstall`` from the environment."""
        if not self.exists():
            raise LegacyVenvError(f"no legacy driver environment at {self.path}")
        self._pip(["uninstall", "-y", *packages])

    def _pip(self, args: list[str]) -> None:
        cmd = [str(self.python), "-m", "pip", "--disable-pip-version-check", *args]
        self._run(cmd, f"pip {args[0]}")

    def _run(self, cmd: list[str], what: str) -> None:
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [
                line.strip()
                for line in (proc.stderr + proc.stdout).splitlines()
                if line.strip() and not line.startswith("WARNING: Location")
            ]
            errors = [line for line in lines if line.startswith("ERROR")]
            why = (errors or lines or [f"exit code {proc.returncode}"])[-1]
            raise LegacyVenvError(f"cannot {what} in {self.path}: {why}")

    def code_path(self) -> Path:
        """A folder with links to our ``drivers`` and ``tomato_cli`` packages, and nothing else.

        The legacy host puts it on its ``PYTHONPATH``: our code is importable there
        without our environment's other packages shadowing the legacy environment's.
        """
        import drivers
        import tomato_cli

        folder = self.path / _CODE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        for name, pkg in zip(_OUR_PACKAGES, (drivers, tomato_cli), strict=True):
            target = Path(pkg.__file__).resolve().parent
            link = folder / name
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            tmp = folder / f".{name}.{os.getpid()}"
            tmp.unlink(missing_ok=True)
            tmp.symlink_to(target, target_is_directory=True)
            os.replace(tmp, link)
        return folder
