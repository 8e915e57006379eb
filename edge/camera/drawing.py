"""Debug drawing for camera-node videos: boxes, skeletons, track ids and shelf faces."""

from __future__ import annotations

import cv2
import numpy as np

from ...config import ShelfFace
from .detections import Detections

#: COCO skeleton as pairs of keypoint indices.
SKELETON = ((0, 1), (0, 2), (1, 3), (2, 4), (5, 6), (5, 7), (7, 9), (6, 8), (8, 10), (5, 11), (6, 12),
            (11, 12), (11, 13), (13, 15), (12, 14), (14, 16))


def track_colour(track_id: int) -> tuple[int, int, int]:
    """A stable, well-separated BGR colour per track id (grey for untracked)."""
    if track_id < 0:
        return (160, 160, 160)
    hue = (track_id * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def draw_shelf_faces(image: np.ndarray, faces: list[ShelfFace], active: set[str] = frozenset()) -> np.ndarray:
    """Outline each shelf face (filled lightly when a hand is in it), labelled with its id."""
    for face in faces:
        pts = np.asarray(face.polygon, dtype=np.int32).reshape(-1, 1, 2)
        colour = (0, 0, 255) if face.id in active else (0, 200, 255)
        if face.id in active:
            fill = image.copy()
            cv2.fillPoly(fill, [pts], colour)
            cv2.addWeighted(fill, 0.3, image, 0.7, 0, dst=image)
        cv2.polylines(image, [pts], True, colour, 1, cv2.LINE_AA)
        x, y = pts[:, 0, 0].min(), pts[:, 0, 1].min()
        cv2.putText(image, face.id, (int(x), int(y) + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)
    return image


def draw_detections(image: np.ndarray, dets: Detections, min_keypoint_score: float = 0.2) -> np.ndarray:
    """Boxes with track id and score, and the skeleton of each person's confident keypoints."""
    for i in range(len(dets)):
        tid = int(dets.track_id[i])
        colour = track_colour(tid)
        x1, y1, x2, y2 = dets.xyxy[i].round().astype(int)
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        label = f"#{tid} {dets.scores[i]:.2f}" if tid >= 0 else f"{dets.scores[i]:.2f}"
        cv2.putText(image, label, (x1, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        if dets.keypoints is None or dets.keypoints.shape[1] != 17:
            continue
        kp = dets.keypoints[i]
        for a, b in SKELETON:
            if kp[a, 2] >= min_keypoint_score and kp[b, 2] >= min_keypoint_score:
                cv2.line(image, tuple(kp[a, :2].round().astype(int)), tuple(kp[b, :2].round().astype(int)),
                         colour, 2, cv2.LINE_AA)
        for j, (x, y, s) in enumerate(kp):
            if s >= min_keypoint_score:
                radius = 5 if j in (9, 10) else 3  # wrists bigger: they drive hand-shelf events
                cv2.circle(image, (int(round(x)), int(round(y))), radius, (255, 255, 255), -1, cv2.LINE_AA)
    return image


def draw_plan(image: np.ndarray, plan) -> np.ndarray:
    """The detection plan's tiles (a :class:`~storesense.edge.camera.tiling.TilingPlan`) as thin grey
    rectangles, each labelled with its scale; the full-frame pass is not drawn."""
    for i, p in enumerate(plan.passes):
        if p.full_frame:
            continue
        cv2.rectangle(image, (p.x, p.y), (p.x + p.w - 1, p.y + p.h - 1), (160, 160, 160), 1)
        cv2.putText(image, f"{i}: x{p.scale:.2f}", (p.x + 3, p.y + 12), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (200, 200, 200), 1, cv2.LINE_AA)
    return image


def draw_debug(image: np.ndarray, dets: Detections, faces: list[ShelfFace] = (), active: set[str] = frozenset(),
               caption: str = "", plan=None, regions=None, looks=None) -> np.ndarray:
    """The detection plan's tiles, the active regions of a gated plan (``regions``: xyxy, yellow), the crops of
    its track looks (``looks``: passes, magenta), shelf faces, then people, then a caption line; draws on
    ``image`` and returns it."""
    if plan is not None:
        draw_plan(image, plan)
    for x1, y1, x2, y2 in ([] if regions is None else regions):
        cv2.rectangle(image, (int(x1), int(y1)), (int(x2) - 1, int(y2) - 1), (0, 220, 255), 1)
    for p in looks or ():
        cv2.rectangle(image, (p.x, p.y), (p.x + p.w - 1, p.y + p.h - 1), (255, 0, 255), 1)
    draw_shelf_faces(image, list(faces), active)
    draw_detections(image, dets)
    if caption:
        cv2.putText(image, caption, (6, image.shape[0] - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return image
