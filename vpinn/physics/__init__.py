"""PDEs in energy form: each module exports its forms and builds a :class:`~vpinn.physics.base.Physics`
from plain values (expressions, material constants, loads)."""

from vpinn.physics import elasticity, poisson
from vpinn.physics.base import ExactSolution, Form, Physics, Term, integrand, load_form, on_volume_rule

__all__ = ["ExactSolution", "Form", "Physics", "Term", "elasticity", "integrand", "load_form", "on_volume_rule", "poisson"]
