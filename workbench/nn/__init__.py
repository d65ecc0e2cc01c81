"""Deep reconstruction: models, data, training, weights.

- :mod:`workbench.nn.primal_net` the unrolled primal network (XPDNet with a Cartesian operator, NC-PDNet with a
  NUFFT + density compensation operator: one implementation),
- :mod:`workbench.nn.mwcnn` its image network, :mod:`workbench.nn.sens_net` the coil map refinement,
- :mod:`workbench.nn.unet` the fastMRI U-net and the post-processing baseline,
- :mod:`workbench.nn.batch` the batch / operator interface, :mod:`workbench.nn.data` the data sets,
- :mod:`workbench.nn.adapt` scan-specific self-supervised adaptation of a trained network (ZS-SSL),
- :mod:`workbench.nn.train` the training loop (single process or torchrun/DDP), :mod:`workbench.nn.weights`
  safetensors weights with a JSON sidecar.

Importing this package is light; torch models are imported by :func:`build_model`.
"""

from __future__ import annotations

from typing import Any

MODEL_NAMES = ("xpdnet", "ncpdnet", "unet", "dsm")


def build_model(name: str, config: dict[str, Any] | None = None):
    """A fresh model by name (``xpdnet``, ``ncpdnet``: :class:`~workbench.nn.primal_net.PrimalNet`;
    ``unet``: :class:`~workbench.nn.unet.UnetRecon`) from its architecture config dict."""
    from workbench.errors import WorkbenchError

    config = dict(config or {})
    if name in ("xpdnet", "ncpdnet"):
        from workbench.nn.primal_net import PrimalNet, PrimalNetConfig

        model = PrimalNet(PrimalNetConfig(**config))
        model.model_name = name
        return model
    if name == "unet":
        from workbench.nn.unet import UnetRecon, UnetReconConfig

        return UnetRecon(UnetReconConfig(**config))
    if name == "dsm":  # the noise-conditional score network of the posterior sampler
        from workbench.nn.score_net import ScoreNet, ScoreNetConfig

        return ScoreNet(ScoreNetConfig(**config))
    raise WorkbenchError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
