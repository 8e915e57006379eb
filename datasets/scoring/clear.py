"""CLEAR MOT metrics (Bernardin & Stiefelhagen, 2008): MOTA, MOTP, ID switches, MT/PT/ML, fragmentations.

Computed as TrackEval does: per frame, the Hungarian algorithm on IoU (>= 0.5) with a large
bonus for keeping the previous frame's pairing; an id switch is a ground-truth id matched to
a tracker id other than the one it was last matched to (any number of frames before).
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .matching import EPS, SequenceData

THRESHOLD = 0.5
#: Integer fields, summed over sequences when combining.
COUNT_FIELDS = ("CLR_TP", "CLR_FN", "CLR_FP", "IDSW", "MT", "PT", "ML", "Frag", "CLR_Frames", "MOTP_sum")


def evaluate(data: SequenceData, threshold: float = THRESHOLD) -> dict[str, float]:
    """CLEAR fields of one sequence."""
    res = {k: 0 for k in COUNT_FIELDS}
    res["MOTP_sum"] = 0.0
    res["CLR_Frames"] = data.num_frames
    if data.num_tracker_dets == 0 or data.num_gt_dets == 0:
        res["CLR_FN"] = data.num_gt_dets
        res["CLR_FP"] = data.num_tracker_dets
        res["ML"] = data.num_gt_ids if data.num_tracker_dets == 0 else 0
        return _final(res)

    n = data.num_gt_ids
    gt_count, gt_matched, gt_frag = np.zeros(n), np.zeros(n), np.zeros(n)
    prev_id = np.full(n, np.nan)           # last tracker id each gt was matched to (for IDSW)
    prev_step_id = np.full(n, np.nan)      # tracker id each gt was matched to in the previous frame
    for g, r, sim in zip(data.gt_ids, data.tracker_ids, data.similarity):
        if len(g) == 0:
            res["CLR_FP"] += len(r)
            continue
        if len(r) == 0:
            res["CLR_FN"] += len(g)
            gt_count[g] += 1
            continue
        score = 1000.0 * (r[None, :] == prev_step_id[g][:, None]) + sim
        score[sim < threshold - EPS] = 0
        rows, cols = linear_sum_assignment(-score)
        ok = score[rows, cols] > EPS
        rows, cols = rows[ok], cols[ok]
        matched_gt, matched_tr = g[rows], r[cols]
        before = prev_id[matched_gt]
        res["IDSW"] += int(np.sum(~np.isnan(before) & (matched_tr != before)))
        gt_count[g] += 1
        gt_matched[matched_gt] += 1
        not_tracked_before = np.isnan(prev_step_id)
        prev_id[matched_gt] = matched_tr
        prev_step_id[:] = np.nan
        prev_step_id[matched_gt] = matched_tr
        gt_frag += not_tracked_before & ~np.isnan(prev_step_id)
        res["CLR_TP"] += len(matched_gt)
        res["CLR_FN"] += len(g) - len(matched_gt)
        res["CLR_FP"] += len(r) - len(matched_gt)
        res["MOTP_sum"] += float(sim[rows, cols].sum())

    ratio = gt_matched[gt_count > 0] / gt_count[gt_count > 0]
    res["MT"] = int(np.sum(ratio > 0.8))
    res["PT"] = int(np.sum(ratio >= 0.2)) - res["MT"]
    res["ML"] = n - res["MT"] - res["PT"]
    res["Frag"] = int(np.sum(gt_frag[gt_frag > 0] - 1))
    return _final(res)


def combine(results: list[dict[str, float]]) -> dict[str, float]:
    """Combine sequences by summing the counts."""
    return _final({k: sum(r[k] for r in results) for k in COUNT_FIELDS})


def summary(res: dict[str, float]) -> dict[str, float]:
    """MOTA, MOTP, IDSW, false positives/negatives, MT, ML, Frag."""
    return {"MOTA": res["MOTA"], "MOTP": res["MOTP"], "IDSW": res["IDSW"], "FP": res["CLR_FP"],
            "FN": res["CLR_FN"], "MT": res["MT"], "ML": res["ML"], "Frag": res["Frag"]}


def _final(res: dict[str, float]) -> dict[str, float]:
    tp, fn, fp, idsw = res["CLR_TP"], res["CLR_FN"], res["CLR_FP"], res["IDSW"]
    gt = max(1.0, tp + fn)
    res["MOTA"] = (tp - fp - idsw) / gt
    res["MODA"] = (tp - fp) / gt
    res["MOTP"] = res["MOTP_sum"] / max(1.0, tp)
    res["CLR_Re"] = tp / gt
    res["CLR_Pr"] = tp / max(1.0, tp + fp)
    return res
