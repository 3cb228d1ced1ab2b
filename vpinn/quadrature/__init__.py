"""Quadrature rules: lazy composite Gauss-Legendre and scrambled Sobol on mapped parameter boxes,
lazy simplex (tetrahedron and triangle) rules on meshes."""

from vpinn.quadrature.base import ConcatRule, MappedRule, PointBatch, QuadratureRule
from vpinn.quadrature.gauss import GaussRule, gauss_legendre_unit
from vpinn.quadrature.simplex import SimplexMeshRule
from vpinn.quadrature.sobol import SobolRule

__all__ = ["ConcatRule", "GaussRule", "MappedRule", "PointBatch", "QuadratureRule", "SimplexMeshRule", "SobolRule", "gauss_legendre_unit"]
