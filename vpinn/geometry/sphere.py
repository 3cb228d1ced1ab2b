"""The hollow-sphere octant ``a <= |x| <= b, x, y, z >= 0``: maps, distance functions, a radial line.

Spherical coordinates ``x = r sin(theta) cos(phi), y = r sin(theta) sin(phi), z = r cos(theta)``
with ``r in [a, b]``, ``theta, phi in [0, pi/2]`` are the affine image of the unit cube, so a
composite Gauss-Legendre rule on the cube is Gauss-Legendre in ``r``, ``theta`` and ``phi``; the
volume element is ``r^2 sin(theta) dr dtheta dphi``.  The faces are the spherical surfaces
``inner`` (r = a, outward normal ``-x/r``, pointing into the cavity) and ``outer`` (r = b, normal
``x/r``), and the symmetry planes ``x0``, ``y0``, ``z0``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from vpinn.geometry.base import Profile
from vpinn.geometry.maps import MappedPoints, ParameterMap

Tensor = torch.Tensor
QUARTER = math.pi / 2
#: symmetry plane -> the axis it is normal to
PLANE_AXES: dict[str, int] = {"x0": 0, "y0": 1, "z0": 2}


def _unit_directions(theta: Tensor, phi: Tensor) -> Tensor:
    """``(sin t cos p, sin t sin p, cos t)`` (b, 3)."""
    sin_theta = torch.sin(theta)
    return torch.stack([sin_theta * torch.cos(phi), sin_theta * torch.sin(phi), torch.cos(theta)], dim=1)


@dataclass(frozen=True)
class SphereOctantVolumeMap(ParameterMap):
    """``(s, t, v) -> r = a + (b - a) s, theta = t pi/2, phi = v pi/2``; Jacobian
    ``r^2 sin(theta) (b - a) (pi/2)^2``."""

    inner: float
    outer: float
    dim: int = 3

    def __call__(self, params: Tensor) -> MappedPoints:
        thickness = self.outer - self.inner
        r = self.inner + thickness * params[:, 0]
        theta, phi = QUARTER * params[:, 1], QUARTER * params[:, 2]
        points = r[:, None] * _unit_directions(theta, phi)
        return MappedPoints(points, r * r * torch.sin(theta) * (thickness * QUARTER**2))


@dataclass(frozen=True)
class SphereOctantSurfaceMap(ParameterMap):
    """``(t, v) -> radius * direction(theta = t pi/2, phi = v pi/2)``; area element
    ``radius^2 sin(theta) (pi/2)^2``; the normal is ``side * x/r`` (side -1 on the inner surface)."""

    radius: float
    side: int
    dim: int = 2

    def __call__(self, params: Tensor) -> MappedPoints:
        theta, phi = QUARTER * params[:, 0], QUARTER * params[:, 1]
        directions = _unit_directions(theta, phi)
        area = self.radius**2 * torch.sin(theta) * QUARTER**2
        return MappedPoints(self.radius * directions, area, self.side * directions)


@dataclass(frozen=True)
class SphereOctant:
    """The hollow-sphere octant with inner radius ``inner`` and outer radius ``outer``."""

    inner: float
    outer: float

    #: the faces' names: the spherical surfaces and the symmetry planes
    FACES: ClassVar[tuple[str, ...]] = ("inner", "outer", *PLANE_AXES)
    PLANES: ClassVar[dict[str, int]] = PLANE_AXES

    @property
    def lower(self) -> tuple[float, float, float]:
        """Corner of the bounding box (for input scaling)."""
        return (0.0, 0.0, 0.0)

    @property
    def upper(self) -> tuple[float, float, float]:
        return (self.outer,) * 3

    @property
    def volume(self) -> float:
        """``(b^3 - a^3) pi / 6``."""
        return (self.outer**3 - self.inner**3) * math.pi / 6

    def volume_map(self) -> SphereOctantVolumeMap:
        return SphereOctantVolumeMap(self.inner, self.outer)

    def face_map(self, face: str) -> ParameterMap:
        """The spherical surfaces ``inner``/``outer``, or a quarter annulus ``x0``/``y0``/``z0``."""
        if face in PLANE_AXES:
            return PlaneAnnulusMap(self.inner, self.outer, PLANE_AXES[face])
        return SphereOctantSurfaceMap(self.inner, -1) if face == "inner" else SphereOctantSurfaceMap(self.outer, 1)

    def distance(self, faces: tuple[str, ...]) -> "SphereOctantDistance":
        """A smooth function vanishing exactly on ``faces``; see :class:`SphereOctantDistance`."""
        return SphereOctantDistance(self.inner, self.outer, frozenset(faces))

    def input_features(self) -> "RadialCoordinate":
        """The normalised radius as an extra network input; see :class:`RadialCoordinate`."""
        return RadialCoordinate(self.inner, self.outer)

    def profile(self, points: int) -> Profile:
        """The radius along the diagonal ``(1, 1, 1)/sqrt(3)``, farthest from the symmetry planes,
        with the spherical frame ``(e_r, e_theta, e_phi)``."""
        r = torch.linspace(self.inner, self.outer, points, dtype=torch.float64)
        theta = torch.full_like(r, math.acos(1 / math.sqrt(3)))
        phi = torch.full_like(r, math.pi / 4)
        e_r = _unit_directions(theta, phi)
        e_theta = torch.stack([torch.cos(theta) * torch.cos(phi), torch.cos(theta) * torch.sin(phi), -torch.sin(theta)], 1)
        e_phi = torch.stack([-torch.sin(phi), torch.cos(phi), torch.zeros_like(r)], 1)
        return Profile("r", r, r[:, None] * e_r, torch.stack([e_r, e_theta, e_phi], 1), ("r", "theta", "phi"))


@dataclass(frozen=True)
class PlaneAnnulusMap(ParameterMap):
    """A symmetry plane's face, the quarter annulus ``a <= rho <= b`` in the plane normal to
    ``axis``: ``(s, t) -> rho = a + (b - a) s, angle = t pi/2`` in the plane's two other axes
    (in increasing order); area element ``rho (b - a) pi/2``; outward normal ``-e_axis``."""

    inner: float
    outer: float
    axis: int
    dim: int = 2

    def __call__(self, params: Tensor) -> MappedPoints:
        thickness = self.outer - self.inner
        rho = self.inner + thickness * params[:, 0]
        angle = QUARTER * params[:, 1]
        first, second = [a for a in range(3) if a != self.axis]
        points = torch.zeros(params.shape[0], 3, dtype=params.dtype, device=params.device)
        points[:, first], points[:, second] = rho * torch.cos(angle), rho * torch.sin(angle)
        normals = torch.zeros_like(points)
        normals[:, self.axis] = -1.0
        return MappedPoints(points, rho * (thickness * QUARTER), normals)


@dataclass(frozen=True)
class SphereOctantDistance:
    """``d(x) = phi_radial(r) * prod over chosen planes of x_axis / r``: zero on the chosen faces,
    positive inside, at most 1.

    ``phi_radial`` is ``4 (r - a)(b - r)/(b - a)^2`` with both spherical faces chosen,
    ``(r - a)/(b - a)`` with ``inner`` only, ``(b - r)/(b - a)`` with ``outer`` only, else 1.  Each
    factor has maximum 1, which keeps the network output ``N`` in ``u = g + d*N`` of the size of
    ``u`` (see :class:`~vpinn.geometry.box.BoxDistance`).
    """

    inner: float
    outer: float
    faces: frozenset[str]

    def __call__(self, points: Tensor) -> tuple[Tensor, Tensor]:
        """Values (b,) and gradients (b, 3) of ``d`` at ``points`` (b, 3)."""
        a, b = self.inner, self.outer
        r = points.norm(dim=1)
        radial_direction = points / r[:, None]
        inner, outer = "inner" in self.faces, "outer" in self.faces
        if inner and outer:
            scale = 4.0 / (b - a) ** 2
            value, slope = scale * (r - a) * (b - r), scale * (a + b - 2 * r)
        elif inner or outer:
            sign = 1.0 if inner else -1.0
            value = sign * (r - (a if inner else b)) / (b - a)
            slope = torch.full_like(r, sign / (b - a))
        else:
            value, slope = torch.ones_like(r), torch.zeros_like(r)
        grad = slope[:, None] * radial_direction
        for face in sorted(self.faces & PLANE_AXES.keys()):
            axis = PLANE_AXES[face]
            factor = points[:, axis] / r
            grad = grad * factor[:, None] + (value / r)[:, None] * (torch.eye(3, dtype=r.dtype, device=r.device)[axis] - factor[:, None] * radial_direction)
            value = value * factor
        return value, grad


@dataclass(frozen=True)
class RadialCoordinate:
    """``rho = 2 (r - a)/(b - a) - 1`` in [-1, 1], with gradient ``2/(b - a) x/r``: the network
    input that lets it see the shell's own coordinate.  Boundaries and loads of a hollow sphere
    are functions of r; from Cartesian inputs alone a network learns functions of r slowly
    (measured on the Lamé problem: about 5x the L2 error after the same training time)."""

    inner: float
    outer: float
    count: int = 1

    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Values (b, 1) and Jacobian (b, 1, 3) at ``x`` (b, 3)."""
        r = x.norm(dim=1, keepdim=True)
        slope = 2 / (self.outer - self.inner)
        return slope * (r - self.inner) - 1, (slope * x / r)[:, None, :]
