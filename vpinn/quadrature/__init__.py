"""Quadrature rules: lazy composite Gauss-Legendre and scrambled Sobol, on mapped parameter boxes."""

from vpinn.geometry.maps import ParameterMap
from vpinn.problem.spec import RuleSpec
from vpinn.quadrature.base import ConcatRule, MappedRule, PointBatch, QuadratureRule
from vpinn.quadrature.gauss import GaussRule, gauss_legendre_unit
from vpinn.quadrature.sobol import SobolRule


def build_rule(spec: RuleSpec, mapping: ParameterMap) -> MappedRule:
    """The rule described by ``spec`` on ``mapping``'s parameter box."""
    if spec.rule == "gauss":
        return GaussRule(mapping, spec.cells, spec.order)
    return SobolRule(mapping, spec.points, spec.seed)


__all__ = [
    "ConcatRule", "GaussRule", "MappedRule", "PointBatch", "QuadratureRule", "SobolRule",
    "build_rule", "gauss_legendre_unit",
]
