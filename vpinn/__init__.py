"""vpinn: variational physics-informed neural networks (Deep Ritz / deep energy method).

The flow of a solve, one module per step (README, "How a solve works"):
:mod:`vpinn.problem` (problem files) -> :mod:`vpinn.assemble` (the one reader of the spec) ->
:mod:`vpinn.geometry`, :mod:`vpinn.quadrature`, :mod:`vpinn.sampling`, :mod:`vpinn.fields`,
:mod:`vpinn.physics` -> :mod:`vpinn.train` -> :mod:`vpinn.evaluate`, :mod:`vpinn.export`;
:mod:`vpinn.commands` is the only layer that knows about terminals, signals and arguments.

The names below are imported on first use, so that ``import vpinn.<module>`` stays cheap (the
measurement subprocesses of ``run.py memory`` start faster without matplotlib and meshio).
"""

import importlib

__version__ = "0.1.0"
_EXPORTS = {
    "ProblemSpec": "vpinn.problem", "load_problem": "vpinn.problem",
    "Assembly": "vpinn.assemble", "assemble": "vpinn.assemble", "build_trainer": "vpinn.assemble",
    "SolveOptions": "vpinn.commands.solve", "solve": "vpinn.commands.solve",
    "Solution": "vpinn.solution", "load": "vpinn.solution",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'vpinn' has no attribute {name!r}")
