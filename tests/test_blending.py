"""Different Dirichlet data on different faces: the blended lift meets each face's data exactly,
its gradient is right, and a solve with such data converges to the exact solution.

Exact solution of the trained case: u* = x y + z (harmonic), Dirichlet on x = 0 (u = z) and on
x = 1 (u = y + z), the exact flux on the other four faces.
"""

from __future__ import annotations

import textwrap

import pytest
import torch

from conftest import REPO, assembled, central_differences
from vpinn.fields.blending import BlendedLift

F64 = torch.float64


def problem(domain: str, faces: tuple[str, str], rule: str) -> str:
    return textwrap.dedent(f"""
        name = "blend"
        {domain}
        [pde]
        type = "poisson"
        source = "0"
        [[bc]]
        type = "dirichlet"
        on = ["{faces[0]}"]
        value = "z"
        [[bc]]
        type = "dirichlet"
        on = ["{faces[1]}"]
        value = "y + z"
        [[bc]]
        type = "neumann"
        on = ["ymin", "ymax", "zmin", "zmax"]
        value = "auto"
        [exact]
        u = "x*y + z"
        {rule}
        [model]
        width = 16
        depth = 2
        [train]
        steps = 300
        lr = 1e-2
        warmup = 20
        batch = 512
        boundary_batch = 256
        eval_every = 300
        chunk = 20000
        """)


BOX = problem('[domain]\ntype = "box"', ("xmin", "xmax"), textwrap.dedent("""
    [quadrature]
    cells = [8, 8, 8]
    order = 2
    [quadrature.boundary]
    cells = [8, 8]
    [quadrature.evaluation]
    cells = [6, 6, 6]
    order = 3
    [quadrature.finish]
    cells = [4, 4, 4]
    """))
MESH = problem(f'[domain]\ntype = "mesh"\nfile = "{REPO / "problems" / "meshes" / "cube.msh"}"', ("xmin", "xmax"),
               "\n".join(f'[quadrature{k}]\nrule = "simplex"' for k in ("", ".boundary", ".evaluation", ".finish")))


@pytest.mark.parametrize("text", [BOX, MESH], ids=["box", "mesh"])
def test_the_trial_function_meets_each_faces_data(tmp_path, text):
    path = tmp_path / "p.toml"
    path.write_text(text)
    _, assembly = assembled(path)
    lift = assembly.trial.lifts[0]
    assert isinstance(lift, BlendedLift)
    generator = torch.Generator().manual_seed(0)
    y, z = torch.rand(200, 1, dtype=F64, generator=generator), torch.rand(200, 1, dtype=F64, generator=generator)
    for x, data in ((0.0, z[:, 0]), (1.0, (y + z)[:, 0])):
        points = torch.cat([torch.full_like(y, x), y, z], 1)
        u = assembly.trial.value(points)[:, 0]  # whatever the (random) network is
        assert torch.allclose(u, data, atol=1e-12)
    inside = torch.rand(50, 3, dtype=F64, generator=generator) * 0.8 + 0.1
    value, grad = lift.value_and_gradient(inside)
    assert torch.allclose(grad, central_differences(lambda p: lift(p)[:, None], inside)[:, 0], atol=1e-8)


def test_faces_meeting_average_their_data():
    """Where two faces with data meet (both distances 0) the data are averaged, not NaN."""
    from vpinn.geometry import Box

    box = Box((0, 0, 0), (1, 1, 1))
    lift = BlendedLift([(box.distance(("xmin",)), _expression("1")), (box.distance(("ymin",)), _expression("3"))])
    value, grad = lift.value_and_gradient(torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]], dtype=F64))
    assert value.tolist() == [2.0, 1.0, 3.0] and torch.isfinite(grad).all()


def _expression(text: str):
    from vpinn.expressions import parse_expression

    return parse_expression(text)


def test_a_solve_with_blended_data_converges(tmp_path):
    """300 Adam steps on the box (about 5 s on 2 cores): relative L2 error below 2e-2."""
    from conftest import trainer_for

    path = tmp_path / "p.toml"
    path.write_text(BOX)
    trainer = trainer_for(path)
    trainer.run()
    assert trainer.history[-1]["rel_l2"] < 2e-2
