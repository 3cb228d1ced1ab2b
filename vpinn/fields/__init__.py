"""Neural fields with value and spatial Jacobian, and the hard-BC ansatz."""

from vpinn.fields.activations import ACTIVATIONS, Activation
from vpinn.fields.jacobian import JACOBIAN_METHODS
from vpinn.fields.network import Field

__all__ = ["ACTIVATIONS", "Activation", "Field", "JACOBIAN_METHODS"]
