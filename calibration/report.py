"""The calibration validation report: PNG plots and a short Markdown summary.

* ``coverage.png``: how many cameras see each floor cell, shelves and obstacles
  drawn, cells seen by no camera in red, camera positions marked;
* ``coverage_per_camera.png``: what each camera sees, one small map per camera;
* per intrinsics result: ``<name>_view_errors.png`` (reprojection error per
  view, views where the board was not found listed) and
  ``<name>_residuals.png`` (residual vectors at every corner, over the first image);
* per floor fit: ``<camera>_floor_fit.png`` (residual vectors on the image,
  floor residuals on the plan, RANSAC outliers marked).

Plots use matplotlib's Agg backend, so no display is needed.
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after selecting the backend)
import numpy as np  # noqa: E402
from matplotlib.colors import BoundaryNorm, ListedColormap  # noqa: E402
from matplotlib.patches import Polygon  # noqa: E402

from ..config import StoreConfig  # noqa: E402
from ..errors import StoresenseError  # noqa: E402
from .coverage import CoverageMap, floor_coverage  # noqa: E402
from .floor_fit import FloorFit  # noqa: E402
from .images import read_image  # noqa: E402
from .intrinsics import IntrinsicsResult  # noqa: E402

UNSEEN = "#d62728"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "result"


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def _draw_store(ax, cfg: StoreConfig, labels: bool = True) -> None:
    outline = np.asarray(cfg.floor.outline, float)
    ax.add_patch(Polygon(outline, closed=True, fill=False, lw=2, ec="black"))
    for shelf in cfg.shelves:
        ax.add_patch(Polygon(shelf.polygon, closed=True, fc="#8c8c8c", ec="black", lw=1, alpha=0.9))
        if labels:
            cx, cy = np.mean(shelf.polygon, axis=0)
            ax.text(cx, cy, shelf.id, ha="center", va="center", color="white", fontsize=9, weight="bold")
    for obstacle in cfg.floor.obstacles:
        ax.add_patch(Polygon(obstacle.polygon, closed=True, fc="#bdbdbd", ec="black", lw=1, hatch="//"))
        if labels:
            cx, cy = np.mean(obstacle.polygon, axis=0)
            ax.text(cx, cy, obstacle.id, ha="center", va="center", fontsize=7)
    (x0, y0), (x1, y1) = outline.min(axis=0), outline.max(axis=0)
    pad = 0.05 * max(x1 - x0, y1 - y0)
    ax.set_xlim(x0 - pad, x1 + pad)
    ax.set_ylim(y0 - pad, y1 + pad)
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")


def _camera_centres(cfg: StoreConfig) -> dict[str, np.ndarray]:
    out = {}
    for cam in cfg.cameras:
        if cam.intrinsics is not None and (cam.extrinsics is not None or cam.mount is not None):
            R, t = cam.rotation_translation()
            out[cam.id] = -R.T @ t
    return out


def _draw_cameras(ax, cfg: StoreConfig) -> None:
    for cam_id, c in _camera_centres(cfg).items():
        ax.plot(c[0], c[1], marker="^", ms=11, mfc="white", mec="black", mew=1.5, zorder=5)
        ax.annotate(f"{cam_id}\n{c[2]:.1f} m", (c[0], c[1]), textcoords="offset points", xytext=(0, 9),
                    ha="center", fontsize=8, zorder=6,
                    bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8})


def plot_coverage(cfg: StoreConfig, cov: CoverageMap, path: Path) -> Path:
    """Floor map coloured by the number of cameras seeing each cell; unseen cells in red."""
    n_cam = max(len(cfg.cameras), 1)
    greens = plt.get_cmap("Greens")
    colors = [UNSEEN] + [greens(0.3 + 0.7 * k / max(n_cam, 1)) for k in range(1, n_cam + 1)]
    cmap = ListedColormap(colors)
    norm = BoundaryNorm(np.arange(-0.5, n_cam + 1.5), cmap.N)
    shown = np.ma.masked_where(~cov.inside, cov.counts)
    fig, ax = plt.subplots(figsize=(10, 7.5))
    x0, x1 = cov.xs[0] - cov.cell / 2, cov.xs[-1] + cov.cell / 2
    y0, y1 = cov.ys[0] - cov.cell / 2, cov.ys[-1] + cov.cell / 2
    im = ax.imshow(shown, origin="lower", extent=(x0, x1, y0, y1), cmap=cmap, norm=norm, interpolation="nearest")
    _draw_store(ax, cfg)
    _draw_cameras(ax, cfg)
    unseen = cov.walkable & (cov.counts == 0)
    if unseen.any():  # outline the gaps too, so they stand out even in grayscale print
        ax.contour(cov.xs, cov.ys, unseen.astype(float), levels=[0.5], colors="black", linewidths=1.2)
    bar = fig.colorbar(im, ax=ax, ticks=range(n_cam + 1), fraction=0.035, pad=0.02)
    bar.set_label("cameras seeing the cell")
    f = cov.fractions()
    where = "floor level" if cov.height == 0 else f"{cov.height:.2f} m above the floor"
    title = (f"{cfg.store.name}: camera coverage at {where} ({cov.cell:.2f} m cells)\n"
             f"walkable cells seen by 0 cameras: {f['0']:.1%} - by 1: {f['1']:.1%} - by 2+: {f['2+']:.1%}")
    if cov.skipped:
        title += f"\nnot calibrated, not counted: {', '.join(cov.skipped)}"
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


def plot_coverage_per_camera(cfg: StoreConfig, cov: CoverageMap, path: Path) -> Path:
    """One small floor map per camera showing the cells it sees."""
    ids = list(cov.seen_by)
    if not ids:
        raise StoresenseError("no calibrated camera in the store config; nothing to plot")
    cols = min(len(ids), 2)
    rows = int(np.ceil(len(ids) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(6 * cols, 4.3 * rows), squeeze=False, sharex=True, sharey=True)
    x0, x1 = cov.xs[0] - cov.cell / 2, cov.xs[-1] + cov.cell / 2
    y0, y1 = cov.ys[0] - cov.cell / 2, cov.ys[-1] + cov.cell / 2
    centres = _camera_centres(cfg)
    for ax, cam_id in zip(axes.ravel(), ids):
        seen = np.ma.masked_where(~cov.inside, cov.seen_by[cam_id].astype(float))
        ax.imshow(seen, origin="lower", extent=(x0, x1, y0, y1), cmap=ListedColormap(["#f2f2f2", "#2ca02c"]),
                  vmin=0, vmax=1, interpolation="nearest")
        _draw_store(ax, cfg, labels=False)
        ax.label_outer()  # shared axes: tick labels on the outer panels only (also much faster to draw)
        if cam_id in centres:
            c = centres[cam_id]
            ax.plot(c[0], c[1], marker="^", ms=10, mfc="white", mec="black")
        share = cov.seen_by[cam_id][cov.walkable].mean() if cov.walkable.any() else 0.0
        ax.set_title(f"{cam_id}: sees {share:.0%} of the walkable floor", fontsize=10)
    for k, ax in enumerate(axes.ravel()[len(ids):], start=len(ids)):
        ax.axis("off")
        axes.ravel()[k - cols].xaxis.set_tick_params(labelbottom=True)  # the panel above an empty slot
        axes.ravel()[k - cols].set_xlabel("x (m)")
    fig.subplots_adjust(wspace=0.25, hspace=0.3)  # cheaper than tight_layout; _save trims the margins
    return _save(fig, path)


def plot_view_errors(result: IntrinsicsResult, path: Path, title: str = "") -> Path:
    """Bar chart of the reprojection error of every view, with the RMS and the rejected views."""
    names = [v.name for v in result.views] + list(result.rejected)
    errors = [v.error_px for v in result.views] + [0.0] * len(result.rejected)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(names) + 2), 4.5))
    colors = ["#1f77b4"] * len(result.views) + [UNSEEN] * len(result.rejected)
    x = np.arange(len(names))
    ax.bar(x, errors, color=colors)
    ax.axhline(result.rms, color="black", ls="--", lw=1, label=f"overall RMS {result.rms:.3f} px")
    top = max(errors + [result.rms]) or 1.0
    for i in range(len(result.views), len(names)):
        ax.text(i, 0.02 * top, "board\nnot found", ha="center", va="bottom", color=UNSEEN, fontsize=7, rotation=90)
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("RMS reprojection error (px)")
    K = result.matrix()
    ax.set_title(title or f"{Path(result.source).name}: {len(result.views)} views used, "
                 f"{len(result.rejected)} rejected\nfx={K[0, 0]:.2f} fy={K[1, 1]:.2f} "
                 f"cx={K[0, 2]:.2f} cy={K[1, 2]:.2f}  flags: {', '.join(result.flags) or 'none'}", fontsize=10)
    ax.legend(loc="upper right")
    ax.set_ylim(0, top * 1.15)
    return _save(fig, path)


def _arrow_scale(residuals: np.ndarray, extent: float) -> float:
    """Magnification so that the 95th-percentile residual is drawn ~4 % of the image wide."""
    typical = float(np.percentile(np.linalg.norm(residuals, axis=1), 95)) if len(residuals) else 0.0
    return 0.04 * extent / typical if typical > 0 else 1.0


def plot_intrinsics_residuals(result: IntrinsicsResult, path: Path) -> Path:
    """Residual vectors (detected - reprojected) at every corner of every view, magnified."""
    pts = np.array([p for v in result.views for p in v.points], float).reshape(-1, 2)
    res = np.array([r for v in result.views for r in v.residuals], float).reshape(-1, 2)
    w, h = result.image_size
    fig, ax = plt.subplots(figsize=(10.5, 9 * h / w + 0.8))
    background = None
    if result.views:
        try:
            background = read_image(Path(result.source) / result.views[0].name)
        except StoresenseError:
            background = None  # the images moved away: draw on a blank frame
    if background is not None and background.shape[:2] == (h, w):
        ax.imshow(background, cmap="gray", alpha=0.45, extent=(0, w, h, 0))
    scale = _arrow_scale(res, w)
    colors = plt.get_cmap("tab20")
    q = None
    for i, view in enumerate(result.views):
        p = np.asarray(view.points, float).reshape(-1, 2)
        r = np.asarray(view.residuals, float).reshape(-1, 2)
        q = ax.quiver(p[:, 0], p[:, 1], r[:, 0] * scale, r[:, 1] * scale, color=colors(i % 20), angles="xy",
                      scale_units="xy", scale=1, width=0.0025, label=f"{view.name} ({view.error_px:.2f} px)")
    if q is not None:
        ref = float(np.percentile(np.linalg.norm(res, axis=1), 95)) or 1.0
        ax.quiverkey(q, 0.82, 1.02, ref * scale, f"{ref:.2f} px", labelpos="E", coordinates="axes", color="black")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, title="view (RMS)", title_fontsize=8)
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_aspect("equal")
    ax.set_xlabel("u (px)")
    ax.set_ylabel("v (px)")
    ax.set_title(f"{Path(result.source).name}: corner residuals (detected - reprojected), x{scale:.0f}\n"
                 f"{len(pts)} corners in {len(result.views)} views, RMS {result.rms:.3f} px",
                 fontsize=10)
    return _save(fig, path)


def plot_floor_fit(fit: FloorFit, cfg: StoreConfig | None, path: Path) -> Path:
    """Image residual vectors and floor residuals of a camera-to-floor fit; outliers marked."""
    inl = np.array([p.inlier for p in fit.points])
    uv = np.array([[p.u, p.v] for p in fit.points], float)
    duv = np.array([[p.du, p.dv] for p in fit.points], float)
    xy = np.array([[p.x, p.y] for p in fit.points], float)
    cm = np.array([np.nan if p.residual_cm is None else p.residual_cm for p in fit.points], float)
    fig, (ax_img, ax_floor) = plt.subplots(1, 2, figsize=(15, 6))
    w, h = fit.image_size or (int(np.ceil(uv[:, 0].max())) + 1, int(np.ceil(uv[:, 1].max())) + 1)
    scale = _arrow_scale(duv[inl], w)
    if inl.any():
        q = ax_img.quiver(uv[inl, 0], uv[inl, 1], duv[inl, 0] * scale, duv[inl, 1] * scale, color="#1f77b4",
                          angles="xy", scale_units="xy", scale=1, width=0.003)
        ref = float(np.percentile(np.hypot(*duv[inl].T), 95)) or 1.0
        ax_img.quiverkey(q, 0.05, 0.05, ref * scale, f"{ref:.2f} px", labelpos="E", coordinates="axes")
    ax_img.plot(uv[inl, 0], uv[inl, 1], ".", color="#1f77b4", label="inlier")
    ax_img.plot(uv[~inl, 0], uv[~inl, 1], "x", color=UNSEEN, ms=9, mew=2, label="outlier (RANSAC)")
    ax_img.set_xlim(0, w)
    ax_img.set_ylim(h, 0)
    ax_img.set_aspect("equal")
    ax_img.legend(loc="lower right", fontsize=8)
    ax_img.set_title(f"{fit.camera or fit.source}: image residuals x{scale:.0f} ({fit.method}), "
                     f"RMS {fit.rms_px():.2f} px over {fit.inlier_count()}/{len(fit.points)} inliers", fontsize=10)
    if cfg is not None:
        _draw_store(ax_floor, cfg, labels=True)
    else:
        ax_floor.set_aspect("equal")
    sc = ax_floor.scatter(xy[inl, 0], xy[inl, 1], c=cm[inl], cmap="viridis", s=40, edgecolors="black", zorder=4)
    ax_floor.plot(xy[~inl, 0], xy[~inl, 1], "x", color=UNSEEN, ms=9, mew=2, zorder=4)
    fig.colorbar(sc, ax=ax_floor, fraction=0.035, pad=0.02).set_label("floor residual (cm)")
    centre = fit.camera_position()
    if centre is not None:
        ax_floor.plot(centre[0], centre[1], marker="^", ms=11, mfc="white", mec="black", zorder=5)
    ax_floor.set_title(f"floor residuals: RMS {fit.rms_cm():.1f} cm (inliers)", fontsize=10)
    fig.subplots_adjust(wspace=0.2)
    return _save(fig, path)


def write_report(cfg: StoreConfig, out_dir: str | Path, *, intrinsics: list[IntrinsicsResult] = (),
                 floor_fits: list[FloorFit] = (), cell: float = 0.25, height: float = 0.0) -> list[Path]:
    """Write every plot and ``report.md`` (the figures and their numbers) into ``out_dir``."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoresenseError(f"{out}: cannot create: {exc}") from None
    written: list[Path] = []
    lines = [f"# Calibration report: {cfg.store.name}", ""]
    cov = floor_coverage(cfg, cell=cell, height=height)
    written.append(plot_coverage(cfg, cov, out / "coverage.png"))
    f = cov.fractions()
    lines += ["## Floor coverage", "",
              f"Walkable cells ({cov.cell:.2f} m, at {cov.height:.2f} m) seen by 0 cameras: {f['0']:.1%}, "
              f"by 1: {f['1']:.1%}, by 2 or more: {f['2+']:.1%}.", "", "![coverage](coverage.png)", ""]
    if cov.skipped:
        lines += [f"Not calibrated, not counted: {', '.join(cov.skipped)}.", ""]
    if cov.seen_by:
        written.append(plot_coverage_per_camera(cfg, cov, out / "coverage_per_camera.png"))
        lines += ["![per camera](coverage_per_camera.png)", ""]
    used: set[str] = set()
    for result in intrinsics:
        stem = _safe_name(Path(result.source).name or "intrinsics")
        while stem in used:
            stem += "_"
        used.add(stem)
        written.append(plot_view_errors(result, out / f"{stem}_view_errors.png"))
        written.append(plot_intrinsics_residuals(result, out / f"{stem}_residuals.png"))
        K = result.matrix()
        lines += [f"## Intrinsics: {result.source}", "",
                  f"fx {K[0, 0]:.3f}, fy {K[1, 1]:.3f}, cx {K[0, 2]:.3f}, cy {K[1, 2]:.3f}, RMS {result.rms:.4f} px, "
                  f"{len(result.views)} views used; board not found in: {', '.join(result.rejected) or 'none'}.", "",
                  f"![view errors]({stem}_view_errors.png)", "", f"![residuals]({stem}_residuals.png)", ""]
    for fit in floor_fits:
        stem = _safe_name(fit.camera or Path(fit.source).stem) + "_floor_fit"
        while stem in used:
            stem += "_"
        used.add(stem)
        written.append(plot_floor_fit(fit, cfg, out / f"{stem}.png"))
        lines += [f"## Floor fit: {fit.camera or fit.source} ({fit.method})", "",
                  f"{fit.inlier_count()}/{len(fit.points)} inliers, RMS {fit.rms_px():.2f} px, {fit.rms_cm():.1f} cm.",
                  *([""] + [f"- {n}" for n in fit.notes] if fit.notes else []), "", f"![floor fit]({stem}.png)", ""]
    (out / "report.md").write_text("\n".join(lines), encoding="utf-8")
    written.append(out / "report.md")
    return written
