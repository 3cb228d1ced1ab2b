"""Outputs: solution fields (meshio), plots (matplotlib), tables (CSV/JSON); all atomic."""

from vpinn.export.grid import evaluate_fields, grid_points, hexahedra, write_grid
from vpinn.export.plots import plot_errors, plot_loss, plot_profile, plot_slice
from vpinn.export.profiles import PROFILE_POINTS, evaluate_profile, write_profile
from vpinn.export.tables import write_csv, write_json

__all__ = [
    "PROFILE_POINTS", "evaluate_fields", "evaluate_profile", "grid_points", "hexahedra", "plot_errors", "plot_loss",
    "plot_profile", "plot_slice", "write_csv", "write_grid", "write_json", "write_profile",
]
