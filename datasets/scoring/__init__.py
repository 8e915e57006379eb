"""Multi-object tracking scores: HOTA, CLEAR (MOTA) and Identity (IDF1) for MOTChallenge data.

:func:`score_sequence` scores one sequence's tracker rows against its ground truth;
:func:`combine` pools several sequences the way TrackEval's ``COMBINED_SEQ`` does
(counts summed, HOTA's association terms weighted by true positives).
The numbers match TrackEval's ``MotChallenge2DBox`` (tests/datasets/scoring/test_mot_metrics.py checks them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import clear, hota, identity
from .matching import SequenceData, box_iou_xywh, guess_benchmark, prepare_sequence

__all__ = ["MotScores", "score_sequence", "score_data", "combine", "prepare_sequence",
           "guess_benchmark", "box_iou_xywh", "SequenceData"]


@dataclass
class MotScores:
    """Scores of one sequence (or of several combined): the raw fields of each metric family."""

    name: str
    hota: dict = field(repr=False)
    clear: dict = field(repr=False)
    identity: dict = field(repr=False)

    def summary(self) -> dict[str, float]:
        """The headline figures: HOTA, DetA, AssA, LocA, MOTA, MOTP, IDF1, IDP, IDR, IDSW, FP, FN, ..."""
        out = hota.summary(self.hota)
        out.update(clear.summary(self.clear))
        out.update(identity.summary(self.identity))
        return {k: (float(v) if isinstance(v, (float, np.floating)) else int(v)) for k, v in out.items()}

    @property
    def HOTA(self) -> float:  # noqa: N802 - the metric's name
        """HOTA averaged over localisation thresholds."""
        return float(np.mean(self.hota["HOTA"]))

    @property
    def MOTA(self) -> float:  # noqa: N802
        """MOTA."""
        return float(self.clear["MOTA"])

    @property
    def IDF1(self) -> float:  # noqa: N802
        """IDF1."""
        return float(self.identity["IDF1"])


def score_data(name: str, data: SequenceData) -> MotScores:
    """Score already-prepared sequence data."""
    return MotScores(name, hota.evaluate(data), clear.evaluate(data), identity.evaluate(data))


def score_sequence(gt_rows: np.ndarray, tracker_rows: np.ndarray, length: int, *,
                   name: str = "sequence", benchmark: str | None = None) -> MotScores:
    """Score MOTChallenge tracker rows against ground-truth rows of a sequence of ``length`` frames.

    ``benchmark``: ``"MOT15"``, ``"MOT16"``, ``"MOT17"`` or ``"MOT20"`` preprocessing
    conventions; ``None`` guesses from the ground truth's class column (:func:`guess_benchmark`).
    """
    data = prepare_sequence(gt_rows, tracker_rows, length, benchmark or guess_benchmark(gt_rows))
    return score_data(name, data)


def combine(scores: list[MotScores], name: str = "COMBINED") -> MotScores:
    """Pool several sequences' scores into one, as TrackEval's combined row."""
    if not scores:
        raise ValueError("no sequences to combine")
    return MotScores(name, hota.combine([s.hota for s in scores]), clear.combine([s.clear for s in scores]),
                     identity.combine([s.identity for s in scores]))
