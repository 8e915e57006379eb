"""Write datasets/stores/dense_shop.yaml: a store laid out like the AutoCheckout competition's (issue 13).

5 gondolas, 6 shelves each (30 shelves), 9-12 load-cell plates 10 cm wide per
shelf; wide products rest across 2-4 adjacent plates (one event over several
load cells); some plates hold two products; many products weigh within 5 g of
another; one product on several plates. Cameras look at each gondola's front
(their shelf faces are the projected front rectangles) and at the doors.
Seeded: running it again writes the same file.

    python tools/make_dense_store.py
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml

from storesense.config import parse_store_config

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "datasets" / "stores" / "dense_shop.yaml"

GONDOLAS = 5
LEVELS = 6
PLATE_W = 0.10
FRONT_W = 1.2  # metres of front per gondola: 12 plates of 10 cm
DEPTH = 0.6
FACE_TOP_M = 2.0  # the simulator's shelf height
PACKS = [60, 100, 125, 150, 185, 200, 250, 330, 400, 450, 500, 600, 750, 1000]


def main() -> None:
    rng = np.random.default_rng(13)
    gx = [1.2 + 1.75 * g for g in range(GONDOLAS)]  # left x of each gondola
    y0 = 4.0  # gondola fronts at y0 (facing the shoppers at lower y)
    products, shelves, sensors = [], [], []
    sku_n = 0

    def new_product(width_plates: int) -> dict:
        nonlocal sku_n
        sku_n += 1
        if rng.random() < 0.3:  # a common pack size (near-equal weights), else anything
            weight = float(PACKS[int(rng.integers(len(PACKS)))] + round(float(rng.normal(0, 4)), 1))
        else:
            weight = round(float(rng.uniform(40, 1500)), 1)
        p = {"sku": f"P{sku_n:03d}", "name": f"Product {sku_n:03d}", "price": round(float(rng.uniform(0.5, 9.0)), 2),
             "unit_weight_g": max(weight, 20.0)}
        if width_plates > 1:
            p["width_m"] = round(width_plates * PLATE_W - 0.02, 2)
        products.append(p)
        return p

    shared = None  # a product that sits on two shelves
    for g in range(GONDOLAS):
        x = gx[g]
        plates = []
        for level in range(LEVELS):
            n = int(rng.integers(9, 13))
            left = (FRONT_W - n * PLATE_W) / 2
            k = 0
            while k < n:
                width = int(rng.choice([1, 1, 2, 3, 4], p=[0.35, 0.15, 0.25, 0.15, 0.10]))
                width = min(width, n - k)
                if shared is not None and width == 1 and rng.random() < 0.04:
                    prod = shared
                else:
                    prod = new_product(width)
                    if shared is None and width == 1:
                        shared = prod
                for j in range(width):
                    pid = f"G{g + 1}S{level + 1}P{k + j + 1:02d}"
                    plate = {"id": pid, "sku": prod["sku"], "level": level,
                             "height_m": round(0.15 + 0.3 * level, 2),
                             "position_m": round(left + (k + j + 0.5) * PLATE_W, 3), "width_m": PLATE_W,
                             "stock": int(rng.integers(8, 16))}
                    plates.append(plate)
                    sensors.append({"id": f"ws-{pid}", "shelf": f"G{g + 1}", "plate": pid, "noise_g": 2.0,
                                    "node": f"shelf-g{g + 1}"})
                k += width
        shelves.append({"id": f"G{g + 1}", "gondola": f"gondola-{g + 1}",
                        "polygon": [[x, y0], [x + FRONT_W, y0], [x + FRONT_W, y0 + DEPTH], [x, y0 + DEPTH]],
                        "access_point": [round(x + FRONT_W / 2, 3), round(y0 - 0.6, 3)], "plates": plates})
    # several products on one plate: a narrow product shares some single-width plates
    singles = [p for s in shelves for p in s["plates"]
               if not any(q["sku"] == p["sku"] and q["id"] != p["id"] for s2 in shelves for q in s2["plates"])]
    for p in [singles[int(i)] for i in rng.choice(len(singles), size=48, replace=False)]:
        p["also"] = [new_product(1)["sku"]]
        p["stock"] = int(rng.integers(4, 8))

    cameras = []
    for g in range(GONDOLAS):
        cx = gx[g] + FRONT_W / 2
        cam = {"id": f"cam-g{g + 1}", "source": f"rtsp://cam-g{g + 1}.local/stream1", "resolution": [640, 480],
               "fps": 10, "intrinsics": {"fx": 420, "fy": 420, "cx": 320, "cy": 240, "dist": [0, 0, 0, 0, 0]},
               "mount": {"position": [round(cx, 3), 1.3, 3.2], "look_at": [round(cx, 3), y0, 0.9]}}
        cameras.append(cam)
    for i, (pos, look) in enumerate([((1.0, 2.8, 3.2), (1.2, 0.6, 0.0)), ((9.6, 2.8, 3.2), (9.4, 0.6, 0.0)),
                                     ((3.0, 0.4, 3.2), (4.0, 3.0, 0.0)), ((7.6, 0.4, 3.2), (6.6, 3.0, 0.0))]):
        cameras.append({"id": f"cam-o{i + 1}", "source": f"rtsp://cam-o{i + 1}.local/stream1",
                        "resolution": [640, 480], "fps": 10,
                        "intrinsics": {"fx": 420, "fy": 420, "cx": 320, "cy": 240, "dist": [0, 0, 0, 0, 0]},
                        "mount": {"position": list(pos), "look_at": list(look)}})
    data = {
        "store": {"id": "dense-shop", "name": "Dense shop (AutoCheckout-like)", "currency": "USD",
                  "timezone": "America/New_York"},
        "floor": {"outline": [[0, 0], [10.6, 0], [10.6, 5.6], [0, 5.6]], "obstacles": []},
        "products": products, "shelves": shelves, "cameras": cameras,
        "ble_nodes": [{"id": f"ble-{i + 1}", "position": [x, y, 2.6]}
                      for i, (x, y) in enumerate([(0.3, 0.3), (10.3, 0.3), (5.3, 2.6), (0.3, 5.3), (10.3, 5.3)])],
        "weight_sensors": sensors,
        "zones": [
            {"id": "store", "kind": "store", "polygon": [[0, 0], [10.6, 0], [10.6, 5.6], [0, 5.6]]},
            {"id": "entry", "kind": "entry", "polygon": [[0.2, 0.1], [2.2, 0.1], [2.2, 1.6], [0.2, 1.6]],
             "min_dwell_s": 0.5, "gates": [{"id": "gate-1", "position": [0.8, 0.7]}, {"id": "gate-2",
                                                                                     "position": [1.6, 0.7]}]},
            {"id": "exit", "kind": "exit", "polygon": [[8.4, 0.1], [10.4, 0.1], [10.4, 1.6], [8.4, 1.6]],
             "min_dwell_s": 0.5},
            {"id": "aisle", "kind": "aisle", "polygon": [[0.2, 1.8], [10.4, 1.8], [10.4, 3.9], [0.2, 3.9]]},
        ],
    }
    cfg = parse_store_config(data, origin="dense_shop")
    for cam_d, cam in zip(cameras, cfg.cameras):  # shelf faces: the gondola fronts as each camera sees them
        faces = []
        for shelf in cfg.shelves:
            a, b = shelf.front_edge()
            pts = np.array([[a[0], a[1], 0.0], [b[0], b[1], 0.0], [b[0], b[1], FACE_TOP_M], [a[0], a[1], FACE_TOP_M]])
            uv = cam.floor_to_image(pts)
            if np.isnan(uv).any():
                continue
            inside = (uv[:, 0] >= -40) & (uv[:, 0] <= 680) & (uv[:, 1] >= -40) & (uv[:, 1] <= 520)
            if inside.all():
                faces.append({"id": f"{shelf.id}-front", "shelf": shelf.id,
                              "polygon": [[round(float(u), 1), round(float(v), 1)] for u, v in uv]})
        if faces:
            cam_d["shelf_faces"] = faces
    parse_store_config(data, origin="dense_shop")
    weights = sorted(p["unit_weight_g"] for p in products)
    close = sum(1 for i in range(len(weights)) for j in range(i + 1, len(weights)) if weights[j] - weights[i] <= 5.0)
    n_plates = sum(len(s["plates"]) for s in shelves)
    multi = sum(1 for s in shelves for p in s["plates"] if p.get("also"))
    header = (f"# A dense store like the AutoCheckout competition's (issue 13), written by tools/make_dense_store.py\n"
              f"# (seeded; edit the script, not this file). {GONDOLAS} gondolas x {LEVELS} shelves = "
              f"{GONDOLAS * LEVELS} shelves, {n_plates} load-cell plates\n# 10 cm wide, 9-12 per shelf; "
              f"{len(products)} products, {multi} plates with two products, {close} product pairs within 5 g;\n"
              f"# wide products rest across 2-4 adjacent plates (width_m). Validate with: storesense config check "
              f"datasets/stores/dense_shop.yaml\n")
    OUT.write_text(header + yaml.safe_dump(data, sort_keys=False, width=120), encoding="utf-8")
    print(f"wrote {OUT}: {n_plates} plates, {len(products)} products, {multi} two-product plates, "
          f"{close} pairs within 5 g, {sum(1 for c in cameras if c.get('shelf_faces'))} cameras with faces")


if __name__ == "__main__":
    main()
