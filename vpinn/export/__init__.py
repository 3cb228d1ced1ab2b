"""Outputs: solution fields (meshio), plots (matplotlib), tables (CSV/JSON); all atomic."""

from vpinn.export.grid import FORMATS, evaluate_fields, grid_points, hexahedra, solution_cells, write_fields
from vpinn.export.plots import plot_errors, plot_loss, plot_profile, plot_slice
from vpinn.export.profiles import PROFILE_POINTS, evaluate_profile, write_profile
from vpinn.export.tables import write_csv, write_json

__all__ = [
    "FORMATS", "PROFILE_POINTS", "evaluate_fields", "evaluate_profile", "grid_points", "hexahedra", "plot_errors", "plot_loss",
    "plot_profile", "plot_slice", "solution_cells", "write_csv", "write_fields", "write_json", "write_profile",
]
