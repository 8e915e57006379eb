"""Identity metrics (Ristani et al., 2016): IDF1, IDP, IDR.

One global one-to-one assignment of ground-truth ids to tracker ids (IoU >= 0.5 counts
as a match in a frame) minimising identity false negatives plus false positives.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from .matching import SequenceData

THRESHOLD = 0.5
COUNT_FIELDS = ("IDTP", "IDFN", "IDFP")


def evaluate(data: SequenceData, threshold: float = THRESHOLD) -> dict[str, float]:
    """IDTP/IDFN/IDFP and IDF1/IDP/IDR of one sequence."""
    if data.num_tracker_dets == 0 or data.num_gt_dets == 0:
        return _final({"IDTP": 0, "IDFN": data.num_gt_dets, "IDFP": data.num_tracker_dets})
    n_gt, n_tr = data.num_gt_ids, data.num_tracker_ids
    potential = np.zeros((n_gt, n_tr))
    gt_count, tr_count = np.zeros(n_gt), np.zeros(n_tr)
    for g, r, sim in zip(data.gt_ids, data.tracker_ids, data.similarity):
        gi, ri = np.nonzero(sim >= threshold)
        np.add.at(potential, (g[gi], r[ri]), 1)
        gt_count[g] += 1
        tr_count[r] += 1
    # (gt ids + dummy gt rows) × (tracker ids + dummy tracker columns), as in TrackEval
    size = n_gt + n_tr
    fp = np.zeros((size, size))
    fn = np.zeros((size, size))
    fp[n_gt:, :n_tr] = 1e10
    fn[:n_gt, n_tr:] = 1e10
    fn[:n_gt, :n_tr] = gt_count[:, None]
    fn[np.arange(n_gt), n_tr + np.arange(n_gt)] = gt_count
    fp[:n_gt, :n_tr] = tr_count[None, :]
    fp[n_gt + np.arange(n_tr), np.arange(n_tr)] = tr_count
    fn[:n_gt, :n_tr] -= potential
    fp[:n_gt, :n_tr] -= potential
    rows, cols = linear_sum_assignment(fn + fp)
    idfn = int(fn[rows, cols].sum())
    idfp = int(fp[rows, cols].sum())
    return _final({"IDTP": int(gt_count.sum()) - idfn, "IDFN": idfn, "IDFP": idfp})


def combine(results: list[dict[str, float]]) -> dict[str, float]:
    """Combine sequences by summing the counts."""
    return _final({k: sum(r[k] for r in results) for k in COUNT_FIELDS})


def summary(res: dict[str, float]) -> dict[str, float]:
    """IDF1, IDP, IDR."""
    return {"IDF1": res["IDF1"], "IDP": res["IDP"], "IDR": res["IDR"]}


def _final(res: dict[str, float]) -> dict[str, float]:
    tp, fn, fp = res["IDTP"], res["IDFN"], res["IDFP"]
    res["IDR"] = tp / max(1.0, tp + fn)
    res["IDP"] = tp / max(1.0, tp + fp)
    res["IDF1"] = tp / max(1.0, tp + 0.5 * fp + 0.5 * fn)
    return res
