"""Hand-drawn Cartesian masks: the edits (whole phase-encode lines, discs, clearing, optionally mirrored through
the k-space centre) and their undo / redo history, on plain bool ``[H, W]`` numpy arrays (no Qt, no session).

The editor never holds the current mask: each call is given it and returns the new one, so the owner decides
what the mask is (the session keeps it in the hand-drawn sampling's recipe).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np


class MaskEditor:
    """Undo / redo of hand-drawn masks; every edit between :meth:`begin_stroke` and :meth:`end_stroke` (a mouse
    stroke) is one undo step."""

    MAX_UNDO = 200

    def __init__(self) -> None:
        self._undo: list[np.ndarray] = []
        self._redo: list[np.ndarray] = []
        self._stroke_open: bool | str = False

    def clear_history(self) -> None:
        self._undo.clear()
        self._redo.clear()

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    @property
    def can_redo(self) -> bool:
        return bool(self._redo)

    def _push_undo(self, mask: np.ndarray) -> None:
        self._undo.append(mask.copy())
        if len(self._undo) > self.MAX_UNDO:
            del self._undo[0]

    def record(self, mask: np.ndarray) -> None:
        """``mask`` is about to be replaced by an edit: keep it for undo (once per stroke)."""
        if not self._stroke_open or not self._undo:
            self._push_undo(mask)
        if self._stroke_open:
            self._stroke_open = "dirty"
        self._redo.clear()

    def begin_stroke(self, mask: np.ndarray) -> None:
        self._push_undo(mask)
        self._redo.clear()
        self._stroke_open = True

    def end_stroke(self, mask: np.ndarray) -> None:
        if self._stroke_open is True and self._undo:
            # nothing changed during the stroke: drop its snapshot
            if np.array_equal(self._undo[-1], mask):
                self._undo.pop()
        self._stroke_open = False

    def undo(self, mask: np.ndarray) -> np.ndarray | None:
        """The mask before the last edit (None: nothing to undo); ``mask`` goes to the redo stack."""
        if not self._undo:
            return None
        self._redo.append(mask.copy())
        return self._undo.pop()

    def redo(self, mask: np.ndarray) -> np.ndarray | None:
        if not self._redo:
            return None
        self._push_undo(mask)
        return self._redo.pop()


def _mirror_cols(cols: np.ndarray, width: int) -> np.ndarray:
    mirrored = 2 * (width // 2) - cols
    return np.concatenate([cols, mirrored[(mirrored >= 0) & (mirrored < width)]])


def with_lines(mask: np.ndarray, columns: Iterable[int], value: bool, symmetric: bool = False) -> np.ndarray:
    """A copy of ``mask`` with whole phase-encode lines (columns) set to ``value`` (and their mirror images
    through the centre when ``symmetric``)."""
    mask = mask.copy()
    cols = np.asarray(list(columns), dtype=int)
    cols = cols[(cols >= 0) & (cols < mask.shape[1])]
    if symmetric:
        cols = _mirror_cols(cols, mask.shape[1])
    mask[:, cols] = bool(value)
    return mask


def line_is_on(mask: np.ndarray, column: int) -> bool:
    return bool(mask[:, int(column)].all())


def with_disc(mask: np.ndarray, row: float, col: float, radius: float, value: bool,
              symmetric: bool = False) -> np.ndarray:
    """A copy of ``mask`` with a disc of ``radius`` pixels at (row, col) set to ``value`` (point-mirrored
    through the centre when ``symmetric``)."""
    mask = mask.copy()
    h, w = mask.shape
    rr, cc = np.ogrid[:h, :w]
    disc = (rr - row) ** 2 + (cc - col) ** 2 <= radius**2
    if symmetric:
        disc |= (rr - (2 * (h // 2) - row)) ** 2 + (cc - (2 * (w // 2) - col)) ** 2 <= radius**2
    mask[disc] = bool(value)
    return mask
