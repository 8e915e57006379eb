"""A picture of a simulated scenario: the floor plan with every walk, and what each camera saw.

:func:`plot_scenario` writes a PNG (matplotlib, Agg backend): on top the
store floor (shelves, obstacles, zones, cameras, BLE nodes) with each
shopper's path, where they checked in, handovers, and everyone's position at
time ``t``; below, every camera's image at its frame nearest to ``t`` with the
observed boxes (blue: a shopper, red: a false positive, labelled
``track id: shopper``), keypoints coloured by score and the configured shelf
faces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...config import StoreConfig


def plot_scenario(config: StoreConfig, scenario, path: str | Path, t: float | None = None) -> Path:
    """Draw ``scenario`` (a :class:`~.simulator.SimScenario`) to the PNG ``path``; ``t`` defaults to the busiest moment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    if t is None:
        times = np.linspace(scenario.start_ts, scenario.end_ts, 200)
        inside = [len(scenario.positions_at(x)) for x in times]
        t = float(times[int(np.argmax(inside))])
    cams = config.cameras
    ncol = max(1, min(4, len(cams)))
    nrow = 1 + (len(cams) + ncol - 1) // ncol
    fig = plt.figure(figsize=(4.2 * ncol, 5.5 + 3.4 * (nrow - 1)))
    grid = fig.add_gridspec(nrow, ncol, height_ratios=[1.6] + [1] * (nrow - 1))
    ax = fig.add_subplot(grid[0, :])
    _floor(ax, config, scenario, t)
    obs = [m for m in scenario.messages if m.type == "person_observation"]
    for i, cam in enumerate(cams):
        cax = fig.add_subplot(grid[1 + i // ncol, i % ncol])
        _camera(cax, cam, [m for m in obs if m.camera == cam.id], scenario, t)
    fig.suptitle(f"{config.store.name}: {scenario.level.name if scenario.level else ''} seed {scenario.seed}, "
                 f"{len(scenario.shoppers)} shoppers, t = {t - scenario.start_ts:.1f} s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _poly(ax, pts, **kw):
    p = np.asarray(list(pts) + [pts[0]], float)
    ax.plot(p[:, 0], p[:, 1], **kw)


def _floor(ax, config, scenario, t):
    _poly(ax, config.floor.outline, color="k", lw=1.5)
    for s in config.shelves:
        p = np.asarray(s.polygon, float)
        ax.fill(p[:, 0], p[:, 1], color="0.75")
        ax.text(*p.mean(axis=0), s.id, ha="center", va="center", fontsize=9)
    for o in config.floor.obstacles:
        p = np.asarray(o.polygon, float)
        ax.fill(p[:, 0], p[:, 1], color="0.45")
    for z in config.zones:
        if z.kind in ("entry", "exit"):
            _poly(ax, z.polygon, color="g" if z.kind == "entry" else "r", ls="--", lw=1)
    colours = matplotlib_colours(len(scenario.shoppers))
    for s, c in zip(scenario.shoppers, colours):
        k = np.asarray(s.keyframes, float)
        ax.plot(k[:, 1], k[:, 2], "-", color=c, lw=0.8, alpha=0.7)
        ax.plot(*s.position(s.checkin_ts), "^", color=c, ms=5)
    for h in scenario.handovers:
        ax.plot(*h.position, "*", color="m", ms=10)
    now = scenario.positions_at(t)
    for s, c in zip(scenario.shoppers, colours):
        if s.id in now:
            ax.plot(*now[s.id], "o", color=c, ms=8, mec="k")
            ax.text(now[s.id][0] + 0.1, now[s.id][1] + 0.1, s.id.split("-")[-1], fontsize=7)
    for cam in config.cameras:
        if cam.mount is not None:
            ax.plot(*cam.mount.position[:2], "ks", ms=6)
            ax.text(cam.mount.position[0], cam.mount.position[1] - 0.35, cam.id, fontsize=7, ha="center")
    for n in config.ble_nodes:
        ax.plot(*n.position[:2], "bo", ms=4)
    ax.set_aspect("equal")
    ax.set_title("walks (lines), check-ins (^), handovers (*), positions now (o), cameras (squares), BLE (blue)",
                 fontsize=9)


def _camera(ax, cam, obs, scenario, t):
    from matplotlib.patches import Rectangle

    w, h = cam.resolution
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    for face in cam.shelf_faces:
        _poly(ax, face.polygon, color="g", lw=0.8)
    if not obs:
        ax.set_title(f"{cam.id}: nothing observed", fontsize=8)
        return
    ts = np.array([m.ts for m in obs])
    frame_ts = ts[int(np.argmin(np.abs(ts - t)))]
    shown = [m for m in obs if m.ts == frame_ts]
    for m in shown:
        x, y, bw, bh = m.bbox
        owner = scenario.track_owner(m.camera, m.track_id, m.ts)
        colour = "r" if owner is None else "b"
        ax.add_patch(Rectangle((x, y), bw, bh, fill=False, color=colour, lw=1))
        ax.text(x, y - 3, f"{m.track_id}:{owner.split('-')[-1] if owner else 'FP'}", fontsize=6, color=colour)
        if m.keypoints:
            kp = np.array([[k.x, k.y, k.score] for k in m.keypoints])
            ax.scatter(kp[:, 0], kp[:, 1], c=kp[:, 2], s=6, cmap="viridis", vmin=0, vmax=1)
    ax.set_title(f"{cam.id} frame {shown[0].frame}: {len(shown)} boxes", fontsize=8)


def matplotlib_colours(n: int) -> list:
    """``n`` distinct colours from matplotlib's tab20 map."""
    import matplotlib

    cmap = matplotlib.colormaps["tab20"]
    return [cmap(i % 20) for i in range(n)]
