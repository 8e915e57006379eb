"""Synthetic shopping scenarios that know their ground truth.

:func:`generate_scenario` simulates shoppers who enter through the entry zone,
walk walkable paths to shelves, pick items (and sometimes put one back), and
leave through the exit zone. It emits exactly the messages real nodes would:

- camera nodes: :class:`PersonObservation` per camera frame for every shopper
  whose feet are in that camera's image (through the camera's real projection),
  with a floor point whose noise and covariance grow with distance, per-camera
  track ids that change when a shopper leaves a view, and missed detections;
  :class:`HandShelfInteraction` enter/exit from a camera that sees the shelf face;
- shelf nodes: :class:`WeightChange` on weighed plates (noisy, settled later);
- BLE nodes: :class:`BleSighting` of each shopper's phone through a path-loss
  model with shadowing noise.

The result is seeded and reproducible. This is the Foundation's simple
generator: no occlusion between shoppers and no id swaps yet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ...config import StoreConfig
from ...geometry.polygons import polygon_area
from ...contracts import (
    BleSighting,
    Envelope,
    FloorPoint,
    HandShelfInteraction,
    NodeStatus,
    PersonObservation,
    Stamper,
    WeightChange,
)
from ...geometry.floor import FloorGrid

PERSON_HEIGHT_M = 1.7


@dataclass
class ShelfAction:
    """One ground-truth pick (quantity > 0) or put-back (quantity < 0)."""

    ts: float
    shelf: str
    plate: str
    sku: str
    quantity: int


@dataclass
class TruthShopper:
    """Ground truth for one simulated shopper."""

    id: str
    tag: str
    enter_ts: float
    exit_ts: float
    actions: list[ShelfAction] = field(default_factory=list)
    keyframes: list[tuple[float, float, float]] = field(default_factory=list)

    def cart(self) -> dict[str, int]:
        """SKU -> quantity the shopper carries out."""
        out: dict[str, int] = {}
        for a in self.actions:
            out[a.sku] = out.get(a.sku, 0) + a.quantity
        return {k: v for k, v in sorted(out.items()) if v > 0}

    def position(self, t: float) -> tuple[float, float]:
        """Where the shopper is at time ``t`` (clamped to the walk)."""
        ts, xs, ys = zip(*self.keyframes)
        return float(np.interp(t, ts, xs)), float(np.interp(t, ts, ys))


@dataclass
class Scenario:
    """Messages in timestamp order, and the truth behind them."""

    seed: int
    messages: list[Envelope]
    shoppers: list[TruthShopper]
    start_ts: float
    end_ts: float


def _centroid(poly) -> tuple[float, float]:
    pts = np.asarray(poly, dtype=float)
    x, y = pts[:, 0], pts[:, 1]
    a = polygon_area(poly)
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    return float(((x + np.roll(x, -1)) * cross).sum() / (6 * a)), float(((y + np.roll(y, -1)) * cross).sum() / (6 * a))


class _Walker:
    """Builds a shopper's keyframes (t, x, y) along walkable paths."""

    def __init__(self, grid: FloorGrid, start: tuple[float, float], t0: float, speed: float):
        self.grid, self.speed = grid, speed
        self.pos, self.t = start, t0
        self.keyframes = [(t0, *start)]

    def walk_to(self, goal: tuple[float, float]) -> None:
        for p in self.grid.path(self.pos, goal)[1:]:
            self.t += math.hypot(p[0] - self.pos[0], p[1] - self.pos[1]) / self.speed
            self.pos = p
            self.keyframes.append((self.t, *p))

    def wait(self, seconds: float) -> None:
        self.t += seconds
        self.keyframes.append((self.t, *self.pos))


def generate_scenario(
    config: StoreConfig,
    shoppers: int = 6,
    seed: int = 0,
    *,
    start_ts: float = 1_767_225_600.0,
    camera_fps: float = 5.0,
    ble_hz: float = 1.0,
    miss_rate: float = 0.05,
    putback_rate: float = 0.3,
) -> Scenario:
    """Simulate ``shoppers`` shoppers in ``config``'s store; seeded by ``seed``."""
    if not config.zones_of("entry") or not config.zones_of("exit"):
        raise ValueError("the store config needs an entry zone and an exit zone to simulate shoppers")
    if not config.shelves:
        raise ValueError("the store config has no shelves to shop from")
    # one random stream per kind of node, so changing the cameras does not change the radio noise
    rng, cam_rng, ble_rng = (np.random.default_rng([seed, k]) for k in range(3))
    grid = FloorGrid(config)
    entry = _centroid(config.zones_of("entry")[0].polygon)
    exit_ = _centroid(config.zones_of("exit")[0].polygon)
    run_id = f"sim-{seed}"
    stampers: dict[str, Stamper] = {}

    def stamp(source: str, cls, ts: float, **fields) -> Envelope:
        if source not in stampers:
            stampers[source] = Stamper(source, run_id)
        return stampers[source].make(cls, round(ts, 3), **fields)

    messages: list[Envelope] = []
    truth: list[TruthShopper] = []
    plate_load = {
        (s.id, p.id): p.stock * config.product(p.sku).unit_weight_g for s in config.shelves for p in s.plates
    }
    hand_events: list[tuple[float, str, str, str, float, float]] = []  # ts, shopper, shelf, phase, dwell, height

    t_enter = start_ts + 1.0
    for i in range(shoppers):
        sid = f"shopper-{i + 1}"
        speed = float(rng.uniform(0.9, 1.3))
        start = (entry[0] + rng.uniform(-0.4, 0.4), entry[1] + rng.uniform(-0.3, 0.3))
        walker = _Walker(grid, start, t_enter, speed)
        walker.wait(1.0)  # stands in the entry zone (checks in)
        shopper = TruthShopper(sid, f"tag-{i + 1:03d}", t_enter, 0.0)
        plates = [(s, p) for s in config.shelves for p in s.plates]
        visits = rng.choice(len(plates), size=int(rng.integers(2, 5)), replace=False)
        for v in visits:
            shelf, plate = plates[int(v)]
            walker.walk_to(_standing_spot(shelf, rng))
            walker.wait(float(rng.uniform(0.5, 1.5)))
            product = config.product(plate.sku)
            qty = 1 if rng.random() < 0.8 else 2
            weighed = config.sensor_for_plate(shelf.id, plate.id) is not None
            # one reach takes all items where a load cell counts them; one reach per item elsewhere
            reaches = [qty] if weighed else [1] * qty
            if weighed and rng.random() < putback_rate:
                reaches.append(-1)
            for q in reaches:
                t_in = walker.t
                dwell = float(rng.uniform(1.0, 2.0))
                t_out = t_in + dwell
                hand_events.append((t_in, sid, shelf.id, "enter", 0.0, plate.height))
                hand_events.append((t_out, sid, shelf.id, "exit", dwell, plate.height))
                shopper.actions.append(ShelfAction(t_out, shelf.id, plate.id, plate.sku, q))
                sensor = config.sensor_for_plate(shelf.id, plate.id)
                if sensor is not None:
                    delta = -q * product.unit_weight_g + float(rng.normal(0, sensor.noise_g * math.sqrt(2)))
                    plate_load[(shelf.id, plate.id)] += delta
                    messages.append(
                        stamp(sensor.id, WeightChange, t_out + sensor.settle_s, sensor=sensor.id, shelf=shelf.id,
                              plate=plate.id, delta_g=round(delta, 1),
                              total_g=round(plate_load[(shelf.id, plate.id)], 1), noise_g=sensor.noise_g,
                              started_ts=round(t_in + 0.3, 3))
                    )
                walker.t = t_out
                walker.wait(float(rng.uniform(0.8, 1.5)))
        walker.walk_to((exit_[0] + rng.uniform(-0.3, 0.3), exit_[1] + rng.uniform(-0.2, 0.2)))
        walker.wait(1.0)  # stands in the exit zone, then leaves the store
        shopper.exit_ts = walker.t
        shopper.keyframes = walker.keyframes
        truth.append(shopper)
        t_enter += float(rng.uniform(5.0, 9.0))

    end_ts = max(s.exit_ts for s in truth) + 1.0
    by_id = {s.id: s for s in truth}

    # camera nodes ---------------------------------------------------------
    # (cam, shopper) -> [[first seen, last seen, camera track id], ...]
    segments: dict[tuple[str, str], list[list]] = {}
    next_track = {c.id: 1 for c in config.cameras}
    frame_times = np.arange(start_ts, end_ts, 1.0 / camera_fps)
    for cam in config.cameras:
        w, h = cam.resolution
        cam_xy = _camera_centre(cam)[:2]
        for frame, t in enumerate(frame_times):
            for s in truth:
                if not (s.enter_ts <= t <= s.exit_ts):
                    continue
                x, y = s.position(t)
                uv = cam.floor_to_image(np.array([[x, y, 0.0], [x, y, PERSON_HEIGHT_M]]))
                if np.isnan(uv).any() or not (0 <= uv[0, 0] < w and 0 <= uv[0, 1] < h):
                    continue
                segs = segments.setdefault((cam.id, s.id), [])
                if not segs or t - segs[-1][1] > 1.0:  # a new track after a second out of view
                    segs.append([float(t), float(t), next_track[cam.id]])
                    next_track[cam.id] += 1
                segs[-1][1] = float(t)
                if cam_rng.random() < miss_rate:
                    continue
                dist = math.hypot(x - cam_xy[0], y - cam_xy[1])
                sigma = 0.04 + 0.02 * dist
                fx, fy = x + cam_rng.normal(0, sigma), y + cam_rng.normal(0, sigma)
                height_px = abs(uv[0, 1] - uv[1, 1])
                top = min(uv[0, 1], uv[1, 1])
                bw = 0.4 * height_px
                bbox = (round(float(uv[0, 0] - bw / 2), 1), round(float(top), 1), round(float(bw), 1),
                        round(float(height_px), 1))
                messages.append(
                    stamp(cam.id, PersonObservation, float(t), camera=cam.id, frame=frame, track_id=segs[-1][2], bbox=bbox,
                          score=round(float(cam_rng.uniform(0.6, 0.95)), 3),
                          floor=FloorPoint(x=round(float(fx), 3), y=round(float(fy), 3),
                                           cov=((round(sigma**2, 5), 0.0), (0.0, round(sigma**2, 5)))))
                )

    # hand interactions: reported by the nearest camera that sees the shopper and the shelf face
    for t, sid, shelf_id, phase, dwell, height in sorted(hand_events):
        s = by_id[sid]
        x, y = s.position(t)
        best = None
        for cam in config.cameras:
            face = next((f for f in cam.shelf_faces if f.shelf == shelf_id), None)
            seg = next((g for g in segments.get((cam.id, sid), []) if g[0] - 0.5 <= t <= g[1] + 0.5), None)
            if face is None or seg is None:
                continue
            c = _camera_centre(cam)
            d = math.hypot(x - c[0], y - c[1])
            if best is None or d < best[0]:
                best = (d, cam, face, seg[2])
        if best is None:
            continue  # no camera sees this reach: the weight change alone must tell
        _, cam, face, tid = best
        # the wrist where it crosses the front face, in front of the shopper at the plate's height
        a, b = config.shelf(shelf_id).front_edge()
        u = float(np.clip(np.dot(np.subtract((x, y), a), b - a) / np.dot(b - a, b - a), 0.05, 0.95))
        wrist = cam.floor_to_image(np.array([[*(a + u * (b - a)), height]]))[0]
        messages.append(
            stamp(cam.id, HandShelfInteraction, t, camera=cam.id, track_id=tid, shelf=shelf_id, face=face.id,
                  phase=phase, hand="right", dwell_s=round(dwell, 3),
                  keypoint_score=round(float(cam_rng.uniform(0.6, 0.95)), 3),
                  wrist=None if np.isnan(wrist).any() else (round(float(wrist[0]), 1), round(float(wrist[1]), 1)))
        )

    # BLE nodes ------------------------------------------------------------
    for t in np.arange(start_ts, end_ts, 1.0 / ble_hz):
        for s in truth:
            if not (s.enter_ts <= t <= s.exit_ts):
                continue
            x, y = s.position(t)
            for node in config.ble_nodes:
                d = max(0.1, math.dist((x, y, 1.2), node.position))
                rssi = node.rssi_at_1m - 10 * node.path_loss_exponent * math.log10(d) + ble_rng.normal(0, 4.0)
                if rssi < -95:
                    continue
                messages.append(stamp(node.id, BleSighting, float(t), node=node.id, tag=s.tag, rssi=round(rssi, 1)))

    # availability of every simulated node at the start
    kinds = [(c.id, "camera") for c in config.cameras] + [(n.id, "ble") for n in config.ble_nodes]
    kinds += [(ws.id, "shelf") for ws in config.weight_sensors]
    for node, kind in kinds:
        messages.append(stamp(node, NodeStatus, start_ts, node=node, kind=kind, state="online"))

    messages.sort(key=lambda m: (m.ts, m.source, m.seq))
    return Scenario(seed=seed, messages=messages, shoppers=truth, start_ts=start_ts, end_ts=end_ts)


def _standing_spot(shelf, rng) -> tuple[float, float]:
    """A place in front of the shelf: its access point moved along the shelf's front
    edge, so shoppers at the same shelf do not stand on the same spot."""
    poly = np.asarray(shelf.polygon, dtype=float)
    ap = np.asarray(shelf.access_point, dtype=float)
    edges = [(poly[i], poly[(i + 1) % len(poly)]) for i in range(len(poly))]
    a, b = min(edges, key=lambda e: float(np.linalg.norm((e[0] + e[1]) / 2 - ap)))
    half = max(0.0, float(np.linalg.norm(b - a)) / 2 - 0.5)
    direction = (b - a) / np.linalg.norm(b - a)
    p = ap + direction * rng.uniform(-half, half)
    return float(p[0]), float(p[1])


def _camera_centre(cam) -> tuple[float, float, float]:
    R, t = cam.rotation_translation()
    c = -R.T @ t
    return float(c[0]), float(c[1]), float(c[2])
