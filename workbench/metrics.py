"""Image quality metrics (fastMRI definitions): the names of :mod:`workbench.scoring` that this module held
before scoring had one home, kept importable for existing code (``from workbench.metrics import evaluate``)."""

from workbench.scoring import SSIM_WIN_SIZE, error_map, evaluate, nmse, prepare, psnr, ssim

__all__ = ["SSIM_WIN_SIZE", "prepare", "nmse", "psnr", "ssim", "error_map", "evaluate"]
