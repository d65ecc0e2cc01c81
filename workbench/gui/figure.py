"""A labelled comparison figure (PNG) drawn with QPainter from what the compare view shows: one column per
image (title, PSNR / SSIM / time), its error map below, std maps when present, and colour bars with values; a
caption under the title (which scoring mode gave the numbers) and the object outline over the images when shown."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PyQt6 import QtCore, QtGui

from workbench.gui.common import colormap


@dataclass
class Tile:
    array: np.ndarray  # real [H, W]
    levels: tuple[float, float]
    cmap: str


@dataclass
class FigureColumn:
    title: str
    subtitle: str
    image: Tile
    error: Tile | None = None
    std: Tile | None = None
    outline: list[np.ndarray] = field(default_factory=list)  # [n, 2] (row, column) polylines over the image


def to_qimage(tile: Tile) -> QtGui.QImage:
    """Colour-mapped RGB QImage of a tile (values clipped to its levels)."""
    lo, hi = tile.levels
    a = (np.asarray(tile.array, np.float64) - lo) / ((hi - lo) or 1.0)
    a = np.nan_to_num(np.clip(a, 0.0, 1.0))
    lut = colormap(tile.cmap).getLookupTable(nPts=256, alpha=False).astype(np.uint8)
    rgb = np.ascontiguousarray(lut[(a * 255).astype(np.uint8)])
    h, w = a.shape
    img = QtGui.QImage(rgb.data, w, h, 3 * w, QtGui.QImage.Format.Format_RGB888)
    return img.copy()  # own the pixels (rgb is freed when this returns)


def render_figure(columns: list[FigureColumn], title: str = "", tile_width: int = 256,
                  caption: str = "", pixel_aspect: float = 1.0) -> QtGui.QImage:
    """Compose the figure; ``caption``: a line under the title (e.g. the scoring mode of the numbers);
    ``pixel_aspect``: height / width of an image pixel (``Scan.pixel_aspect``), as the views draw it; returns a
    QImage (save with ``.save(path)``)."""
    if not columns:
        raise ValueError("nothing to draw: the comparison is empty")
    h0, w0 = columns[0].image.array.shape
    tw = tile_width
    th = int(round(tw * h0 / w0 * (pixel_aspect if pixel_aspect > 0 else 1.0)))
    pad, head, bar_w = 8, 44, 70
    rows = ["image"] + (["error"] if any(c.error for c in columns) else []) + \
        (["std"] if any(c.std for c in columns) else [])
    small = QtGui.QFont()
    small.setPixelSize(11)
    # a subtitle too long for its tile (the chosen weight after the metrics) takes a second line
    if any(QtGui.QFontMetrics(small).horizontalAdvance(c.subtitle) > tw for c in columns):
        head += 14
    width = pad + len(columns) * (tw + pad) + bar_w
    # the caption wraps to the figure's width (a narrow figure of two columns takes two or three lines)
    caption_h = 0 if not caption else QtGui.QFontMetrics(small).boundingRect(
        QtCore.QRect(0, 0, width - 2 * pad, 1000), QtCore.Qt.TextFlag.TextWordWrap, caption).height() + 4
    top = (30 if title else 6) + caption_h
    height = top + len(rows) * (head + th + pad) + pad
    out = QtGui.QImage(width, height, QtGui.QImage.Format.Format_RGB32)
    out.fill(QtGui.QColor(18, 18, 22))
    p = QtGui.QPainter(out)
    p.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform, True)
    p.setRenderHint(QtGui.QPainter.RenderHint.TextAntialiasing, True)
    font = QtGui.QFont()
    font.setPixelSize(14)
    if title:
        f = QtGui.QFont(font)
        f.setBold(True)
        p.setFont(f)
        p.setPen(QtGui.QColor(235, 235, 235))
        p.drawText(QtCore.QRectF(pad, 4, width - 2 * pad, 24), QtCore.Qt.AlignmentFlag.AlignLeft, title)
    if caption:
        p.setFont(small)
        p.setPen(QtGui.QColor(200, 200, 200))
        p.drawText(QtCore.QRectF(pad, top - caption_h - 2, width - 2 * pad, caption_h),
                   int(QtCore.Qt.AlignmentFlag.AlignLeft) | int(QtCore.Qt.TextFlag.TextWordWrap), caption)
    for ri, row in enumerate(rows):
        y = top + ri * (head + th + pad)
        bar_tile = None
        for ci, col in enumerate(columns):
            x = pad + ci * (tw + pad)
            tile = getattr(col, row)
            if tile is None:
                continue
            bar_tile = bar_tile or tile
            p.setPen(QtGui.QColor(235, 235, 235))
            p.setFont(font)
            label = col.title if row == "image" else f"{row}: {col.title}"
            p.drawText(QtCore.QRectF(x, y, tw, 20), QtCore.Qt.AlignmentFlag.AlignLeft, _elide(p, label, tw))
            if row == "image" and col.subtitle:
                p.setFont(small)
                p.setPen(QtGui.QColor(190, 190, 190))
                p.drawText(QtCore.QRectF(x, y + 20, tw, head - 22),
                           int(QtCore.Qt.AlignmentFlag.AlignLeft) | int(QtCore.Qt.TextFlag.TextWordWrap), col.subtitle)
            p.drawImage(QtCore.QRectF(x, y + head, tw, th), to_qimage(tile))
            if row == "image" and col.outline:
                _outline(p, col.outline, QtCore.QRectF(x, y + head, tw, th), tile.array.shape)
        if bar_tile is not None:
            _colour_bar(p, bar_tile, QtCore.QRectF(width - bar_w + 6, top + ri * (head + th + pad) + head, 14, th),
                        small)
    p.end()
    return out


def _outline(p: QtGui.QPainter, polylines: list[np.ndarray], rect: QtCore.QRectF, shape: tuple[int, ...]) -> None:
    """Draw ``polylines`` (pixel-centre (row, column) of an image of ``shape``) over its tile ``rect``."""
    sy, sx = rect.height() / shape[0], rect.width() / shape[1]
    p.save()
    p.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing, True)
    p.setPen(QtGui.QPen(QtGui.QColor(0, 230, 255), 1.5))
    p.setClipRect(rect)
    for line in polylines:
        pts = [QtCore.QPointF(rect.left() + (c + 0.5) * sx, rect.top() + (r + 0.5) * sy) for r, c in np.asarray(line)]
        p.drawPolyline(QtGui.QPolygonF(pts))
    p.restore()


def _colour_bar(p: QtGui.QPainter, tile: Tile, rect: QtCore.QRectF, font: QtGui.QFont) -> None:
    n = max(int(rect.height()), 2)
    ramp = np.linspace(tile.levels[1], tile.levels[0], n)[:, None].repeat(8, axis=1)
    p.drawImage(rect, to_qimage(Tile(ramp, tile.levels, tile.cmap)))
    p.setPen(QtGui.QColor(220, 220, 220))
    p.setFont(font)
    for frac, v in ((0.0, tile.levels[1]), (1.0, tile.levels[0])):
        y = rect.top() + frac * rect.height()
        p.drawText(QtCore.QRectF(rect.right() + 3, y - 8 if frac else y, 50, 16),
                   QtCore.Qt.AlignmentFlag.AlignLeft, f"{v:.3g}")


def _elide(p: QtGui.QPainter, text: str, width: int) -> str:
    return p.fontMetrics().elidedText(text, QtCore.Qt.TextElideMode.ElideRight, width)
