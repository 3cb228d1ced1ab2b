"""PDEs in energy form: each module builds a :class:`~vpinn.physics.base.Physics`."""

from vpinn.physics import poisson
from vpinn.physics.base import ExactSolution, Physics, Term, integrand

#: pde type (the ``[pde] type`` key) -> builder(spec, domain, field) -> Physics
BUILDERS = {"poisson": poisson.build}

#: pde type -> number of solution components
COMPONENTS = {"poisson": 1}

__all__ = ["BUILDERS", "COMPONENTS", "ExactSolution", "Physics", "Term", "integrand"]
