"""A deterministic small-people proxy built from real MOTChallenge video: ``storesense datasets mot-rescale``.

The dev sequences with video (TUD-Campus, TUD-Stadtmitte) show people 130-300 px
tall in 640×480 frames, as a camera at head height sees them. A ceiling camera over
a shop floor sees the same people 30-100 px tall. This module builds that view from
the real imagery: each output frame is a canvas (default 768×576) holding a grid of
copies of the sequence, each copy scaled by its own factor (``scales``, cycled over
the copies) and showing the sequence at its own time offset (copy ``k`` starts
``k / copies`` of the way through, wrapping around), so the canvas holds several
different moments at several scales. The space a copy does not fill is mid grey.

Ground truth (``gt/gt.txt``) and public detections (``det/det.txt``) are transformed
exactly like the pixels: scaled, shifted into the copy's cell, clipped to it
(a box less than half inside is dropped). Identities are kept apart per copy and
per wrap-around (``id + 10000 * copy + 100000 * wraps``), so a wrap starts new tracks
rather than teleporting old ones. The result is an ordinary MOTChallenge folder
(``seqinfo.ini``, ``img1/*.jpg``, ``gt/``, ``det/``) that ``storesense eval mot`` reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import StoresenseError
from .loaders.mot import MotSequence, read_sequence, rows_per_frame

#: Canvas fill where no copy is drawn (the letterbox grey of detection models).
FILL = 114
#: A transformed box is kept when at least this share of its area stays inside its copy.
MIN_INSIDE = 0.5


@dataclass(frozen=True)
class Placement:
    """Where copy ``index`` of the sequence lands: its scale, its top-left corner, its cell and time offset."""

    index: int
    scale: float
    x0: int
    y0: int
    cell: tuple[int, int, int, int]  # x1, y1, x2, y2 on the canvas
    offset: int  # frames


def placements(seq: MotSequence, scales: list[float], canvas: tuple[int, int],
               grid: tuple[int, int]) -> list[Placement]:
    """The copies of ``seq`` on a ``canvas`` (width, height) split into ``grid`` (columns, rows) cells."""
    if not scales or any(not (0.05 <= s <= 4.0) for s in scales):
        raise StoresenseError(f"--scale: expected factors between 0.05 and 4, got {scales}")
    cols, rows = grid
    cw, ch = canvas[0] // cols, canvas[1] // rows
    out = []
    n = cols * rows
    for k in range(n):
        s = float(scales[k % len(scales)])
        w, h = round(seq.width * s), round(seq.height * s)
        cx, cy = (k % cols) * cw, (k // cols) * ch
        # centred in its cell; a copy larger than the cell is cropped by it
        x0, y0 = cx + (cw - w) // 2, cy + (ch - h) // 2
        out.append(Placement(k, s, x0, y0, (cx, cy, cx + cw, cy + ch), (k * seq.length) // n))
    return out


def transform_rows(rows: np.ndarray, p: Placement, id_offset: float) -> np.ndarray:
    """MOT rows (one source frame) scaled and shifted into placement ``p``, clipped to its cell."""
    if not len(rows):
        return rows
    out = rows.copy()
    x1 = rows[:, 2] * p.scale + p.x0
    y1 = rows[:, 3] * p.scale + p.y0
    x2 = x1 + rows[:, 4] * p.scale
    y2 = y1 + rows[:, 5] * p.scale
    cx1, cy1, cx2, cy2 = p.cell
    ix1, iy1 = np.maximum(x1, cx1), np.maximum(y1, cy1)
    ix2, iy2 = np.minimum(x2, cx2), np.minimum(y2, cy2)
    inside = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area = np.maximum((x2 - x1) * (y2 - y1), 1e-9)
    keep = inside / area >= MIN_INSIDE
    out[:, 2], out[:, 3], out[:, 4], out[:, 5] = ix1, iy1, ix2 - ix1, iy2 - iy1
    if id_offset and (out[:, 1] >= 0).any():
        out[out[:, 1] >= 0, 1] += id_offset
    return out[keep]


def source_frame(frame: int, p: Placement, length: int) -> tuple[int, int]:
    """The source frame (1-based) copy ``p`` shows at output ``frame``, and how many times it wrapped."""
    i = frame - 1 + p.offset
    return i % length + 1, i // length


def rescale_sequence(seq_dir: str | Path, out_dir: str | Path, scales: list[float],
                     canvas: tuple[int, int] = (768, 576), grid: tuple[int, int] = (2, 2),
                     quality: int = 95) -> Path:
    """Write the proxy of the sequence in ``seq_dir`` under ``out_dir``; returns the new sequence folder."""
    seq = read_sequence(seq_dir)
    if canvas[0] < 32 or canvas[1] < 32 or grid[0] < 1 or grid[1] < 1:
        raise StoresenseError(f"--canvas {canvas} / --grid {grid}: expected a canvas of at least 32×32 and a grid of 1×1 or more")
    places = placements(seq, scales, canvas, grid)
    name = f"{seq.name}-x{'-'.join(f'{s:g}' for s in scales)}"
    folder = Path(out_dir) / name
    (folder / "img1").mkdir(parents=True, exist_ok=True)
    (folder / "gt").mkdir(exist_ok=True)
    gt = rows_per_frame(seq.ground_truth(), seq.length)
    det = rows_per_frame(seq.public_detections(), seq.length) if seq.det_path.is_file() else None
    source = [img for _, img in seq.frames()]
    if len(source) < seq.length:
        raise StoresenseError(f"{seq.path}: {len(source)} readable frames, seqinfo.ini says {seq.length}")
    gt_out, det_out = [], []
    for frame in range(1, seq.length + 1):
        image = np.full((canvas[1], canvas[0], 3), FILL, np.uint8)
        for p in places:
            src, wraps = source_frame(frame, p, seq.length)
            _paste(image, source[src - 1], p)
            for rows, sink, ids in ((gt[src - 1], gt_out, True), (None if det is None else det[src - 1], det_out, False)):
                if rows is None or not len(rows):
                    continue
                moved = transform_rows(rows, p, 10000 * p.index + 100000 * wraps if ids else 0)
                moved[:, 0] = frame
                sink.append(moved)
        cv2.imwrite(str(folder / "img1" / f"{frame:06d}.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    _write_rows(folder / "gt" / "gt.txt", gt_out)
    if det is not None:
        (folder / "det").mkdir(exist_ok=True)
        _write_rows(folder / "det" / "det.txt", det_out)
    (folder / "seqinfo.ini").write_text(
        f"[Sequence]\nname={name}\nimDir=img1\nframeRate={seq.frame_rate:g}\nseqLength={seq.length}\n"
        f"imWidth={canvas[0]}\nimHeight={canvas[1]}\nimExt=.jpg\n"
        f"; made by storesense datasets mot-rescale from {seq.name}: scales {scales}, grid {grid[0]}x{grid[1]}\n",
        encoding="utf-8")
    return folder


def _paste(canvas: np.ndarray, image: np.ndarray, p: Placement) -> None:
    """Draw ``image`` scaled by ``p.scale`` at ``(p.x0, p.y0)``, cropped to the placement's cell."""
    h, w = round(image.shape[0] * p.scale), round(image.shape[1] * p.scale)
    scaled = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if p.scale < 1 else cv2.INTER_LINEAR)
    cx1, cy1, cx2, cy2 = p.cell
    x1, y1 = max(p.x0, cx1), max(p.y0, cy1)
    x2, y2 = min(p.x0 + w, cx2, canvas.shape[1]), min(p.y0 + h, cy2, canvas.shape[0])
    if x2 > x1 and y2 > y1:
        canvas[y1:y2, x1:x2] = scaled[y1 - p.y0:y2 - p.y0, x1 - p.x0:x2 - p.x0]


def _write_rows(path: Path, chunks: list[np.ndarray]) -> None:
    rows = np.concatenate(chunks) if chunks else np.zeros((0, 10))
    rows = rows[np.lexsort((rows[:, 1], rows[:, 0]))] if len(rows) else rows
    with open(path, "w", encoding="utf-8") as fh:
        for r in rows:
            rest = ",".join(f"{v:g}" for v in r[6:])
            fh.write(f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},{rest}\n")


def parse_size(text: str, what: str) -> tuple[int, int]:
    """``"768x576"`` -> (768, 576); a bad value raises StoresenseError naming ``what``."""
    try:
        a, b = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise StoresenseError(f"{what} {text!r}: expected WIDTHxHEIGHT, e.g. 768x576") from None
    return a, b


def person_heights(seq_dir: str | Path) -> np.ndarray:
    """Heights in pixels of the ground-truth boxes of a sequence (to check a proxy's size range)."""
    seq = read_sequence(seq_dir)
    gt = seq.ground_truth()
    return gt[gt[:, 6] != 0, 5] if len(gt) else np.zeros(0)


__all__ = ["rescale_sequence", "placements", "transform_rows", "source_frame", "parse_size", "person_heights",
           "Placement", "FILL"]
