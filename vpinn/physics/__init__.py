"""PDEs in energy form: each module builds a :class:`~vpinn.physics.base.Physics`."""

from vpinn.physics import elasticity, poisson
from vpinn.physics.base import ExactSolution, Physics, Term, integrand
from vpinn.problem.spec import ElasticitySpec, PoissonSpec

#: pde type (the ``[pde] type`` key) -> builder(spec, domain, field) -> Physics
BUILDERS = {"poisson": poisson.build, "elasticity": elasticity.build}

#: pde type -> number of solution components (the network's outputs)
COMPONENTS = {"poisson": PoissonSpec.components, "elasticity": ElasticitySpec.components}

__all__ = ["BUILDERS", "COMPONENTS", "ExactSolution", "Physics", "Term", "integrand"]
