"""Append-only job data store and its NetCDF writer (final results and snapshots)."""

from .jobstore import JobStore, RoleData
from .netcdf import write_results

__all__ = ["JobStore", "RoleData", "write_results"]
