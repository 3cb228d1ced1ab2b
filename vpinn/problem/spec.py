"""The problem-file schema: one frozen dataclass per TOML section, defaults in one place.

A problem file (TOML) maps onto :class:`ProblemSpec`; the README documents every key.  Checks
that involve one section live in that section's ``__post_init__`` and raise
:class:`~vpinn.errors.SpecError` with the key relative to the section; checks across sections
live in :mod:`vpinn.problem.loader`.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from vpinn.errors import SpecError
from vpinn.expressions import Expression, parse_expression
from vpinn.geometry import Box, SphereOctant
from vpinn.geometry.mesh import read_mesh
from vpinn.geometry.selectors import InBox, OnPlane, Selector, with_selected

#: boundary conditions that prescribe the solution's value through the lift ``g`` of the ansatz
#: ``u = g + d*N``; each entry has its own data, blended into one lift (transfinite interpolation)
VALUE_CONDITIONS: frozenset[str] = frozenset({"dirichlet", "clamp"})
#: boundary conditions that add a boundary term to the energy, integrated by a boundary rule
LOAD_CONDITIONS: frozenset[str] = frozenset({"neumann", "traction"})
#: the default Nitsche penalty ``gamma = NITSCHE_PENALTY * modulus / length`` of a weakly imposed
#: Dirichlet or clamp entry (:func:`vpinn.assemble.nitsche_penalty`): a dimensionless factor
NITSCHE_PENALTY = 100.0


#: ``train.batch`` where the file leaves it out: on CUDA a step costs about the same for every
#: b <= 1e5 (kernel launches; H200: ~5 ms), so the default batch is large there
DEFAULT_BATCH = {"cpu": 8192, "cuda": 131072}
#: ``train.step_overhead`` where the file leaves it out (0): a step's fixed cost in points,
#: ``c0 / c1`` of its time ``c0 + c1 b`` (CPU: fitted by ``run.py batches`` on poisson_cube,
#: one thread; CUDA: from ``results/reference/bench_h200.md``, 4.8 ms at b = 1e5, 12.3 ms at 1e6)
DEFAULT_STEP_OVERHEAD = {"cpu": 2048, "cuda": 524288}
#: the largest memory size a problem file may name (2^64 bytes)
MAX_BYTES = 2**64
#: the most points a rule may have: the sampler sweeps int64 positions below 2^ceil(log2 N)
MAX_RULE_POINTS = 2**62
#: the most points a Sobol rule may have (30-bit digits)
MAX_SOBOL_POINTS = 2**30
#: seeds are non-negative 63-bit integers (torch, numpy and the sampler's hash all take them)
MAX_SEED = 2**63 - 1
#: a problem name's limit: it names the results directory (255 bytes on common file systems)
MAX_NAME_BYTES = 255
#: bounds on the network's sizes, and on its parameter count (2^30: 4 GiB of float32 weights)
MAX_WIDTH, MAX_DEPTH, MAX_FEATURES, MAX_PARAMETERS = 2**16, 1000, 2**16, 2**30

_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """``"2GiB"`` -> 2147483648; ``"1.5 GB"`` -> 1500000000; raises ValueError if malformed."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _BYTE_UNITS:
        raise ValueError(f"{text!r} is not a size such as 2GiB, 512MiB or 1.5GB")
    value = float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()]
    if not value <= MAX_BYTES:
        raise ValueError(f"{text!r} is more than any machine has (at most 2^64 bytes, 16 EiB)")
    return int(value)


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise SpecError(key, f"must be positive, not {value}")


def _at_least(minimum: int, key: str, value: int) -> None:
    if value < minimum:
        raise SpecError(key, f"must be at least {minimum}, not {value}")


def _at_most(maximum: int, key: str, value: int, why: str) -> None:
    if value > maximum:
        raise SpecError(key, f"must be at most {maximum:,} ({why}), not {value:,}")


def _seed(key: str, value: int) -> None:
    if not 0 <= value <= MAX_SEED:
        raise SpecError(key, f"must be between 0 and 2^63 - 1, not {value}")


@dataclass(frozen=True)
class BoxSpec:
    """``[domain]`` with ``type = "box"``: the axis-aligned box ``lower <= x <= upper``.

    Its faces are ``xmin xmax ymin ymax zmin zmax``; every face is a plane normal to an axis.
    """

    type: Literal["box"] = "box"
    lower: tuple[float, float, float] = (0.0, 0.0, 0.0)
    upper: tuple[float, float, float] = (1.0, 1.0, 1.0)

    faces: ClassVar[tuple[str, ...]] = Box.FACES
    #: face -> axis of its normal, for the faces that are planes normal to an axis
    planes: ClassVar[dict[str, int]] = Box.PLANES
    #: face -> outward unit normal, for the planar faces normal to no axis (none)
    oblique_planes: ClassVar[dict[str, tuple[float, float, float]]] = {}

    def __post_init__(self) -> None:
        for axis, (lo, hi) in enumerate(zip(self.lower, self.upper)):
            if not hi > lo:
                raise SpecError(f"upper[{axis}]", f"must exceed lower[{axis}] = {lo}, not {hi}")


@dataclass(frozen=True)
class SphereOctantSpec:
    """``[domain]`` with ``type = "sphere_octant"``: the part of the hollow sphere
    ``inner_radius <= |x| <= outer_radius`` (centred at the origin) with ``x, y, z >= 0``.

    Its faces are the spherical surfaces ``inner`` and ``outer`` and the symmetry planes
    ``x0 y0 z0`` (x = 0, y = 0, z = 0).
    """

    type: Literal["sphere_octant"] = "sphere_octant"
    inner_radius: float = 1.0
    outer_radius: float = 2.0

    faces: ClassVar[tuple[str, ...]] = SphereOctant.FACES
    planes: ClassVar[dict[str, int]] = SphereOctant.PLANES
    oblique_planes: ClassVar[dict[str, tuple[float, float, float]]] = {}

    def __post_init__(self) -> None:
        _positive("inner_radius", self.inner_radius)
        if not self.outer_radius > self.inner_radius:
            raise SpecError("outer_radius", f"must exceed inner_radius = {self.inner_radius}, not {self.outer_radius}")


@dataclass(frozen=True)
class PlaneSelectSpec:
    """``[[domain.select]]`` with ``type = "plane"``: the face ``name`` made of the boundary
    triangles whose three vertices lie within ``tolerance`` of the plane through ``point`` with
    normal ``normal`` (any length but zero; lengths after ``scale`` and ``translate``)."""

    type: Literal["plane"]
    name: str
    point: tuple[float, float, float]
    normal: tuple[float, float, float]
    tolerance: float | None = None  # None: RELATIVE_TOLERANCE times the mesh size

    def __post_init__(self) -> None:
        _check_selector(self)
        if not math.hypot(*self.normal) > 0:
            raise SpecError("normal", "has zero length: give the direction the plane faces, e.g. [0, 0, 1]")

    def selector(self) -> Selector:
        return Selector(self.name, OnPlane(self.point, self.normal), self.tolerance)


@dataclass(frozen=True)
class BoxSelectSpec:
    """``[[domain.select]]`` with ``type = "box"``: the face ``name`` made of the boundary
    triangles whose three vertices lie in ``lower <= x <= upper``, grown by ``tolerance``."""

    type: Literal["box"]
    name: str
    lower: tuple[float, float, float]
    upper: tuple[float, float, float]
    tolerance: float | None = None

    def __post_init__(self) -> None:
        _check_selector(self)
        for axis, (lo, hi) in enumerate(zip(self.lower, self.upper)):
            if not hi >= lo:
                raise SpecError(f"upper[{axis}]", f"must be at least lower[{axis}] = {lo}, not {hi}")

    def selector(self) -> Selector:
        return Selector(self.name, InBox(self.lower, self.upper), self.tolerance)


def _check_selector(spec: PlaneSelectSpec | BoxSelectSpec) -> None:
    if not spec.name or not spec.name.strip():
        raise SpecError("name", "must name the face (the name [[bc]] on = [...] uses)")
    if spec.tolerance is not None:
        _positive("tolerance", spec.tolerance)


SelectSpec = PlaneSelectSpec | BoxSelectSpec


@dataclass(frozen=True)
class MeshSpec:
    """``[domain]`` with ``type = "mesh"``: the tetrahedra of a mesh file (anything meshio reads:
    gmsh ``.msh``, ``.vtu``, ``.xdmf``, Abaqus ``.inp``, ...), mapped by ``x -> scale * x + translate``.

    ``file`` is relative to the problem file (the loader makes it absolute).  The faces are the
    file's tagged triangle sets (gmsh physical surfaces, meshio cell sets), or ``boundary`` (the
    whole boundary) for a file without tags, and the faces that ``select`` names by a plane or a
    box (:mod:`vpinn.geometry.selectors`; on an untagged file ``boundary`` keeps the rest);
    rollers need a planar face.
    Rules on a mesh are ``rule = "simplex"``.
    """

    type: Literal["mesh"] = "mesh"
    file: str = ""
    scale: float = 1.0
    translate: tuple[float, float, float] = (0.0, 0.0, 0.0)
    select: tuple[SelectSpec, ...] = ()

    def __post_init__(self) -> None:
        if not self.file:
            raise SpecError("file", "required key is missing (the mesh file, relative to the problem file)")
        _positive("scale", self.scale)

    def mesh(self):
        """The :class:`~vpinn.geometry.mesh.Mesh` with its selected faces (read once per file version)."""
        return with_selected(read_mesh(self.file, self.scale, self.translate), tuple(s.selector() for s in self.select))

    @property
    def faces(self) -> tuple[str, ...]:
        return tuple(self.mesh().faces)

    @property
    def planes(self) -> dict[str, int]:
        """Face -> axis, for the faces that are planes normal to a coordinate axis."""
        return {face: plane.axis for face, plane in self.mesh().planes.items() if plane.axis is not None}

    @property
    def oblique_planes(self) -> dict[str, tuple[float, float, float]]:
        """Face -> outward unit normal, for the planar faces normal to no coordinate axis."""
        return {face: plane.normal for face, plane in self.mesh().planes.items() if plane.axis is None}


DomainSpec = BoxSpec | SphereOctantSpec | MeshSpec


@dataclass(frozen=True)
class PoissonSpec:
    """``[pde]`` with ``type = "poisson"``: ``-div(k grad u) = f``, solved as the minimiser of
    ``E(u) = integral of k|grad u|^2/2 - f u  -  integral over Neumann faces of h u``."""

    type: Literal["poisson"] = "poisson"
    source: Expression | Literal["auto"] = "auto"
    coefficient: Expression = field(default_factory=lambda: parse_expression("1"))

    components: ClassVar[int] = 1
    conditions: ClassVar[tuple[str, ...]] = ("dirichlet", "neumann")
    #: keys that may be "auto" (derived from [exact])
    derived_keys: ClassVar[tuple[str, ...]] = ("source",)

    def __post_init__(self) -> None:
        if self.coefficient.is_constant:
            _positive("coefficient", self.coefficient.constant_value)


Vector = tuple[Expression, Expression, Expression]


@dataclass(frozen=True)
class ElasticitySpec:
    """``[pde]`` with ``type = "elasticity"``: isotropic small-strain linear elasticity,
    ``-div sigma(u) = f`` with ``sigma = lam tr(eps) I + 2 mu eps``, ``eps = (grad u + grad u^T)/2``,
    solved as the minimiser of ``E(u) = integral of sigma:eps/2 - f.u  -  integral over traction
    faces of t.u``.

    The material is given by Young's modulus ``E`` and Poisson's ratio ``nu``, or by the Lamé
    parameters ``lam`` and ``mu`` (one pair, not both; in the units of stress).
    ``body_force`` is ``f`` (three expressions) or ``"auto"``: ``f = -div sigma(u*)`` from [exact].
    """

    type: Literal["elasticity"] = "elasticity"
    E: float | None = None
    nu: float | None = None
    lam: float | None = None
    mu: float | None = None
    body_force: Vector | Literal["auto"] = "auto"

    components: ClassVar[int] = 3
    conditions: ClassVar[tuple[str, ...]] = ("clamp", "roller", "traction")
    derived_keys: ClassVar[tuple[str, ...]] = ("body_force",)

    def __post_init__(self) -> None:
        if self.lam is not None or self.mu is not None:
            for name in ("E", "nu"):
                if getattr(self, name) is not None:
                    raise SpecError(name, "give either E and nu or lam and mu, not both pairs")
            for name in ("lam", "mu"):
                if getattr(self, name) is None:
                    raise SpecError(name, "required with the other Lamé parameter (or give E and nu instead)")
            _positive("mu", self.mu)
            if not 3 * self.lam + 2 * self.mu > 0:
                raise SpecError("lam", f"must exceed -2 mu / 3 = {-2 * self.mu / 3:g} (a positive bulk modulus), not {self.lam}")
            return
        for name, what in (("E", "Young's modulus"), ("nu", "Poisson's ratio")):
            if getattr(self, name) is None:
                raise SpecError(name, f"required key is missing ({what}; or give lam and mu instead of E and nu)")
        _positive("E", self.E)
        if not -1 < self.nu < 0.5:
            raise SpecError("nu", f"must lie in (-1, 0.5) (0.5 is incompressible: the energy has no bounded form), not {self.nu}")

    @property
    def lame(self) -> tuple[float, float]:
        """``(lam, mu)``, from ``E`` and ``nu`` if those were given."""
        if self.mu is not None:
            return self.lam, self.mu
        return self.E * self.nu / ((1 + self.nu) * (1 - 2 * self.nu)), self.E / (2 * (1 + self.nu))

    @property
    def poisson_ratio(self) -> float:
        """``nu``, from the Lamé parameters if those were given."""
        lam, mu = self.lame
        return self.nu if self.nu is not None else lam / (2 * (lam + mu))


PdeSpec = PoissonSpec | ElasticitySpec


class _Entry:
    """What the two kinds of ``[[bc]]`` entry share: their faces, and how a Dirichlet or clamp
    entry is imposed (``method``, ``penalty``)."""

    def faces_on(self, domain: DomainSpec) -> tuple[str, ...]:
        """The face names, with ``"all"`` expanded to the faces of ``domain``."""
        return domain.faces if "all" in self.on else self.on

    @property
    def exact_value(self) -> bool:
        """True for a Dirichlet or clamp entry imposed exactly, by the ansatz ``u = g + d*N``."""
        return self.type in VALUE_CONDITIONS and self.method == "exact"

    @property
    def nitsche(self) -> bool:
        """True for a Dirichlet or clamp entry imposed weakly, by Nitsche's boundary term."""
        return self.method == "nitsche"

    def _check_method(self) -> None:
        if self.nitsche and self.type not in VALUE_CONDITIONS:
            raise SpecError("method", f'a {self.type} entry is a boundary term of the energy already; only '
                                      f'{" and ".join(sorted(VALUE_CONDITIONS))} entries take method = "nitsche"')
        if self.penalty is None:
            return
        if not self.nitsche:
            raise SpecError("penalty", 'only a method = "nitsche" entry takes a penalty (the exact ansatz needs none)')
        _positive("penalty", self.penalty)


@dataclass(frozen=True)
class ScalarBoundarySpec(_Entry):
    """One ``[[bc]]`` entry of a scalar problem (Poisson).

    ``dirichlet``: ``u = value`` on the faces, imposed exactly by the ansatz ``u = g + d*N``
    (``method = "exact"``), or weakly by Nitsche's boundary term (``method = "nitsche"``, with
    penalty ``gamma``, units of ``k`` per length; default ``NITSCHE_PENALTY * max k / L``, ``L``
    the shortest side of the domain's bounding box).
    ``neumann``: ``k du/dn = value`` on the faces, an extra boundary term in the energy.
    ``value = "auto"`` takes the data from ``[exact]``.  Faces named in no entry are natural
    (zero-flux) boundaries.  Face names depend on the domain (checked by the loader).
    """

    type: Literal["dirichlet", "neumann"]
    on: tuple[str, ...] = ("all",)
    value: Expression | Literal["auto"] = field(default_factory=lambda: parse_expression("0"))
    method: Literal["exact", "nitsche"] = "exact"
    penalty: float | None = None

    def __post_init__(self) -> None:
        self._check_method()


@dataclass(frozen=True)
class VectorBoundarySpec(_Entry):
    """One ``[[bc]]`` entry of a vector problem (elasticity).

    ``clamp``: ``u = value`` (all three components) on the faces, imposed by the ansatz, or
    weakly with ``method = "nitsche"`` (penalty ``gamma`` in units of stress per length; default
    ``NITSCHE_PENALTY * (lam + 2 mu) / L``, ``L`` the shortest side of the bounding box).
    ``roller``: ``u.n = 0`` on planar faces (symmetry planes): normal to an axis, that
    component vanishes; on an oblique plane (a mesh's), the output is projected
    (:mod:`vpinn.fields.projection`).  Only the normal component is constrained, the tangential
    traction is zero.  Takes no ``value``.
    ``traction``: ``sigma(u) n = value`` on the faces, an extra boundary term in the energy.
    ``value`` is three expressions (default zero) or ``"auto"`` (``u*``, or ``sigma(u*) n``, from
    ``[exact]``).  Faces named in no entry are traction-free.
    """

    type: Literal["clamp", "roller", "traction"]
    on: tuple[str, ...] = ("all",)
    value: Vector | Literal["auto"] | None = None  # None: zero for clamp and traction
    method: Literal["exact", "nitsche"] = "exact"
    penalty: float | None = None

    def __post_init__(self) -> None:
        self._check_method()
        if self.type == "roller":
            if self.value is not None:
                raise SpecError("value", "a roller only fixes u.n = 0 and takes no value")
        elif self.value is None:
            object.__setattr__(self, "value", tuple(parse_expression("0") for _ in range(3)))


BoundarySpec = ScalarBoundarySpec | VectorBoundarySpec


@dataclass(frozen=True)
class ExactSpec:
    """``[exact]``: the analytic solution, if known; errors are reported against it.

    ``u`` is one expression for a scalar problem, a list ``[u_x, u_y, u_z]`` for a vector one.
    """

    u: Expression | Vector

    @property
    def components(self) -> tuple[Expression, ...]:
        """The solution's components as a tuple (one entry for a scalar)."""
        return self.u if isinstance(self.u, tuple) else (self.u,)


#: rules on a parameter box (box, sphere octant) and on a mesh
BOX_RULES, MESH_RULES = ("gauss", "sobol"), ("simplex",)


@dataclass(frozen=True)
class RuleSpec:
    """A quadrature rule: ``gauss`` (composite Gauss-Legendre, ``order`` points per direction
    in each of ``cells`` cells) or ``sobol`` (``points`` scrambled Sobol points, equal weights)
    on a box or sphere octant; ``simplex`` on a mesh (a tetrahedron rule exact to degree
    ``order`` (1-5) in every tetrahedron, each refined ``refine`` times into 8; on faces the
    triangle rule of that degree, each triangle refined ``refine`` times into 4)."""

    rule: Literal["gauss", "sobol", "simplex"] = "gauss"
    cells: tuple[int, ...] = (16, 16, 16)
    order: int = 3
    points: int = 2**20
    seed: int = 0
    refine: int = 0

    def __post_init__(self) -> None:
        top = 5 if self.rule == "simplex" else 6
        if not 1 <= self.order <= top:
            raise SpecError("order", f"must be between 1 and {top}, not {self.order}")
        for i, n in enumerate(self.cells):
            _at_least(1, f"cells[{i}]", n)
        _at_least(1, "points", self.points)
        if not 0 <= self.refine <= 5:
            raise SpecError("refine", f"must be between 0 and 5 (levels of refinement), not {self.refine}")
        _seed("seed", self.seed)
        if self.rule == "sobol":
            _at_most(MAX_SOBOL_POINTS, "points", self.points, "2^30: Sobol digits have 30 bits")
        elif self.rule == "gauss" and self.size > MAX_RULE_POINTS:
            raise SpecError("cells", f"the rule would have {self.size:.3e} points (cells x order^{len(self.cells)}); "
                                     f"at most 2^62 = {MAX_RULE_POINTS:.3e}")

    @property
    def size(self) -> int:
        """The rule's number of points."""
        return self.points if self.rule == "sobol" else math.prod(self.cells) * self.order ** len(self.cells)


@dataclass(frozen=True)
class QuadratureSpec:
    """``[quadrature]``: the training rule, plus sub-tables for the other rules.

    ``boundary`` integrates Neumann and traction faces (2D, per face); ``evaluation`` is the independent rule
    on which errors are measured; ``finish`` is a small fixed auxiliary rule: ENGD's Gram matrix
    (``gram_rule = "finish"``) and L-BFGS phases with ``rule = "finish"`` use it.
    """

    rule: Literal["gauss", "sobol", "simplex"] = "gauss"
    cells: tuple[int, int, int] = (32, 32, 32)
    order: int = 3
    points: int = 2**20
    seed: int = 0
    refine: int = 0
    boundary: RuleSpec = RuleSpec(cells=(32, 32), order=3)
    evaluation: RuleSpec = RuleSpec(cells=(12, 12, 12), order=4)
    finish: RuleSpec = RuleSpec(cells=(12, 12, 12), order=3)

    def __post_init__(self) -> None:
        RuleSpec(self.rule, self.cells, self.order, self.points, self.seed, self.refine)  # same checks
        for name in ("evaluation", "finish"):
            if len(getattr(self, name).cells) != 3:
                raise SpecError(f"{name}.cells", "must have 3 entries")
        if len(self.boundary.cells) != 2:
            raise SpecError("boundary.cells", "must have 2 entries (a face is two-dimensional)")

    @property
    def training(self) -> RuleSpec:
        """The training rule as a :class:`RuleSpec`."""
        return RuleSpec(self.rule, self.cells, self.order, self.points, self.seed, self.refine)

    def rules(self) -> dict[str, RuleSpec]:
        """Every rule by its key: ``rule`` (training), ``boundary``, ``evaluation``, ``finish``."""
        return {"rule": self.training, "boundary.rule": self.boundary, "evaluation.rule": self.evaluation,
                "finish.rule": self.finish}


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: a fully connected network ``depth`` hidden layers of ``width`` units.

    ``derivatives`` picks how the spatial Jacobian is computed (all give the same numbers;
    ``run.py bench --methods all`` compares their speed).  ``fourier_features > 0`` maps the
    input through that many random Fourier features ``sin/cos(2 pi B x)``, ``B ~ N(0, scale^2)``.
    ``output_scale`` multiplies the network's outputs: set it to the solution's characteristic
    size (in its units, e.g. a displacement scale ``p a / E``) so that the network itself works
    with numbers of order 1, where its initialisation and Adam's step sizes are meant to be.
    ``domain_coordinates`` adds the domain's natural coordinates to the inputs (the hollow
    sphere's radius; a box has none beyond x, y, z).
    """

    width: int = 64
    depth: int = 3
    activation: Literal["tanh", "sin", "silu"] = "tanh"
    derivatives: Literal["fused", "autograd", "forward", "func"] = "fused"
    fourier_features: int = 0
    fourier_scale: float = 1.0
    output_scale: float = 1.0
    domain_coordinates: bool = True

    def __post_init__(self) -> None:
        _at_least(1, "width", self.width)
        _at_least(1, "depth", self.depth)
        if self.fourier_features < 0:
            raise SpecError("fourier_features", f"must be 0 (off) or positive, not {self.fourier_features}")
        _at_most(MAX_WIDTH, "width", self.width, "2^16 units per layer")
        _at_most(MAX_DEPTH, "depth", self.depth, "hidden layers")
        _at_most(MAX_FEATURES, "fourier_features", self.fourier_features, "2^16 features")
        inputs = 4 + 2 * self.fourier_features  # x, y, z, a domain coordinate, sin and cos features
        weights = inputs * self.width + (self.depth - 1) * self.width**2 + 3 * self.width
        if weights > MAX_PARAMETERS:
            raise SpecError("width", f"the network would have about {weights:.3e} parameters (width^2 x depth); "
                                     f"at most 2^30 = {MAX_PARAMETERS:.3e}")
        _positive("fourier_scale", self.fourier_scale)
        _positive("output_scale", self.output_scale)


Dtype = Literal["float32", "float64"]


def _check_phase(steps: int, time_share: float, eval_every: int) -> None:
    if steps < 0:
        raise SpecError("steps", f"must not be negative, not {steps}")
    if not 0 <= time_share < 1:
        raise SpecError("time_share", f"must be 0 (what is left) or between 0 and 1, not {time_share}")
    if eval_every < 0:
        raise SpecError("eval_every", f"must be 0 (train.eval_every) or positive, not {eval_every}")


def _check_clip(clip: float | str) -> None:
    if clip != "auto" and clip < 0:
        raise SpecError("clip", f"must be 0 (off), \"auto\" or a positive gradient-norm bound, not {clip}")


@dataclass(frozen=True)
class AdamPhase:
    """``[[train.phase]] optimizer = "adam"``: Adam on minibatches of the training rule, with
    warmup then decay of the learning rate and optional gradient clipping.

    Every phase has ``steps``, ``dtype``, ``time_share`` (the fraction of the time budget it may
    use; 0: until the end of the budget) and ``eval_every`` (0: ``train.eval_every`` for Adam,
    10 for the other optimisers).
    """

    optimizer: Literal["adam"]
    steps: int = 2000
    lr: float = 1e-3
    warmup: int = 100
    decay: Literal["cosine", "exponential", "constant"] = "cosine"
    lr_final: float = 1e-5
    clip: float | Literal["auto"] = 0.0
    dtype: Dtype = "float32"
    time_share: float = 0.0
    eval_every: int = 0

    def __post_init__(self) -> None:
        _check_phase(self.steps, self.time_share, self.eval_every)
        _positive("lr", self.lr)
        _positive("lr_final", self.lr_final)
        if self.warmup < 0:
            raise SpecError("warmup", f"must not be negative, not {self.warmup}")
        _check_clip(self.clip)


@dataclass(frozen=True)
class LbfgsPhase:
    """``[[train.phase]] optimizer = "lbfgs"``: full-batch L-BFGS with a strong-Wolfe line search on
    a fixed rule (``rule = "finish"``: ``[quadrature.finish]``; ``"training"``: the training rule),
    exact gradients summed in chunks; it ends early when the loss changes by less than
    ``tolerance`` (relative) three iterations in a row."""

    optimizer: Literal["lbfgs"]
    steps: int = 1000
    history: int = 50
    tolerance: float = 1e-12
    rule: Literal["finish", "training"] = "finish"
    dtype: Dtype = "float64"
    time_share: float = 0.0
    eval_every: int = 0

    def __post_init__(self) -> None:
        _check_phase(self.steps, self.time_share, self.eval_every)
        _at_least(1, "history", self.history)


@dataclass(frozen=True)
class EngdPhase:
    """``[[train.phase]] optimizer = "engd"``: energy natural gradient steps (see
    :mod:`vpinn.train.optimizers.engd`): the gradient exact over the training rule
    (``gradient_points = 0``) or a minibatch of that many points; the Gram matrix over the small
    auxiliary rule ``[quadrature.finish]`` (``gram_rule = "finish"``) or on ``gram_points``
    points sampled from the training rule (``"training"``); relative ``damping``; a dense or
    Woodbury ``solver``."""

    optimizer: Literal["engd"]
    steps: int = 500
    gram_points: int = 4096
    gradient_points: int = 0
    damping: float = 1e-6
    solver: Literal["auto", "dense", "woodbury"] = "auto"
    gram_rule: Literal["finish", "training"] = "finish"
    dtype: Dtype = "float64"
    time_share: float = 0.0
    eval_every: int = 0

    def __post_init__(self) -> None:
        _check_phase(self.steps, self.time_share, self.eval_every)
        _at_least(1, "gram_points", self.gram_points)
        if self.gradient_points < 0:
            raise SpecError("gradient_points", f"must be 0 (exact) or positive, not {self.gradient_points}")
        if self.damping < 0 or (self.solver == "woodbury" and self.damping == 0):
            raise SpecError("damping", f"must be non-negative (positive for the Woodbury solver), not {self.damping}")


@dataclass(frozen=True)
class MsqnPhase:
    """``[[train.phase]] optimizer = "msqn"``: the stochastic multi-secant quasi-Newton step (see
    :mod:`vpinn.train.optimizers.msqn`) from the last ``memory`` secant pairs, each measured on
    one minibatch of ``batch`` points (0: exact gradients of the whole rule), step ``lr``,
    relative ``regularisation`` of the least-squares fit."""

    optimizer: Literal["msqn"]
    steps: int = 1000
    batch: int = 0
    memory: int = 10
    lr: float = 1.0
    regularisation: float = 1e-6
    dtype: Dtype = "float64"
    time_share: float = 0.0
    eval_every: int = 0

    def __post_init__(self) -> None:
        _check_phase(self.steps, self.time_share, self.eval_every)
        _at_least(1, "memory", self.memory)
        if self.batch < 0:
            raise SpecError("batch", f"must be 0 (exact) or positive, not {self.batch}")
        _positive("lr", self.lr)
        if self.regularisation < 0:
            raise SpecError("regularisation", f"must not be negative, not {self.regularisation}")



PhaseSpec = AdamPhase | LbfgsPhase | EngdPhase | MsqnPhase

#: the ``[train]`` keys of the short-form schedule (Adam, then ``[train.lbfgs]``)
SHORT_FORM = ("steps", "lr", "warmup", "decay", "lr_final", "clip", "dtype", "lbfgs")

#: keys every phase has, or that name rules (assembly turns them into rule objects)
_PHASE_KEYS = frozenset({"optimizer", "steps", "dtype", "time_share", "eval_every", "rule", "gram_rule"})


def optimizer_options(phase: PhaseSpec) -> dict:
    """The phase's own options, passed to its optimiser as keyword arguments."""
    return {f.name: getattr(phase, f.name) for f in dataclasses.fields(phase) if f.name not in _PHASE_KEYS}


@dataclass(frozen=True)
class LbfgsSpec:
    """``[train.lbfgs]``: the optional full-batch L-BFGS finishing phase on ``quadrature.finish``.

    The exact gradient of the finishing rule is accumulated over chunks of ``train.chunk``
    points, so memory stays bounded.  ``iterations = 0`` skips the phase.  Under a time budget
    (``train.max_time`` or ``--max-time``) this phase gets ``time_share`` of it.
    """

    iterations: int = 0
    dtype: Literal["float32", "float64"] = "float64"
    history: int = 50
    tolerance: float = 1e-12
    time_share: float = 0.5

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise SpecError("iterations", f"must be 0 (off) or positive, not {self.iterations}")
        _at_least(1, "history", self.history)
        if not 0 < self.time_share < 1:
            raise SpecError("time_share", f"must be between 0 and 1, not {self.time_share}")


@dataclass(frozen=True)
class TrainSpec:
    """``[train]``: the batch sizes, seed, budget, logging and chunk size of a run, and its
    schedule: ``[[train.phase]]`` entries (optimisers in turn), or the short form ``steps, lr,
    warmup, decay, lr_final, clip`` (Adam) plus ``[train.lbfgs]`` (see :attr:`phases`).

    ``memory_limit`` (e.g. ``"2GiB"``) replaces ``batch`` (with ``batch = "auto"``: ``micro_batch``)
    by the largest batch whose training steps fit in that much memory above the process's idle
    baseline (see :mod:`vpinn.measurement.budget`).  ``batch`` left out means
    :data:`DEFAULT_BATCH` of the device (:meth:`on_device`).

    Sampling and batch control (:mod:`vpinn.sampling`, :mod:`vpinn.train.batching`):
    ``sampling`` picks the minibatch sampler; ``strata`` (0: a quarter of the batch),
    ``allocation``, ``refresh_every`` and ``uniform_mix`` configure the stratified and importance
    samplers.  ``batch = "auto"`` starts at ``batch_start`` and doubles whenever, by the measured
    gradient noise scale and ``step_overhead`` (a step's fixed cost in points; 0: the device's
    :data:`DEFAULT_STEP_OVERHEAD`), a doubling raises the expected gain of the loss per
    second, or whenever the SNR of Adam's update in its own metric falls below ``snr_threshold``
    (0: never; :mod:`vpinn.train.batching`), up to ``batch_max`` (0: the
    training rule's size); ``micro_batch`` is the most points evaluated at once (0: the whole
    batch, or ``chunk`` for ``"auto"``), larger batches accumulate gradients over micro-batches.  ``lr_scaling`` rescales Adam's
    learning rate with the batch (``sqrt``: by sqrt(b / b0)); ``term_allocation = "neyman"``
    splits the batch between the volume and boundary terms by their measured noise.

    Under ``torchrun`` (:mod:`vpinn.distributed`) ``batch`` and ``boundary_batch`` are per rank
    (the global batch is K times larger); ``compression`` (with ``bits`` for ``"dither"``) is how
    the ranks sum minibatch gradients, and ``compensate`` raises the batch by the dither's added
    variance (:mod:`vpinn.distributed.compensate`).
    """

    steps: int = 2000
    batch: int | Literal["auto"] | None = None
    boundary_batch: int = 1024
    sampling: Literal["uniform", "stratified", "sobol", "importance"] = "uniform"
    strata: int = 0
    allocation: Literal["proportional", "neyman"] = "proportional"
    refresh_every: int = 20
    uniform_mix: float = 0.1
    batch_start: int = 512
    batch_max: int = 0
    micro_batch: int = 0
    step_overhead: int = 0
    snr_threshold: float = 1.0
    lr_scaling: Literal["sqrt", "linear", "none"] = "none"
    term_allocation: Literal["fixed", "neyman"] = "fixed"
    lr: float = 1e-3
    warmup: int = 100
    decay: Literal["cosine", "exponential", "constant"] = "cosine"
    lr_final: float = 1e-5
    clip: float | Literal["auto"] = 0.0
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    max_time: float = 0.0
    log_every: int = 10
    eval_every: int = 500
    checkpoint_every: int = 500
    chunk: int = 65536
    memory_limit: str = ""
    compression: Literal["none", "fp16", "bf16", "powersgd", "dither"] = "none"
    bits: int = 6
    compensate: bool = False
    lbfgs: LbfgsSpec = LbfgsSpec()
    phase: tuple[PhaseSpec, ...] = ()

    def __post_init__(self) -> None:
        for name in ("boundary_batch", "log_every", "eval_every", "checkpoint_every", "chunk", "batch_start", "refresh_every"):
            _at_least(1, name, getattr(self, name))
        if self.batch not in ("auto", None):
            _at_least(1, "batch", self.batch)
        for name in ("strata", "batch_max", "micro_batch", "step_overhead"):
            _at_least(0, name, getattr(self, name))
        if self.snr_threshold < 0:
            raise SpecError("snr_threshold", f"must be 0 (off) or positive, not {self.snr_threshold}")
        if not 0.1 <= self.uniform_mix <= 1:
            raise SpecError("uniform_mix", f"must be between 0.1 and 1 (the uniform share of the proposal), not {self.uniform_mix}")
        if not 2 <= self.bits <= 16:
            raise SpecError("bits", f"must be between 2 and 16, not {self.bits}")
        if self.compensate and self.compression != "dither":
            raise SpecError("compensate", f"needs compression = \"dither\" (the only one with a known added variance), "
                                          f"not {self.compression!r}")
        for name in ("steps", "warmup"):
            if getattr(self, name) < 0:
                raise SpecError(name, f"must not be negative, not {getattr(self, name)}")
        _positive("lr", self.lr)
        _positive("lr_final", self.lr_final)
        _check_clip(self.clip)
        if self.max_time < 0:
            raise SpecError("max_time", f"must be 0 (no limit) or positive seconds, not {self.max_time}")
        _seed("seed", self.seed)
        if self.memory_limit:
            try:
                _positive("memory_limit", parse_bytes(self.memory_limit))
            except ValueError as err:
                raise SpecError("memory_limit", str(err)) from None

    @property
    def phases(self) -> tuple[PhaseSpec, ...]:
        """The training schedule: the ``[[train.phase]]`` entries, or, for a file without them,
        Adam as ``steps, lr, warmup, decay, lr_final, clip, dtype`` say, then L-BFGS on the
        finishing rule if ``[train.lbfgs] iterations > 0``."""
        if self.phase:
            return self.phase
        adam = AdamPhase("adam", self.steps, self.lr, self.warmup, self.decay, self.lr_final, self.clip, self.dtype,
                         1 - self.lbfgs.time_share if self.lbfgs.iterations else 0.0)
        if not self.lbfgs.iterations:
            return (adam,)
        lbfgs = self.lbfgs
        return adam, LbfgsPhase("lbfgs", lbfgs.iterations, lbfgs.history, lbfgs.tolerance, "finish", lbfgs.dtype,
                                eval_every=max(1, lbfgs.iterations // 20))

    def on_device(self, device_type: str) -> "TrainSpec":
        """This section with ``batch`` set to the device's :data:`DEFAULT_BATCH` if the file left
        it out (a process on ``device_type``, "cpu" or "cuda", reads this one)."""
        return self if self.batch is not None else dataclasses.replace(self, batch=DEFAULT_BATCH[device_type])

    @property
    def initial_batch(self) -> int:
        """The volume term's batch at the first step: ``batch``, or ``batch_start`` for ``"auto"``."""
        return self.batch_start if self.batch == "auto" else self.batch

    @property
    def memory_limit_bytes(self) -> int | None:
        """``memory_limit`` in bytes, or None when not set."""
        return parse_bytes(self.memory_limit) if self.memory_limit else None


@dataclass(frozen=True)
class OutputSpec:
    """``[output]``: where and what to write.

    ``directory`` defaults to ``results/<name>``; ``grid`` is the number of nodes per direction
    of the structured grid written to ``solution.vtu`` (and ``.xdmf`` if listed in ``formats``).
    """

    directory: str = ""
    grid: tuple[int, int, int] = (33, 33, 33)
    formats: tuple[Literal["vtu", "xdmf"], ...] = ("vtu",)

    def __post_init__(self) -> None:
        for i, n in enumerate(self.grid):
            _at_least(2, f"grid[{i}]", n)


@dataclass(frozen=True)
class ProblemSpec:
    """A whole problem file."""

    name: str
    description: str = ""
    constants: dict = field(default_factory=dict)
    domain: DomainSpec = BoxSpec()
    pde: PdeSpec = PoissonSpec()
    bc: tuple[BoundarySpec, ...] = ()
    exact: ExactSpec | None = None
    quadrature: QuadratureSpec = QuadratureSpec()
    model: ModelSpec = ModelSpec()
    train: TrainSpec = TrainSpec()
    output: OutputSpec = OutputSpec()

    def __post_init__(self) -> None:
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name) or set(self.name) == {"."}:
            raise SpecError("name", f"must be a non-empty file-name-safe string (letters, digits, - _ .), not {self.name!r}")
        if len(self.name.encode()) > MAX_NAME_BYTES:
            raise SpecError("name", f"must be at most {MAX_NAME_BYTES} bytes long (it names the results directory), "
                                    f"not {len(self.name.encode())}")

    def output_path(self, override: str | None = None) -> Path:
        """Where results go: ``override`` (``--out``), else ``[output] directory``, else ``results/<name>``."""
        return Path(override or self.output.directory or Path("results") / self.name).expanduser()
