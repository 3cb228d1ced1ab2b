"""Domains: parameter maps for quadrature, boundary parts, distance functions for hard BCs."""

from vpinn.geometry.box import FACE_AXES, Box, BoxDistance
from vpinn.geometry.maps import BoxFaceMap, BoxVolumeMap, MappedPoints, ParameterMap

__all__ = ["FACE_AXES", "Box", "BoxDistance", "BoxFaceMap", "BoxVolumeMap", "MappedPoints", "ParameterMap"]
