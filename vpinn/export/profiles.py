"""Fields along a domain's profile line (e.g. a radius of the hollow sphere), computed against
exact: ``profile.csv`` (one row per point) and ``profile.png``.

The domain supplies the line and a local frame (:meth:`Domain.profile`), the physics the fields
in that frame (:attr:`Physics.frame_fields`, e.g. ``u_r``, ``sigma_rr``, ``sigma_thetatheta``);
domains without a natural line, or physics without frame fields, write nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from vpinn.export.plots import plot_profile
from vpinn.export.tables import write_csv
from vpinn.geometry.base import Profile
from vpinn.physics.base import Physics, Trial

#: points along a profile line
PROFILE_POINTS = 201


def evaluate_profile(physics: Physics, trial: Trial, profile: Profile, device, dtype) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Each frame field along ``profile``: (computed (n,), exact (n,) or None), float64 arrays."""
    x, frame = profile.points.to(device, dtype), profile.frame.to(device, dtype)
    with torch.no_grad():
        computed = physics.frame_fields(*trial(x), frame, profile.axes)
        exact = physics.frame_fields(*physics.exact(x), frame, profile.axes) if physics.exact is not None else {}
    as_array = lambda t: t.double().cpu().numpy()  # noqa: E731
    return {name: (as_array(value), as_array(exact[name]) if name in exact else None) for name, value in computed.items()}


def write_profile(directory: str | Path, physics: Physics, trial: Trial, profile: Profile | None, device, dtype) -> bool:
    """Write ``profile.csv`` and ``profile.png`` into ``directory``; False if there is no profile."""
    if profile is None or physics.frame_fields is None:
        return False
    values = evaluate_profile(physics, trial, profile, device, dtype)
    coordinate = profile.coordinate.double().numpy()
    rows = []
    for i, position in enumerate(coordinate):
        row = {profile.label: float(position)}
        for name, (computed, exact) in values.items():
            row[name] = float(computed[i])
            if exact is not None:
                row[f"{name}_exact"] = float(exact[i])
        rows.append(row)
    write_csv(Path(directory) / "profile.csv", rows)
    plot_profile(Path(directory) / "profile.png", profile.label, coordinate, values)
    return True
