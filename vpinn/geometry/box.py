"""The axis-aligned box domain: volume and face maps, and the distance-like function for hard
Dirichlet boundary conditions."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from vpinn.geometry.maps import BoxFaceMap, BoxVolumeMap

#: face name -> (axis, side): the box's faces, named here and nowhere else
FACE_AXES: dict[str, tuple[int, int]] = {
    "xmin": (0, -1), "xmax": (0, 1),
    "ymin": (1, -1), "ymax": (1, 1),
    "zmin": (2, -1), "zmax": (2, 1),
}


@dataclass(frozen=True)
class Box:
    """The box ``lower <= x <= upper`` (lengths in the problem's units)."""

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]

    #: the faces' names
    FACES: ClassVar[tuple[str, ...]] = tuple(FACE_AXES)
    #: face -> axis of its normal, for the faces that are planes normal to an axis (all of them)
    PLANES: ClassVar[dict[str, int]] = {face: axis for face, (axis, _) in FACE_AXES.items()}

    @property
    def volume(self) -> float:
        """Volume of the box."""
        return math.prod(hi - lo for lo, hi in zip(self.lower, self.upper))

    def volume_map(self) -> BoxVolumeMap:
        """Map of the unit cube onto the box."""
        return BoxVolumeMap(self.lower, self.upper)

    def face_map(self, face: str) -> BoxFaceMap:
        """Map of the unit square onto the named face (``xmin`` ... ``zmax``)."""
        axis, side = FACE_AXES[face]
        return BoxFaceMap(self.lower, self.upper, axis, side)

    def distance(self, faces: tuple[str, ...]) -> "BoxDistance":
        """A smooth function vanishing exactly on ``faces``; see :class:`BoxDistance`."""
        return BoxDistance(self.lower, self.upper, frozenset(faces))

    def input_features(self) -> None:
        """The Cartesian inputs are a box's natural coordinates: nothing to add."""
        return None

    def profile(self, points: int) -> None:
        """A box has no distinguished line for 1D plots (its solutions need not have one)."""
        return None


@dataclass(frozen=True)
class BoxDistance:
    """``d(x) = prod_k phi_k(x_k)``, zero on the chosen faces, positive inside, maximum 1.

    Per axis with both faces chosen, ``phi = (x - lo)(hi - x) / (L/2)^2``; with only the lower
    (upper) face, ``phi = (x - lo)/L`` (``(hi - x)/L``); otherwise ``phi = 1``.  Normalising the
    maximum to 1 keeps the network output ``N`` in ``u = g + d*N`` of the size of ``u`` itself,
    which measurably speeds up training (0.26 vs 0.009 relative L2 error after 60 s of Adam on the
    Poisson cube, measured before vpinn existed).
    """

    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    faces: frozenset[str]

    def __call__(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Values (b,) and gradients (b, 3) of ``d`` at ``points`` (b, 3)."""
        factors, slopes = [], []
        for axis in range(3):
            lo, hi = self.lower[axis], self.upper[axis]
            length = hi - lo
            x = points[:, axis]
            low, high = "xyz"[axis] + "min" in self.faces, "xyz"[axis] + "max" in self.faces
            if low and high:
                scale = 4.0 / length**2
                factors.append(scale * (x - lo) * (hi - x))
                slopes.append(scale * (lo + hi - 2 * x))
            elif low:
                factors.append((x - lo) / length)
                slopes.append(torch.full_like(x, 1 / length))
            elif high:
                factors.append((hi - x) / length)
                slopes.append(torch.full_like(x, -1 / length))
            else:
                factors.append(torch.ones_like(x))
                slopes.append(torch.zeros_like(x))
        value = factors[0] * factors[1] * factors[2]
        grad = torch.stack(
            [slopes[0] * factors[1] * factors[2], factors[0] * slopes[1] * factors[2], factors[0] * factors[1] * slopes[2]],
            dim=1,
        )
        return value, grad
