"""A trained solution from its checkpoint: ``vpinn.load(checkpoint)`` evaluates it anywhere.

    >>> import vpinn
    >>> solution = vpinn.load("results/lame_sphere/checkpoint.pt")
    >>> fields = solution.fields(points)        # points (n, 3): dict of arrays, e.g. stress (n, 6)
    >>> u, grad_u = solution.u(points), solution.grad_u(points)   # (n, m), (n, m, 3)

The problem is rebuilt from the run's copy ``problem.toml`` beside the checkpoint, with the
run's ``--set`` overrides and with mesh files resolved against the original problem file (both
recorded in the checkpoint); the checkpoint's fingerprint must match it.  The tensors are read
onto the CPU whatever device trained them, and evaluation runs on ``device`` (CPU by default)
in chunks of ``chunk`` points, so memory stays bounded for any number of points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vpinn.assemble import Assembly, assemble, fingerprint
from vpinn.errors import VpinnError
from vpinn.export.grid import evaluate_fields
from vpinn.problem import ProblemSpec, parse_problem
from vpinn.train.checkpoint import check_fingerprint, load_checkpoint


@dataclass
class Solution:
    """A trained trial function with its problem: see the module docstring."""

    spec: ProblemSpec
    assembly: Assembly
    dtype: torch.dtype
    chunk: int = 65536

    @property
    def device(self) -> torch.device:
        return self.assembly.device

    def _tensor(self, points) -> torch.Tensor:
        array = np.asarray(points, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != 3:
            raise VpinnError(f"points must have shape (n, 3), not {array.shape}")
        return torch.from_numpy(array)

    def evaluate(self, points) -> tuple[np.ndarray, np.ndarray]:
        """``u`` (n, m) and its Jacobian ``grad u`` (n, m, 3) at ``points`` (n, 3), float64 arrays."""
        x = self._tensor(points)
        values, grads = [], []
        with torch.no_grad():
            for start in range(0, len(x), self.chunk):
                u, grad_u = self.assembly.trial(x[start:start + self.chunk].to(self.device, self.dtype))
                values.append(u.double().cpu().numpy())
                grads.append(grad_u.double().cpu().numpy())
        m = self.spec.pde.components
        return (np.concatenate(values) if values else np.zeros((0, m)),
                np.concatenate(grads) if grads else np.zeros((0, m, 3)))

    def u(self, points) -> np.ndarray:
        """The solution (n, m) at ``points`` (n, 3)."""
        return self.evaluate(points)[0]

    def grad_u(self, points) -> np.ndarray:
        """Its gradient (n, m, 3): ``[:, k, j] = du_k/dx_j``."""
        return self.evaluate(points)[1]

    def fields(self, points) -> dict[str, np.ndarray]:
        """The physics' derived fields at ``points`` (n, 3) (Poisson: ``u``, ``grad_u``;
        elasticity: ``displacement``, ``strain``, ``stress`` (Voigt: xx yy zz xy yz xz),
        ``von_mises``) and, with an exact solution, ``<primary>_exact`` and ``error``."""
        assembly = self.assembly
        return evaluate_fields(assembly.physics, assembly.trial, np.asarray(points, dtype=np.float64), self.chunk,
                               self.device, self.dtype)


    def boundary_fields(self, points, normals) -> dict[str, np.ndarray]:
        """The physics' boundary fields at ``points`` (n, 3) with outward unit ``normals`` (n, 3):
        Poisson ``flux`` = k grad u . n (n,), elasticity ``traction`` = sigma n (n, 3); with an
        exact solution also ``<name>_exact``."""
        physics, x, n = self.assembly.physics, self._tensor(points), self._tensor(normals)
        pieces: dict[str, list[np.ndarray]] = {}
        with torch.no_grad():
            for start in range(0, len(x), self.chunk):
                part = slice(start, start + self.chunk)
                xs, ns = x[part].to(self.device, self.dtype), n[part].to(self.device, self.dtype)
                fields = physics.boundary_fields(xs, *self.assembly.trial(xs), ns)
                if physics.exact is not None:
                    fields.update({f"{k}_exact": v for k, v in physics.boundary_fields(xs, *physics.exact(xs), ns).items()})
                for name, value in fields.items():
                    pieces.setdefault(name, []).append(value.double().cpu().numpy())
        return {name: np.concatenate(parts) for name, parts in pieces.items()}


def load(checkpoint: str | Path, device: str | torch.device = "cpu", chunk: int = 65536) -> Solution:
    """The solution saved in ``checkpoint`` (a ``checkpoint.pt`` written by ``run.py solve``)."""
    path = Path(checkpoint)
    state = load_checkpoint(path)
    copy = path.parent / "problem.toml"
    original = Path(state.get("problem_file", copy))
    source = copy if copy.exists() else original
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as err:
        raise VpinnError(f"{path}: cannot read its problem file {source} ({err.strerror})") from None
    spec = parse_problem(text, str(original), dict(state.get("overrides", {})))
    check_fingerprint(state, fingerprint(spec), path)
    device = torch.device(device)
    assembly = assemble(spec, device)
    dtype = getattr(torch, state["dtype"])
    assembly.field.to(dtype=dtype)
    assembly.field.load_state_dict(state["model"])
    assembly.field.eval()
    return Solution(spec, assembly, dtype, chunk)
