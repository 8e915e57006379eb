"""Print the image polygons of each shelf's front face as every camera sees it.

Used to author ``shelf_faces`` for a store config whose cameras are calibrated:
the front face is the vertical side of the shelf footprint nearest its access
point, from 0.2 m to 1.8 m high. Faces mostly outside a camera's image, seen
from behind, or mostly hidden behind other shelves are left out.

    python tools/shelf_faces.py datasets/stores/demo_shop.yaml
"""

import sys

import numpy as np

from storesense.config import load_store_config


def front_face(shelf, low=0.2, high=1.8):
    """3-D corners (4×3) of the shelf's front edge (``Shelf.front_edge``) from ``low`` to ``high`` metres."""
    a, b = shelf.front_edge()
    return np.array([[*a, low], [*b, low], [*b, high], [*a, high]])


def _hidden_share(cam, face, shelves, own, height=1.8, n=5):
    """Share of sample points on the face whose line of sight crosses another shelf."""
    from storesense.geometry.polygons import point_in_polygon

    c = np.asarray(cam.mount.position if cam.mount else (0, 0, 0), dtype=float)
    hidden = total = 0
    for u in np.linspace(0.1, 0.9, n):
        for v in np.linspace(0.1, 0.9, n):
            p = face[0] + u * (face[1] - face[0]) + v * (face[3] - face[0])
            total += 1
            for t in np.linspace(0.02, 0.98, 60):
                q = p + t * (c - p)
                if q[2] > height:
                    break
                if any(s.id != own and point_in_polygon(q[0], q[1], s.polygon) for s in shelves):
                    hidden += 1
                    break
    return hidden / total


def main(path):
    cfg = load_store_config(path)
    for cam in cfg.cameras:
        w, h = cam.resolution
        print(f"  # {cam.id}\n    shelf_faces:")
        R, t = cam.rotation_translation()
        centre = -R.T @ t
        for shelf in cfg.shelves:
            face = front_face(shelf)
            outward = np.asarray(shelf.access_point, dtype=float) - face[:2, :2].mean(axis=0)
            if outward @ (centre[:2] - face[:2, :2].mean(axis=0)) <= 0:
                continue  # seen from behind
            if _hidden_share(cam, face, cfg.shelves, shelf.id) > 0.5:
                continue
            uv = cam.floor_to_image(face)
            if np.isnan(uv).any():
                continue
            inside = (uv[:, 0] >= 0) & (uv[:, 0] < w) & (uv[:, 1] >= 0) & (uv[:, 1] < h)
            if inside.sum() < 3:
                continue
            uv = np.clip(uv, [0, 0], [w - 1, h - 1]).round().astype(int).tolist()
            print(f"      - {{id: {shelf.id}-front, shelf: {shelf.id}, polygon: {uv}}}")


if __name__ == "__main__":
    main(sys.argv[1])
