"""vpinn: variational physics-informed neural networks (Deep Ritz / deep energy method).

The flow of a solve, one module per step (see README and ../shared/DESIGN.md):
:mod:`vpinn.problem` -> :mod:`vpinn.geometry` -> :mod:`vpinn.quadrature` -> :mod:`vpinn.sampling`
-> :mod:`vpinn.fields` -> :mod:`vpinn.physics` -> :mod:`vpinn.train` -> :mod:`vpinn.evaluate`
-> :mod:`vpinn.export`; :mod:`vpinn.cli` is the only module that knows about terminals.
"""

from vpinn.problem import ProblemSpec, load_problem
from vpinn.setup import Setup, build_setup
from vpinn.solve import SolveOptions, solve

__all__ = ["ProblemSpec", "Setup", "SolveOptions", "build_setup", "load_problem", "solve"]
__version__ = "0.1.0"
