"""Print the image polygons of each shelf's front face as every camera sees it.

Used to author ``shelf_faces`` for a store config whose cameras are calibrated:
the front face is the vertical side of the shelf footprint nearest its access
point, from 0.2 m to 1.8 m high. Faces mostly outside a camera's image are left out.

    python tools/shelf_faces.py datasets/stores/demo_shop.yaml
"""

import sys

import numpy as np

from storesense.config import load_store_config


def front_face(shelf, low=0.2, high=1.8):
    """3-D corners (4×3) of the footprint edge closest to the access point."""
    poly = np.asarray(shelf.polygon, dtype=float)
    ap = np.asarray(shelf.access_point, dtype=float)
    best = None
    for i in range(len(poly)):
        a, b = poly[i], poly[(i + 1) % len(poly)]
        mid = (a + b) / 2
        d = np.linalg.norm(mid - ap)
        if best is None or d < best[0]:
            best = (d, a, b)
    _, a, b = best
    return np.array([[*a, low], [*b, low], [*b, high], [*a, high]])


def main(path):
    cfg = load_store_config(path)
    for cam in cfg.cameras:
        w, h = cam.resolution
        print(f"  # {cam.id}\n    shelf_faces:")
        for shelf in cfg.shelves:
            uv = cam.floor_to_image(front_face(shelf))
            if np.isnan(uv).any():
                continue
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
            if inside.sum() < 3:
                continue
            uv = np.clip(uv, [0, 0], [w - 1, h - 1]).round().astype(int).tolist()
            print(f"      - {{id: {shelf.id}-front, shelf: {shelf.id}, polygon: {uv}}}")


if __name__ == "__main__":
    main(sys.argv[1])
