"""BLE path-loss calibration: fit each receiver's RSSI at 1 m and exponent.

From samples of a tag at known positions (a survey walk, a robot run, or
reference tags fixed at known spots) fit, per node,
``rssi = rssi_at_1m - 10 n log10(d)`` with scipy's ``least_squares`` and a robust
loss (``soft_l1`` by default, so a reflection or a body in the way does not drag
the fit), and report the residuals.

Re-calibration from reference tags (as ESPresense-companion does) usually has
only a few distinct distances per node, which cannot pin both parameters down:
:func:`recalibrate_from_references` then keeps the exponent and refits only the
1 m level, and fits both when the distances span enough range.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
from scipy.optimize import least_squares

from ..contracts import BleSighting, Envelope
from ..errors import StoresenseError
from ..ips.pathloss import DEFAULT_TAG_HEIGHT_M, MIN_DISTANCE_M, Anchor

#: Distances must span at least this ratio (max/min) to fit the exponent as well as the 1 m level.
MIN_DISTANCE_SPAN = 2.0


@dataclass(frozen=True)
class PathLossFit:
    """The fitted model of one node and how well it fits."""

    node: str
    rssi_at_1m: float
    exponent: float
    n_samples: int
    rmse_db: float
    mad_db: float
    median_residual_db: float
    p90_abs_residual_db: float
    exponent_fitted: bool

    def as_row(self) -> dict:
        """A flat dict for tables and JSON."""
        return asdict(self)


def fit_path_loss(node: str, distances_m: np.ndarray, rssi: np.ndarray, *, loss: str = "soft_l1",
                  f_scale_db: float = 4.0, exponent: float | None = None,
                  start: tuple[float, float] = (-59.0, 2.0)) -> PathLossFit:
    """Fit one node from 3-D distances and RSSI (NaN samples are ignored).

    ``exponent`` fixes the exponent and fits only the 1 m level. The exponent is
    also kept fixed (at ``start[1]``) when the distances span less than
    :data:`MIN_DISTANCE_SPAN`. Raises StoresenseError when fewer than 3 samples remain.
    """
    d = np.maximum(np.asarray(distances_m, dtype=float), MIN_DISTANCE_M)
    r = np.asarray(rssi, dtype=float)
    ok = np.isfinite(d) & np.isfinite(r)
    d, r = d[ok], r[ok]
    if len(r) < 3:
        raise StoresenseError(f"node {node}: {len(r)} usable samples, at least 3 are needed to fit its path loss")
    logd = np.log10(d)
    fit_exp = exponent is None and d.max() / d.min() >= MIN_DISTANCE_SPAN
    n_fixed = exponent if exponent is not None else start[1]
    if fit_exp:
        sol = least_squares(lambda th: th[0] - 10.0 * th[1] * logd - r, np.array(start, dtype=float),
                            loss=loss, f_scale=f_scale_db, bounds=([-120.0, 0.6], [0.0, 6.0]))
        p0, n = float(sol.x[0]), float(sol.x[1])
    else:
        sol = least_squares(lambda th: th[0] - 10.0 * n_fixed * logd - r, np.array([start[0]], dtype=float),
                            loss=loss, f_scale=f_scale_db, bounds=([-120.0], [0.0]))
        p0, n = float(sol.x[0]), float(n_fixed)
    res = r - (p0 - 10.0 * n * logd)
    med = float(np.median(res))
    return PathLossFit(node, round(p0, 3), round(n, 4), int(len(r)), float(np.sqrt(np.mean(res ** 2))),
                       float(1.4826 * np.median(np.abs(res - med))), med, float(np.percentile(np.abs(res), 90)),
                       bool(fit_exp))


def fit_nodes(anchors: Mapping[str, Anchor], positions: np.ndarray, rssi: np.ndarray, nodes: list[str], *,
              tag_height: float = DEFAULT_TAG_HEIGHT_M, **kwargs) -> dict[str, PathLossFit]:
    """Fit every node from a table of tag positions (n, 2) and RSSI (n, len(nodes))."""
    pos = np.asarray(positions, dtype=float).reshape(-1, 2)
    r = np.asarray(rssi, dtype=float).reshape(len(pos), len(nodes))
    fits = {}
    for j, n in enumerate(nodes):
        if n not in anchors:
            raise StoresenseError(f"samples have a column for node {n!r}, which has no known position")
        fits[n] = fit_path_loss(n, anchors[n].distance(pos, tag_height), r[:, j], **kwargs)
    return fits


def apply_fits(anchors: Mapping[str, Anchor], fits: Mapping[str, PathLossFit]) -> dict[str, Anchor]:
    """Anchors with their fitted path-loss models (unfitted ones unchanged)."""
    return {k: (a.with_model(fits[k].rssi_at_1m, fits[k].exponent) if k in fits else a) for k, a in anchors.items()}


@dataclass(frozen=True)
class ReferenceTag:
    """A tag fixed at a known floor spot (for periodic re-calibration)."""

    tag: str
    x: float
    y: float
    height: float = DEFAULT_TAG_HEIGHT_M
    node: str | None = None  # the receiver that advertises as this tag (it does not hear itself)


def peer_references(anchors: Mapping[str, Anchor], peers: Mapping[str, str]) -> list[ReferenceTag]:
    """Receivers that also advertise, as reference tags at their antennas (``peers``: node id -> its tag id).

    What the receivers hear of each other then fits their path loss without a
    walk test (as ESPresense-companion does). The fitted 1 m level is for a
    transmitter as strong as the receivers' own radios; phones differ by a few
    dB, so reference tags or a walk test, when there are some, refine it.
    """
    unknown = sorted(set(peers) - set(anchors))
    if unknown:
        raise StoresenseError(f"peers: node(s) {', '.join(unknown)} are not BLE nodes of the store "
                              f"(it has {', '.join(sorted(anchors))})")
    return [ReferenceTag(tag, anchors[node].x, anchors[node].y, anchors[node].z, node) for node, tag in peers.items()]


def load_peers(path: str | Path) -> dict[str, str]:
    """Which tag id each receiver advertises as: CSV ``node,tag`` (node id -> tag id)."""
    path = Path(path)
    try:
        lines = [ln for ln in path.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
    except OSError as exc:
        raise StoresenseError(f"{path}: cannot read peers: {exc.strerror}") from None
    if not lines or [h.strip().lower() for h in lines[0].split(",")][:2] != ["node", "tag"]:
        raise StoresenseError(f"{path}:1: expected a header 'node,tag'")
    out: dict[str, str] = {}
    for n, ln in enumerate(lines[1:], 2):
        parts = [p.strip() for p in ln.split(",")]
        if len(parts) < 2 or not parts[0] or not parts[1]:
            raise StoresenseError(f"{path}:{n}: expected 'node,tag', got {ln!r}")
        out[parts[0]] = parts[1]
    if not out:
        raise StoresenseError(f"{path}: no peers")
    return out


def load_references(path: str | Path) -> list[ReferenceTag]:
    """Read reference tags from CSV (``tag,x,y[,height]``) or JSON (a list of objects with those keys)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise StoresenseError(f"{path}: cannot read reference positions: {exc.strerror}") from None
    refs: list[ReferenceTag] = []
    if path.suffix.lower() == ".json":
        try:
            items = json.loads(text)
            for i, it in enumerate(items):
                refs.append(ReferenceTag(str(it["tag"]), float(it["x"]), float(it["y"]),
                                         float(it.get("height", DEFAULT_TAG_HEIGHT_M))))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoresenseError(f"{path}: expected a JSON list of {{tag, x, y[, height]}} objects ({exc})") from None
    else:
        lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        if not lines or [h.strip() for h in lines[0].split(",")][:3] != ["tag", "x", "y"]:
            raise StoresenseError(f"{path}:1: expected a header 'tag,x,y[,height]'")
        for n, ln in enumerate(lines[1:], 2):
            parts = [p.strip() for p in ln.split(",")]
            try:
                refs.append(ReferenceTag(parts[0], float(parts[1]), float(parts[2]),
                                         float(parts[3]) if len(parts) > 3 and parts[3] else DEFAULT_TAG_HEIGHT_M))
            except (ValueError, IndexError):
                raise StoresenseError(f"{path}:{n}: expected 'tag,x,y[,height]', got {ln!r}") from None
    if not refs:
        raise StoresenseError(f"{path}: no reference tags")
    return refs


def recalibrate_from_references(anchors: Mapping[str, Anchor], sightings: Iterable[Envelope],
                                references: list[ReferenceTag], **kwargs) -> dict[str, PathLossFit]:
    """Refit each node from what it heard of the reference tags.

    Uses the smoothed RSSI when a sighting carries one. A node that heard fewer
    than 3 reference samples is left out (and keeps its model).
    """
    where = {r.tag: r for r in references}
    samples: dict[str, tuple[list[float], list[float]]] = {}
    for msg in sightings:
        if not isinstance(msg, BleSighting) or msg.tag not in where or msg.node not in anchors:
            continue
        ref = where[msg.tag]
        if ref.node == msg.node:  # a receiver hearing its own advertisements
            continue
        d = float(anchors[msg.node].distance(np.array([ref.x, ref.y]), ref.height))
        ds, rs = samples.setdefault(msg.node, ([], []))
        ds.append(d)
        rs.append(msg.rssi_smoothed if msg.rssi_smoothed is not None else msg.rssi)
    fits = {}
    for node, (ds, rs) in sorted(samples.items()):
        if len(rs) < 3:
            continue
        a = anchors[node]
        fits[node] = fit_path_loss(node, np.array(ds), np.array(rs), start=(a.rssi_at_1m, a.exponent), **kwargs)
    if not fits:
        raise StoresenseError("no node heard any reference tag often enough (3 samples) to recalibrate")
    return fits


def plot_fits(anchors: Mapping[str, Anchor], samples: dict[str, tuple[np.ndarray, np.ndarray]],
              fits: Mapping[str, PathLossFit], path: str | Path) -> Path:
    """RSSI vs distance per node with the fitted curve (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    nodes = [n for n in fits if n in samples]
    cols = min(3, max(len(nodes), 1))
    rows = int(np.ceil(len(nodes) / cols)) or 1
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax, n in zip(axes.ravel(), nodes):
        d, r = samples[n]
        f = fits[n]
        ax.scatter(d, r, s=3, alpha=0.25, color="tab:blue", label="samples")
        dd = np.geomspace(max(float(np.nanmin(d)), MIN_DISTANCE_M), float(np.nanmax(d)), 100)
        ax.plot(dd, f.rssi_at_1m - 10 * f.exponent * np.log10(dd), color="tab:red",
                label=f"{f.rssi_at_1m:.1f} dBm, n={f.exponent:.2f}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.tick_params(axis="x", which="minor", labelsize=6)
        ax.set_title(f"{n}: RMSE {f.rmse_db:.1f} dB, MAD {f.mad_db:.1f} dB", fontsize=9)
        ax.set_xlabel("distance (m)")
        ax.set_ylabel("RSSI (dBm)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    for ax in axes.ravel()[len(nodes):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return Path(path)


def nodes_yaml(anchors: Mapping[str, Anchor]) -> str:
    """``ble_nodes:`` YAML entries for the store config with the (fitted) models."""
    lines = ["ble_nodes:"]
    for a in anchors.values():
        lines.append(f"  - {{id: {a.id}, position: [{a.x:g}, {a.y:g}, {a.z:g}], "
                     f"rssi_at_1m: {a.rssi_at_1m:.1f}, path_loss_exponent: {a.exponent:.3f}}}")
    return "\n".join(lines) + "\n"


def recalibrate_from_recording(recording: str | Path, references: str | Path | None, *,
                               config_path: str | Path | None = None, messages: list | None = None,
                               peers: str | Path | None = None):
    """Refit the store's BLE nodes from a recording of reference tags (``storesense calibrate ble REC``).

    ``messages`` are the sightings already read (e.g. from a walk-test CSV); without
    them the JSONL ``recording`` is replayed. ``peers`` (CSV ``node,tag``) names the
    tag ids the receivers advertise as: what they hear of each other counts as
    reference samples at their antennas (:func:`peer_references`). Returns the store's anchors, the fits,
    the samples per fitted node (3-D distances and RSSI, for :func:`plot_fits`) and
    a line to print. Raises StoresenseError on bad input.
    """
    from ..config import example_store_path, load_store_config
    from ..ips.pathloss import anchors_from_config
    from ..transport.recording import replay

    if references is None and peers is None:
        raise StoresenseError(f"{recording}: a recording needs --references (the reference tags' positions) "
                              "and/or --peers (the tags the receivers advertise as)")
    cfg = load_store_config(config_path or example_store_path())
    anchors = anchors_from_config(cfg)
    refs = (load_references(references) if references is not None else []) + \
        (peer_references(anchors, load_peers(peers)) if peers is not None else [])
    msgs = [m for m in (messages if messages is not None else replay(recording)) if isinstance(m, BleSighting)]
    fits = recalibrate_from_references(anchors, msgs, refs)
    where = {r.tag: r for r in refs}
    samples = {}
    for n in fits:
        sel = [m for m in msgs if m.node == n and m.tag in where and where[m.tag].node != n]
        d = np.array([float(anchors[n].distance(np.array([where[m.tag].x, where[m.tag].y]), where[m.tag].height))
                      for m in sel])
        samples[n] = (d, np.array([m.rssi_smoothed if m.rssi_smoothed is not None else m.rssi for m in sel]))
    n_peer = sum(r.node is not None for r in refs)
    line = (f"re-calibrated {len(fits)} of {len(anchors)} nodes from {len(msgs)} sightings of "
            f"{len(refs) - n_peer} reference tags" + (f" and {n_peer} receivers heard by each other" if n_peer else ""))
    return anchors, fits, samples, line


def write_fits(anchors: Mapping[str, Anchor], fits: Mapping[str, PathLossFit],
               samples: dict[str, tuple[np.ndarray, np.ndarray]], *, output: str | Path | None = None,
               plot: str | Path | None = None) -> list[str]:
    """Write the fitted ``ble_nodes:`` YAML to ``output`` and the plot to ``plot`` (each when given); lines to print."""
    lines = []
    if output:
        Path(output).write_text(nodes_yaml(apply_fits(anchors, fits)), encoding="utf-8")
        lines.append(f"wrote {output}")
    if plot:
        plot_fits(anchors, samples, fits, plot)
        lines.append(f"wrote {plot}")
    return lines
