"""HOTA (Higher Order Tracking Accuracy; Luiten et al., IJCV 2021), as TrackEval computes it.

HOTA at a localisation threshold alpha is sqrt(DetA * AssA); the reported HOTA is the
mean over alpha = 0.05, 0.10, ..., 0.95. Per frame, ground truth and tracker boxes are
matched by the Hungarian algorithm on IoU weighted by how well the two ids align over
the whole sequence; matches with IoU >= alpha are true positives at alpha.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .matching import EPS, SequenceData

ALPHAS = np.arange(0.05, 0.99, 0.05)
#: Per-alpha count fields, summed over sequences when combining.
COUNT_FIELDS = ("HOTA_TP", "HOTA_FN", "HOTA_FP")


def evaluate(data: SequenceData) -> dict[str, np.ndarray]:
    """HOTA fields of one sequence, each an array over :data:`ALPHAS`."""
    n_alpha = len(ALPHAS)
    res = {k: np.zeros(n_alpha) for k in COUNT_FIELDS + ("AssA", "AssRe", "AssPr", "LocA")}
    if data.num_tracker_dets == 0 or data.num_gt_dets == 0:
        res["HOTA_FN"][:] = data.num_gt_dets
        res["HOTA_FP"][:] = data.num_tracker_dets
        res["LocA"][:] = 1.0
        return _final(res)

    potential = np.zeros((data.num_gt_ids, data.num_tracker_ids))
    gt_count = np.zeros((data.num_gt_ids, 1))
    tr_count = np.zeros((1, data.num_tracker_ids))
    for g, r, sim in zip(data.gt_ids, data.tracker_ids, data.similarity):
        denom = sim.sum(0)[None, :] + sim.sum(1)[:, None] - sim
        sim_iou = np.zeros_like(sim)
        mask = denom > EPS
        sim_iou[mask] = sim[mask] / denom[mask]
        potential[g[:, None], r[None, :]] += sim_iou
        gt_count[g] += 1
        tr_count[0, r] += 1
    alignment = potential / (gt_count + tr_count - potential)

    matches = np.zeros((n_alpha, data.num_gt_ids, data.num_tracker_ids))
    for g, r, sim in zip(data.gt_ids, data.tracker_ids, data.similarity):
        if len(g) == 0 or len(r) == 0:
            res["HOTA_FP"] += len(r)
            res["HOTA_FN"] += len(g)
            continue
        rows, cols = linear_sum_assignment(-(alignment[g[:, None], r[None, :]] * sim))
        matched_sim = sim[rows, cols]
        ok = matched_sim[None, :] >= ALPHAS[:, None] - EPS  # alpha × matches
        n = ok.sum(1)
        res["HOTA_TP"] += n
        res["HOTA_FN"] += len(g) - n
        res["HOTA_FP"] += len(r) - n
        res["LocA"] += (ok * matched_sim[None, :]).sum(1)
        a_idx, m_idx = np.nonzero(ok)
        np.add.at(matches, (a_idx, g[rows[m_idx]], r[cols[m_idx]]), 1)

    tp = np.maximum(1, res["HOTA_TP"])
    ass_a = matches / np.maximum(1, gt_count + tr_count - matches)
    res["AssA"] = (matches * ass_a).sum((1, 2)) / tp
    res["AssRe"] = (matches * (matches / np.maximum(1, gt_count))).sum((1, 2)) / tp
    res["AssPr"] = (matches * (matches / np.maximum(1, tr_count))).sum((1, 2)) / tp
    res["LocA"] = np.maximum(1e-10, res["LocA"]) / np.maximum(1e-10, res["HOTA_TP"])
    return _final(res)


def combine(results: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Combine sequences: counts summed, association and localisation weighted by true positives."""
    res = {k: sum(r[k] for r in results) for k in COUNT_FIELDS}
    tp = np.maximum(1e-10, res["HOTA_TP"])
    for k in ("AssA", "AssRe", "AssPr"):
        res[k] = sum(r[k] * r["HOTA_TP"] for r in results) / tp
    res["LocA"] = np.maximum(1e-10, sum(r["LocA"] * r["HOTA_TP"] for r in results)) / tp
    return _final(res)


def summary(res: dict[str, np.ndarray]) -> dict[str, float]:
    """HOTA, DetA, AssA, DetRe, DetPr, AssRe, AssPr, LocA averaged over alpha."""
    return {k: float(np.mean(res[k])) for k in ("HOTA", "DetA", "AssA", "DetRe", "DetPr", "AssRe", "AssPr", "LocA")}


def _final(res: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    tp, fn, fp = res["HOTA_TP"], res["HOTA_FN"], res["HOTA_FP"]
    res["DetRe"] = tp / np.maximum(1, tp + fn)
    res["DetPr"] = tp / np.maximum(1, tp + fp)
    res["DetA"] = tp / np.maximum(1, tp + fn + fp)
    res["HOTA"] = np.sqrt(res["DetA"] * res["AssA"])
    return res
