"""Independent numpy definitions of the project's conventions, for tests to check the library against: the
centred orthonormal FFT (``fftshift(fft2(ifftshift(x), norm="ortho"))`` over the last two axes) and the centre
crop (fastMRI's: the top-left corner at ``h // 2 - out_h // 2``)."""

import numpy as np

AXES = (-2, -1)


def np_fft2c(x: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(x, axes=AXES), norm="ortho"), axes=AXES)


def np_ifft2c(k: np.ndarray) -> np.ndarray:
    return np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k, axes=AXES), norm="ortho"), axes=AXES)


def np_crop(x: np.ndarray, shape) -> np.ndarray:
    h, w = x.shape[-2:]
    t, l = h // 2 - shape[0] // 2, w // 2 - shape[1] // 2
    return x[..., t : t + shape[0], l : l + shape[1]]
