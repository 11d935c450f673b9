"""tomato 2.x driver packages (DriverInterface 2.1), run unchanged in an environment of their own.

:mod:`drivers.legacy.venv` manages that virtual environment from our side (create, install,
list, remove); :mod:`drivers.legacy.host` is the driver host that runs inside it and speaks
our driver-host protocol. Nothing here imports tomato 2.x's ``tomato`` package: only the
legacy host process loads it, through the driver package it runs.
"""
