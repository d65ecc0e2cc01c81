"""What the compare tabs are given: one :class:`ColumnData` per compared image, plain values read from the
session by the compare view (the tabs never ask the session themselves)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

REFERENCE = "reference"
ZERO_FILLED = "zero-filled"


@dataclass
class ColumnData:
    """One compared image.

    Attributes:
        key: ``"reference"``, ``"zero-filled"`` or a result id.
        label: its name in titles, legends and tables.
        image: ``[H, W]`` complex or real, scaled to the reference as its metrics are; None while it is computed.
        note: what follows the label in the panel's title (``"<br>PSNR 31.20 dB, SSIM 0.870"``,
            ``" (running 40%)"``, ``" (computing…)"``).
        error: ``[H, W]`` error map against the reference (absolute or relative), for the error row.
        std: ``[H, W]`` posterior standard deviation, for the std row.
        metrics: ``{"psnr", "ssim", "nmse"}`` against the reference (empty without one).
        elapsed: seconds the reconstruction took.
        calibration: the session's calibration of the std map (``Session.calibration``), for the calibration tab.
        chosen: what the method chose itself (``ResultEntry.chosen_text``: the automatic weight and its rule).
        outline: closed ``[n, 2]`` (row, column) polylines drawn over the image (the object mask's boundary,
            :func:`workbench.scoring.object_outline`); empty: none.
    """

    key: Any
    label: str
    image: np.ndarray | None = None
    note: str = ""
    error: np.ndarray | None = None
    std: np.ndarray | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    elapsed: float | None = None
    calibration: dict[str, Any] | None = None
    chosen: str = ""
    outline: list[np.ndarray] = field(default_factory=list)
