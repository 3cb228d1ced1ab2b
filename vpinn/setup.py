"""Build the objects of a solve from a validated problem spec.

``ProblemSpec -> Setup``: the domain, the network (on the device, in the training dtype), the
physics (loss terms with their training rules, trial function, exact solution) and the rules for
evaluation and for the L-BFGS finishing phase.  Nothing here reads files or trains.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from vpinn.fields.network import Field
from vpinn.geometry import Box, Domain, SphereOctant
from vpinn.physics import BUILDERS, COMPONENTS, Physics
from vpinn.problem.spec import ProblemSpec
from vpinn.quadrature import QuadratureRule, build_rule

DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Setup:
    """A problem ready to train: see the module docstring."""

    spec: ProblemSpec
    device: torch.device
    domain: Domain
    field: Field
    physics: Physics
    evaluation_rule: QuadratureRule
    finish_rule: QuadratureRule

    @property
    def dtype(self) -> torch.dtype:
        """The network's current dtype (it changes for the finishing phase)."""
        return self.field.weights[0].dtype


#: ``[domain] type`` -> builder of the domain object from its spec
DOMAINS = {
    "box": lambda spec: Box(spec.lower, spec.upper),
    "sphere_octant": lambda spec: SphereOctant(spec.inner_radius, spec.outer_radius),
}


def build_domain(spec: ProblemSpec) -> Domain:
    """The domain object of ``[domain]``."""
    return DOMAINS[spec.domain.type](spec.domain)


def build_setup(spec: ProblemSpec, device: torch.device) -> Setup:
    """Everything a solve needs, with weights initialised from ``train.seed``."""
    domain = build_domain(spec)
    generator = torch.Generator().manual_seed(spec.train.seed)
    coordinates = domain.input_features() if spec.model.domain_coordinates else None
    field = Field(spec.model, COMPONENTS[spec.pde.type], domain.lower, domain.upper, generator, coordinates)
    field = field.to(device=device, dtype=DTYPES[spec.train.dtype])
    physics = BUILDERS[spec.pde.type](spec, domain, field)
    volume = domain.volume_map()
    return Setup(
        spec, device, domain, field, physics,
        evaluation_rule=build_rule(spec.quadrature.evaluation, volume),
        finish_rule=build_rule(spec.quadrature.finish, volume),
    )
