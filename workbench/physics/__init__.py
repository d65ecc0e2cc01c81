"""Physics of the measurement: FFT convention, linear operators, SENSE forward models, coil sensitivities.

torchkbnufft is imported only when a :class:`NufftSense` is built, so importing this package stays light.
"""

from workbench.physics.coils import (
    calibration_from_noncartesian,
    calibration_region,
    estimate_acs_maps,
    estimate_espirit_maps,
    maps_from_noncartesian,
)
from workbench.physics.fft import center_crop, center_pad, fft2c, ifft2c, rss
from workbench.physics.linop import Identity, Linop, Multiply, adjointness_error
from workbench.physics.nufft import NufftSense, as_trajectory
from workbench.physics.sense import CartesianSense, as_mask

__all__ = [
    "CartesianSense",
    "Identity",
    "Linop",
    "Multiply",
    "NufftSense",
    "adjointness_error",
    "as_mask",
    "as_trajectory",
    "calibration_from_noncartesian",
    "calibration_region",
    "center_crop",
    "center_pad",
    "estimate_acs_maps",
    "estimate_espirit_maps",
    "fft2c",
    "ifft2c",
    "maps_from_noncartesian",
    "rss",
]
