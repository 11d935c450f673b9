"""tomato-prefect: laboratory instrument automation on the Prefect workflow engine."""

__version__ = "0.1.0"
