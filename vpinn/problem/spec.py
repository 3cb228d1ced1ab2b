"""The problem-file schema: one frozen dataclass per TOML section, defaults in one place.

A problem file (TOML) maps onto :class:`ProblemSpec`; the README documents every key.  Checks
that involve one section live in that section's ``__post_init__`` and raise
:class:`~vpinn.errors.SpecError` with the key relative to the section; checks across sections
live in :mod:`vpinn.problem.loader`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from vpinn.errors import SpecError
from vpinn.expressions import Expression, parse_expression

FACES: tuple[str, ...] = ("xmin", "xmax", "ymin", "ymax", "zmin", "zmax")


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(text: str) -> int:
    """``"2GiB"`` -> 2147483648; ``"1.5 GB"`` -> 1500000000; raises ValueError if malformed."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).lower() not in _BYTE_UNITS:
        raise ValueError(f"{text!r} is not a size such as 2GiB, 512MiB or 1.5GB")
    return int(float(match.group(1)) * _BYTE_UNITS[match.group(2).lower()])


def _positive(key: str, value: float) -> None:
    if not value > 0:
        raise SpecError(key, f"must be positive, not {value}")


@dataclass(frozen=True)
class BoxSpec:
    """``[domain]`` with ``type = "box"``: the axis-aligned box ``lower <= x <= upper``."""

    type: Literal["box"] = "box"
    lower: tuple[float, float, float] = (0.0, 0.0, 0.0)
    upper: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        for axis, (lo, hi) in enumerate(zip(self.lower, self.upper)):
            if not hi > lo:
                raise SpecError(f"upper[{axis}]", f"must exceed lower[{axis}] = {lo}, not {hi}")


DomainSpec = BoxSpec


@dataclass(frozen=True)
class PoissonSpec:
    """``[pde]`` with ``type = "poisson"``: ``-div(k grad u) = f``, solved as the minimiser of
    ``E(u) = integral of k|grad u|^2/2 - f u  -  integral over Neumann faces of h u``."""

    type: Literal["poisson"] = "poisson"
    source: Expression | Literal["auto"] = "auto"
    coefficient: Expression = field(default_factory=lambda: parse_expression("1"))

    def __post_init__(self) -> None:
        if self.coefficient.is_constant:
            _positive("coefficient", self.coefficient.constant_value)


PdeSpec = PoissonSpec


@dataclass(frozen=True)
class BoundarySpec:
    """One ``[[bc]]`` entry.

    ``dirichlet``: ``u = value`` on the faces, imposed exactly by the ansatz ``u = g + d*N``.
    ``neumann``: ``k du/dn = value`` on the faces, an extra boundary term in the energy.
    ``value = "auto"`` takes the data from ``[exact]``.  Faces named in no entry are natural
    (zero-flux) boundaries.
    """

    type: Literal["dirichlet", "neumann"]
    on: tuple[str, ...] = ("all",)
    value: Expression | Literal["auto"] = field(default_factory=lambda: parse_expression("0"))

    def __post_init__(self) -> None:
        for i, face in enumerate(self.on):
            if face not in (*FACES, "all"):
                raise SpecError(f"on[{i}]", f"unknown face {face!r} (faces: all, {', '.join(FACES)})")

    @property
    def faces(self) -> tuple[str, ...]:
        """The face names, with ``"all"`` expanded."""
        return FACES if "all" in self.on else self.on


@dataclass(frozen=True)
class ExactSpec:
    """``[exact]``: the analytic solution, if known; errors are reported against it."""

    u: Expression


@dataclass(frozen=True)
class RuleSpec:
    """A quadrature rule: ``gauss`` (composite Gauss-Legendre, ``order`` points per direction
    in each of ``cells`` cells) or ``sobol`` (``points`` scrambled Sobol points, equal weights)."""

    rule: Literal["gauss", "sobol"] = "gauss"
    cells: tuple[int, ...] = (16, 16, 16)
    order: int = 3
    points: int = 2**20
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.order <= 6:
            raise SpecError("order", f"must be between 1 and 6, not {self.order}")
        for i, n in enumerate(self.cells):
            if n < 1:
                raise SpecError(f"cells[{i}]", f"must be at least 1, not {n}")
        if self.points < 1:
            raise SpecError("points", f"must be at least 1, not {self.points}")


@dataclass(frozen=True)
class QuadratureSpec:
    """``[quadrature]``: the training rule, plus sub-tables for the other rules.

    ``boundary`` integrates Neumann faces (2D, per face); ``evaluation`` is the independent rule
    on which errors are measured; ``finish`` is the fixed rule of the L-BFGS finishing phase.
    """

    rule: Literal["gauss", "sobol"] = "gauss"
    cells: tuple[int, int, int] = (32, 32, 32)
    order: int = 3
    points: int = 2**20
    seed: int = 0
    boundary: RuleSpec = RuleSpec(cells=(32, 32), order=3)
    evaluation: RuleSpec = RuleSpec(cells=(12, 12, 12), order=4)
    finish: RuleSpec = RuleSpec(cells=(12, 12, 12), order=3)

    def __post_init__(self) -> None:
        RuleSpec(self.rule, self.cells, self.order, self.points, self.seed)  # same checks
        for name in ("evaluation", "finish"):
            if len(getattr(self, name).cells) != 3:
                raise SpecError(f"{name}.cells", "must have 3 entries")
        if len(self.boundary.cells) != 2:
            raise SpecError("boundary.cells", "must have 2 entries (a face is two-dimensional)")

    @property
    def training(self) -> RuleSpec:
        """The training rule as a :class:`RuleSpec`."""
        return RuleSpec(self.rule, self.cells, self.order, self.points, self.seed)


@dataclass(frozen=True)
class ModelSpec:
    """``[model]``: a fully connected network ``depth`` hidden layers of ``width`` units.

    ``derivatives`` picks how the spatial Jacobian is computed (all give the same numbers;
    ``run.py bench --methods all`` compares their speed).  ``fourier_features > 0`` maps the
    input through that many random Fourier features ``sin/cos(2 pi B x)``, ``B ~ N(0, scale^2)``.
    """

    width: int = 64
    depth: int = 3
    activation: Literal["tanh", "sin", "silu"] = "tanh"
    derivatives: Literal["fused", "autograd", "forward", "func"] = "fused"
    fourier_features: int = 0
    fourier_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.width < 1:
            raise SpecError("width", f"must be at least 1, not {self.width}")
        if self.depth < 1:
            raise SpecError("depth", f"must be at least 1, not {self.depth}")
        if self.fourier_features < 0:
            raise SpecError("fourier_features", f"must be 0 (off) or positive, not {self.fourier_features}")
        _positive("fourier_scale", self.fourier_scale)


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
        if self.history < 1:
            raise SpecError("history", f"must be at least 1, not {self.history}")
        if not 0 < self.time_share < 1:
            raise SpecError("time_share", f"must be between 0 and 1, not {self.time_share}")


@dataclass(frozen=True)
class TrainSpec:
    """``[train]``: Adam on minibatches, warmup then decay of the learning rate, clipping.

    ``memory_limit`` (e.g. ``"2GiB"``) replaces ``batch`` by the largest batch whose training
    steps fit in that much memory above the process's idle baseline (see :mod:`vpinn.budget`).
    """

    steps: int = 2000
    batch: int = 8192
    boundary_batch: int = 1024
    optimizer: Literal["adam"] = "adam"
    lr: float = 1e-3
    warmup: int = 100
    decay: Literal["cosine", "exponential", "constant"] = "cosine"
    lr_final: float = 1e-5
    clip: float = 0.0
    dtype: Literal["float32", "float64"] = "float32"
    seed: int = 0
    max_time: float = 0.0
    log_every: int = 10
    eval_every: int = 500
    checkpoint_every: int = 500
    chunk: int = 65536
    memory_limit: str = ""
    lbfgs: LbfgsSpec = LbfgsSpec()

    def __post_init__(self) -> None:
        for name in ("batch", "boundary_batch", "log_every", "eval_every", "checkpoint_every", "chunk"):
            if getattr(self, name) < 1:
                raise SpecError(name, f"must be at least 1, not {getattr(self, name)}")
        for name in ("steps", "warmup"):
            if getattr(self, name) < 0:
                raise SpecError(name, f"must not be negative, not {getattr(self, name)}")
        _positive("lr", self.lr)
        _positive("lr_final", self.lr_final)
        if self.clip < 0:
            raise SpecError("clip", f"must be 0 (off) or a positive gradient-norm bound, not {self.clip}")
        if self.max_time < 0:
            raise SpecError("max_time", f"must be 0 (no limit) or positive seconds, not {self.max_time}")
        if self.memory_limit:
            try:
                _positive("memory_limit", parse_bytes(self.memory_limit))
            except ValueError as err:
                raise SpecError("memory_limit", str(err)) from None

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
            if n < 2:
                raise SpecError(f"grid[{i}]", f"must be at least 2, not {n}")


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
        if not self.name or not all(c.isalnum() or c in "-_." for c in self.name):
            raise SpecError("name", f"must be a non-empty file-name-safe string (letters, digits, - _ .), not {self.name!r}")
