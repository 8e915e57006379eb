"""Store-wide floor tracker: one Kalman filter per shopper, in floor metres.

Inputs are batches: all floor observations of one camera frame
(:meth:`FloorTracker.update_frame`), and single position fixes such as BLE
(:meth:`FloorTracker.update_fix`). Each camera frame is associated globally
(Hungarian assignment, scipy) on the Mahalanobis distance between each
observation (with its own covariance) and each track's prediction, gated at
the chi-square 99.9 % quantile, and never farther than a person can walk
(``reach_m`` + ``max_speed`` × time since the track was last corrected), so a
coasting track's growing covariance cannot capture someone across the
store. A camera's own track id is remembered as a
binding to the floor track it matched; a binding lowers the cost of that pair,
so a shopper keeps one floor track while cameras hand them over, yet a camera
whose id switched to another person is overruled by the geometry.

Track life: tentative until ``confirm_hits`` updates, deleted when tentative
for longer than ``tentative_s`` or when no camera saw it for ``max_age_s``;
a track kept alive by position fixes (BLE) lives up to ``fix_max_age_s``.

The filter is injected through ``filter_factory(x, y) -> filter`` (norfair
style); the tracker uses it only through the :class:`FloorFilter` methods.
See :mod:`storesense.fusion.kalman`.

Speed: a camera frame holds one to three people and the store a dozen tracks,
so a small frame is costed and assigned on plain floats (the same arithmetic as
the numpy path, bit for bit; scipy only when the cheapest tracks collide or
tie); large frames go through numpy and scipy. With the default
:class:`~storesense.geometry.cv_filter.FastCV` the filter's own queries are
plain float arithmetic too.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Collection, Protocol

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..contracts import PersonObservation
from ..geometry.cv_filter import FastCV
from .appearance import MIN_QUALITY, RunningAppearance, distance, unit

#: chi-square 99.9 % quantile for 2 degrees of freedom
GATE_CHI2_2DOF = 13.82
_INFEASIBLE = 1e9
#: frames with at most this many observation × track pairs are costed on plain floats, larger ones with numpy
_SCALAR_MAX_PAIRS = 400
#: ``seen_by`` entry of a camera that has not seen a track
_UNSEEN = (0, None)


def _np_pow4(values: list[float]) -> list[float]:
    """``values ** 4`` through numpy's power (as the vectorised path computes it: bit-identical)."""
    return (np.array(values) ** 4).tolist()


#: numpy's log on one value (the same loop as on an array: numpy's result for one element does not depend on
#: the others, see ``tests/fusion/test_tracker.py``); about 5 times cheaper than through a list for the one to
#: three values of a small frame. Not ``math.log``: numpy's SIMD log may round differently.
_log1 = np.log


class FloorFilter(Protocol):
    """What the tracker needs from a filter (positions in metres, covariances in m², times in seconds)."""

    def position(self) -> tuple[float, float]:
        """Current position."""

    def velocity(self) -> tuple[float, float]:
        """Current velocity, m/s."""

    def position_cov(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Current position covariance."""

    def predicted_position(self, dt: float, dt4: float | None = None
                           ) -> tuple[float, float, float, float, float, float]:
        """Position ``dt`` ≥ 0 seconds ahead and its covariance: x, y, var x, cov xy, cov yx, var y.

        ``dt4`` is ``dt**4`` as the tracker computed it (numpy's power over all
        its tracks at once), for a filter whose process noise needs it.
        """

    def mahalanobis2(self, dt: float, z, R) -> float:
        """Squared Mahalanobis distance of position ``z`` (covariance ``R``) from the prediction ``dt`` ahead."""

    def predict(self, dt: float) -> None:
        """Advance the state by ``dt`` seconds."""

    def update(self, z, R) -> None:
        """Correct with position ``z`` of covariance ``R`` (pairs of floats, or arrays)."""


@dataclass
class FloorTrack:
    """One shopper's floor track."""

    id: str
    filter: FloorFilter
    ts: float  # time the filter state refers to
    born_ts: float
    first_xy: tuple[float, float]
    hits: int = 1
    confirmed: bool = False
    last_camera_ts: float = float("-inf")
    last_fix_ts: float = float("-inf")
    seen_by: dict[str, tuple[int, float]] = field(default_factory=dict)  # camera -> (its track id, last ts)
    # colours seen on this track; its short memory is read only on a BLE swap claim: up to 256 views wait unblended
    look: RunningAppearance = field(default_factory=partial(RunningAppearance, held=256))
    history: list = field(default_factory=list)  # (ts, x, y), every 0.2 s at most, the last few minutes
    _history_ts: list = field(default_factory=list, repr=False, compare=False)  # the ts of ``history``

    def xy_at(self, ts: float) -> tuple[float, float]:
        """Filtered position at (or nearest before) time ``ts`` from the recent history."""
        history = self.history
        if not history or ts >= history[-1][0]:
            return self.filter.position()  # (self.xy)
        times = self._history_ts
        if len(times) != len(history):  # history was replaced or edited from outside
            times[:] = [h[0] for h in history]
        i = bisect_left(times, ts) - 1
        h = history[i if i > 0 else 0]
        return h[1], h[2]

    def remember(self) -> None:
        """Append the current position to the history (called after each update; kept at 5 Hz)."""
        history = self.history
        if not history or self.ts - history[-1][0] >= 0.2:
            if len(self._history_ts) != len(history):
                self._history_ts[:] = [h[0] for h in history]
            history.append((self.ts, *self.xy))
            self._history_ts.append(self.ts)
            if len(history) > 1200:
                del history[:300]
                del self._history_ts[:300]

    @property
    def xy(self) -> tuple[float, float]:
        """Current filtered position, metres."""
        return self.filter.position()

    @property
    def velocity(self) -> tuple[float, float]:
        """Current filtered velocity, m/s."""
        return self.filter.velocity()

    @property
    def cov(self) -> tuple[tuple[float, float], tuple[float, float]]:
        """Position covariance, m²."""
        return self.filter.position_cov()

    @property
    def cameras(self) -> set[str]:
        """Cameras that have observed this track."""
        return set(self.seen_by)

    def advance(self, ts: float) -> None:
        """Predict the filter forward to ``ts`` (never backwards)."""
        if ts > self.ts:
            self.filter.predict(ts - self.ts)
            self.ts = ts

    def mahalanobis2(self, ts: float, z: np.ndarray, R: np.ndarray) -> float:
        """Squared Mahalanobis distance of a measurement from the prediction at ``ts``."""
        return self.filter.mahalanobis2(max(0.0, ts - self.ts), z, R)


def _predict_positions(tracks: list[FloorTrack], ts: float) -> tuple[np.ndarray, np.ndarray]:
    """Predicted positions (m×2) and position covariances (m×2×2) of ``tracks`` at ``ts``."""
    dt = np.maximum(0.0, ts - np.array([t.ts for t in tracks]))
    pred = np.array([t.filter.predicted_position(d, d4)
                     for t, d, d4 in zip(tracks, dt.tolist(), (dt**4).tolist())]).reshape(len(tracks), 6)
    return pred[:, :2], pred[:, 2:].reshape(-1, 2, 2)


class FloorTracker:
    """Tracks shoppers on the floor from camera frames and position fixes."""

    def __init__(
        self,
        filter_factory: Callable[[float, float], FloorFilter] = FastCV,
        *,
        gate: float = GATE_CHI2_2DOF,
        bound_gate: float = 40.0,
        binding_bonus: float = 8.0,
        max_speed: float = 2.5,
        reach_m: float = 1.0,
        confirm_hits: int = 3,
        tentative_s: float = 1.0,
        max_age_s: float = 2.5,
        fix_max_age_s: float = 15.0,
        appearance_weight: float = 100.0,
        appearance_centre: float = 0.45,
        appearance_min_n: int = 5,
        reacquire_after_s: float = 0.5,
        reacquire_max: float = 0.5,
    ):
        self.filter_factory = filter_factory
        self.gate = gate
        self.bound_gate = bound_gate
        self.max_speed = max_speed
        self.reach_m = reach_m
        self.binding_bonus = binding_bonus
        self.confirm_hits = confirm_hits
        self.tentative_s = tentative_s
        self.max_age_s = max_age_s
        self.fix_max_age_s = fix_max_age_s
        self.appearance_weight = appearance_weight
        self.appearance_centre = appearance_centre
        self.appearance_min_n = appearance_min_n
        self.reacquire_after_s = reacquire_after_s
        self.reacquire_max = reacquire_max
        self._now = float("-inf")
        self.tracks: dict[str, FloorTrack] = {}
        self.bindings: dict[tuple[str, int], str] = {}  # (camera, camera track id) -> floor track id
        self._close_since: dict[tuple[str, str], float] = {}
        self._distinct_until: dict[tuple[str, str], float] = {}
        self._next = 1
        self._pow4: dict[float, float] = {}  # dt -> numpy's dt**4 (see :meth:`_assign_small`)
        # no track can be stale before these (see :meth:`prune`): the earliest last camera sighting of a confirmed
        # track and the earliest birth of a tentative one, as of the last full pass, lowered by every track made,
        # confirmed or merged since (a sighting only moves a track's own time later)
        self._seen_floor = float("inf")
        self._born_floor = float("inf")

    def track_for(self, camera: str, camera_track: int) -> FloorTrack | None:
        """The live floor track a camera's track id is bound to, if any."""
        tid = self.bindings.get((camera, camera_track))
        return self.tracks.get(tid) if tid else None

    def update_frame(self, camera: str, ts: float, observations: list[PersonObservation]
                     ) -> list[tuple[PersonObservation, FloorTrack]]:
        """Associate one camera frame's observations and update the tracks.

        Returns each observation with the floor track it updated or started.
        Observations without a floor point are skipped.
        """
        obs, zs, looks, Rs, bound_to = [], [], [], [], []
        bindings = self.bindings
        for o in observations:  # one pass, not a comprehension each: a frame holds one to three people
            floor = o.floor
            if floor is not None:
                obs.append(o)
                zs.append((floor.x, floor.y))
                looks.append(unit(o.appearance))
                Rs.append(floor.cov)
                bound_to.append(bindings.get((camera, o.track_id)))  # the floor track this camera id is bound to
        if not obs:
            return []
        self._now = ts
        n = len(obs)
        if n * len(self.tracks) <= _SCALAR_MAX_PAIRS:
            # small however many tracks this camera already updated at ts: they are left out as they are costed
            pairs = self._assign_small(camera, ts, obs, zs, Rs, looks, bound_to)
        else:
            tracks = [t for t in self.tracks.values() if t.seen_by.get(camera, _UNSEEN)[1] != ts]
            if not tracks:
                pairs = []
            elif n * len(tracks) <= _SCALAR_MAX_PAIRS:
                pairs = self._assign_small(camera, ts, obs, zs, Rs, looks, bound_to)
            else:
                cost = self._costs(camera, ts, obs, np.array(zs, dtype=float), np.array(Rs, dtype=float), tracks,
                                   looks)
                rows, cols = linear_sum_assignment(cost)
                pairs = [(i, tracks[j]) for i, j in zip(rows, cols) if cost[i, j] < _INFEASIBLE]
        out = []
        for i, track in pairs:
            if ts > track.ts:  # track.advance(ts), without the call
                track.filter.predict(ts - track.ts)
                track.ts = ts
            track.filter.update(zs[i], Rs[i])
            history = track.history
            if not history or track.ts - history[-1][0] >= 0.2:  # remember() has something to keep (5 Hz)
                track.remember()
            self._seen(track, camera, obs[i], ts, looks[i])
            out.append((obs[i], track))
        if len(pairs) == len(obs):
            return out  # every observation updated a track (most frames)
        matched = {i for i, _ in pairs}
        for i, o in enumerate(obs):
            if i in matched:
                continue
            x, y = float(zs[i][0]), float(zs[i][1])
            track = FloorTrack(f"T{self._next}", self.filter_factory(x, y), ts, ts, (x, y), hits=0)
            self._next += 1
            self.tracks[track.id] = track
            if ts < self._born_floor:
                self._born_floor = ts
            track.remember()
            self._seen(track, camera, o, ts, looks[i])
            out.append((o, track))
        return out

    def _appearance_cost(self, look, track: FloorTrack) -> float:
        """Appearance term of an observation-track pair: ``weight × (distance - centre)``, 0 when either has none.

        Positive when they look unlike each other, negative when alike: about
        twice the log-likelihood ratio of the measured distance distributions
        near the centre (the default was tuned on seeds below 1000).
        """
        if look is None or track.look.n < self.appearance_min_n or not self.appearance_weight:
            return 0.0
        d = distance(look, track.look.long)
        if d is None:
            return 0.0
        if d > self.reacquire_max and self._now - track.last_camera_ts > self.reacquire_after_s:
            return _INFEASIBLE  # a track no camera saw lately takes back only someone who looks like it
        return self.appearance_weight * (d - self.appearance_centre)

    def _assign_small(self, camera: str, ts: float, obs: list[PersonObservation], zs: list, Rs: list,
                      looks: list, bound_to: list) -> list[tuple[int, FloorTrack]]:
        """:meth:`_costs` and the assignment for a small frame, on plain floats.

        The same arithmetic as the vectorised path, operation for operation
        (numpy's power and log, per value: the same bits as on arrays), so the costs are
        bit-identical; tracks out of walking reach are dropped first. When every
        observation's cheapest track is unique and no two observations share
        it, that is the optimal assignment and scipy is not called; otherwise it is.

        One pass over the tracks in order, leaving out those this camera already
        updated at ``ts`` (the rest are the columns; a track is looked up in
        ``seen_by`` only once an observation is in its walking reach): each pair
        in walking reach is gated and costed at once, and each observation keeps
        its cheapest track so far (the first of equal costs) and whether a later
        one ties it; the dense cost matrix is built only for scipy. The columns
        are counted only when some observation has no track (when every one has
        its own, there are at least as many columns as observations).
        ``bound_to``: the floor track id each observation's camera id is bound
        to (or None).
        """
        n = len(obs)
        reach_m, speed = self.reach_m, self.max_speed
        # numpy's dt**4 (what the vectorised path uses) per value, remembered: camera frames come on a few
        # fixed intervals, so most values recur (numpy's result for one element does not depend on the others)
        pow4 = self._pow4
        gate, bound_gate, bonus = self.gate, self.bound_gate, self.binding_bonus
        # the appearance term of :meth:`_appearance_cost`, inline (it is added for most pairs of every frame)
        weight, centre, min_n = self.appearance_weight, self.appearance_centre, self.appearance_min_n
        reacquire_max, now, after = self.reacquire_max, self._now, self.reacquire_after_s
        if not weight:
            looks = [None] * n
        log1 = _log1
        costs = []  # (row, track, cost) of every gated pair, for scipy
        best = [_INFEASIBLE] * n  # per observation: its cheapest cost so far,
        best_t: list = [None] * n  # the first track with it,
        tied = [False] * n  # and whether a later track costs the same
        rows = range(n)
        for t in self.tracks.values():
            dt = ts - t.ts
            dt = dt if dt > 0.0 else 0.0
            reach = reach_m + speed * dt
            reach2 = reach * reach
            cx, cy = t.filter.position()
            pred = None
            for i in rows:
                zx, zy = zs[i]
                ex, ey = zx - cx, zy - cy
                if ex * ex + ey * ey > reach2:
                    continue  # out of walking reach
                if pred is None:
                    seen = t.seen_by.get(camera)
                    if seen is not None and seen[1] == ts:
                        break  # this camera updated it in this frame already: not a column
                    if dt:
                        dt4 = pow4.get(dt)
                        if dt4 is None:
                            if len(pow4) > 4096:
                                pow4.clear()
                            dt4 = pow4[dt] = _np_pow4([dt])[0]
                    else:
                        dt4 = 0.0
                    px, py, p00, p01, p10, p11 = pred = t.filter.predicted_position(dt, dt4)
                (r00, r01), (r10, r11) = Rs[i]
                a, b, c, e = p00 + r00, p01 + r01, p10 + r10, p11 + r11
                det = a * e - b * c
                if not det > 0:
                    continue
                d0, d1 = zx - px, zy - py
                d2 = (e * (d0 * d0) - (b + c) * d0 * d1 + a * (d1 * d1)) / det
                bound = bound_to[i] == t.id
                if not d2 <= (bound_gate if bound else gate):
                    continue
                lg = float(log1(det))
                c = d2 + lg if bound else d2 + lg + bonus
                look = looks[i]
                if look is not None:
                    track_look = t.look
                    if track_look.n >= min_n:
                        d = distance(look, track_look.long)
                        if d is not None:
                            if d > reacquire_max and now - t.last_camera_ts > after:
                                c = _INFEASIBLE  # as in :meth:`_appearance_cost`
                            else:
                                c += weight * (d - centre)
                costs.append((i, t, c))
                low = best[i]
                if c < low:
                    best[i], best_t[i], tied[i] = c, t, False
                elif c == low:
                    tied[i] = True  # (an infeasible cost ties the infeasible start: harmless, never picked)
        if not costs:
            return []
        picks: list[tuple[int, FloorTrack]] = []
        taken = set()
        unique = True
        for i in rows:
            if best[i] >= _INFEASIBLE:
                continue  # nothing this observation could update
            t = best_t[i]
            if tied[i] or t.id in taken:
                unique = False
                break
            taken.add(t.id)
            picks.append((i, t))
        tracks = None  # the columns, in the same order as above (nothing changed the tracks meanwhile)
        if unique and len(picks) < n:  # an observation without a track: scipy when it has no column either
            tracks = [t for t in self.tracks.values() if t.seen_by.get(camera, _UNSEEN)[1] != ts]
            unique = n <= len(tracks)
        if not unique:
            if tracks is None:
                tracks = [t for t in self.tracks.values() if t.seen_by.get(camera, _UNSEEN)[1] != ts]
            col = {t.id: j for j, t in enumerate(tracks)}
            cost = [[_INFEASIBLE] * len(tracks) for _ in obs]
            for i, t, c in costs:
                cost[i][col[t.id]] = c
            C = np.array(cost)
            rows_, cols_ = linear_sum_assignment(C)
            return [(int(i), tracks[j]) for i, j in zip(rows_, cols_) if C[i, j] < _INFEASIBLE]
        return picks

    def _costs(self, camera: str, ts: float, obs: list[PersonObservation], Z: np.ndarray, R: np.ndarray,
               tracks: list[FloorTrack], looks: list | None = None) -> np.ndarray:
        """Assignment costs (observations × tracks): gated squared Mahalanobis distances, vectorised."""
        px, Pp = _predict_positions(tracks, ts)  # (m, 2), (m, 2, 2)
        S = Pp[None, :, :, :] + R[:, None, :, :]
        d = Z[:, None, :] - px[None, :, :]
        a, b, c, e = S[..., 0, 0], S[..., 0, 1], S[..., 1, 0], S[..., 1, 1]
        det = a * e - b * c
        with np.errstate(divide="ignore", invalid="ignore"):
            d2 = (e * d[..., 0] ** 2 - (b + c) * d[..., 0] * d[..., 1] + a * d[..., 1] ** 2) / det
        d2 = np.where(det > 0, d2, np.inf)
        # no faster than a person walks since the track was last corrected
        dt = np.maximum(0.0, ts - np.array([t.ts for t in tracks]))
        reach = self.reach_m + self.max_speed * dt
        current = np.array([t.filter.position() for t in tracks])
        far = ((Z[:, None, :] - current[None, :, :]) ** 2).sum(axis=-1) > reach[None, :] ** 2
        ids = np.array([t.id for t in tracks])
        bound = np.array([self.bindings.get((camera, o.track_id), "") for o in obs])
        is_bound = bound[:, None] == ids[None, :]
        # negative log-likelihood: an uncertain (coasting) track must not win over a sure one just
        # because its wide covariance makes every observation look close
        with np.errstate(divide="ignore", invalid="ignore"):
            nll = d2 + np.log(np.where(det > 0, det, 1.0))
        cost = np.where(is_bound, np.where(d2 <= self.bound_gate, nll, _INFEASIBLE),
                        np.where(d2 <= self.gate, nll + self.binding_bonus, _INFEASIBLE))
        cost[far] = _INFEASIBLE
        if looks is not None and any(lk is not None for lk in looks):
            for i, lk in enumerate(looks):
                for j in np.flatnonzero(cost[i] < _INFEASIBLE):
                    cost[i, j] += self._appearance_cost(lk, tracks[j])
        return cost

    def _seen(self, track: FloorTrack, camera: str, obs: PersonObservation, ts: float, look=None) -> None:
        if look is not None and obs.appearance is not None and obs.appearance.quality >= MIN_QUALITY:
            track.look.add(look, ts)
        bindings, camera_track = self.bindings, obs.track_id
        old = track.seen_by.get(camera)
        if old is not None and old[0] != camera_track:
            bindings.pop((camera, old[0]), None)
        key = (camera, camera_track)
        previous = bindings.get(key)
        if previous is not None and previous != track.id and previous in self.tracks:
            # this camera id now belongs to another shopper: the old track forgets it
            self.tracks[previous].seen_by.pop(camera, None)
        bindings[key] = track.id
        track.seen_by[camera] = (camera_track, ts)
        track.hits += 1
        if ts > track.last_camera_ts:  # max(), without the call
            track.last_camera_ts = ts
        if track.hits >= self.confirm_hits and not track.confirmed:
            track.confirmed = True
            if track.last_camera_ts < self._seen_floor:
                self._seen_floor = track.last_camera_ts

    def update_fix(self, track: FloorTrack, ts: float, xy: tuple[float, float], cov) -> float:
        """Correct a track with a position fix (e.g. BLE); returns its squared Mahalanobis distance."""
        z = np.asarray(xy, dtype=float)
        R = np.asarray(cov, dtype=float)
        d2 = track.mahalanobis2(ts, z, R)
        track.advance(ts)
        track.filter.update(z, R)
        track.remember()
        track.last_fix_ts = max(track.last_fix_ts, ts)
        return d2

    def find_duplicates(self, ts: float, distance_m: float = 0.6, hold_s: float = 1.5
                        ) -> list[tuple[FloorTrack, FloorTrack]]:
        """Pairs of live tracks following the same person; returns (keep, drop) pairs.

        Two tracks are one person when they have stayed within ``distance_m`` of
        each other for ``hold_s`` while no camera saw both at once (a camera
        that sees two people next to each other keeps them apart for the next
        10 s). The older
        track is kept. The caller merges them with :meth:`merge`.
        """
        live = [t for t in self.tracks.values() if ts - t.last_camera_ts < 0.5]
        out: list[tuple[FloorTrack, FloorTrack]] = []
        if len(live) < 2:
            return out
        # pairs one camera saw together: under two of its track ids within 0.25 s (per camera, in time order)
        by_camera: dict[str, list[tuple[float, int, int]]] = {}
        for k, t in enumerate(live):
            for cam, (tid, seen_ts) in t.seen_by.items():
                seen = by_camera.get(cam)
                if seen is None:
                    by_camera[cam] = [(seen_ts, k, tid)]
                else:
                    seen.append((seen_ts, k, tid))
        n = len(live)
        together_pairs = set()  # i * n + j for the pair (i, j), i < j
        for seen in by_camera.values():
            if len(seen) < 2:
                continue
            seen.sort()
            for p, (tp, kp, tidp) in enumerate(seen):
                for tq, kq, tidq in seen[p + 1:]:
                    if not tq - tp < 0.25:
                        break  # the rest were seen later still
                    if tidq != tidp:
                        together_pairs.add(kp * n + kq if kp < kq else kq * n + kp)
        positions = [t.filter.position() for t in live]  # (t.xy)
        ids = [t.id for t in live]
        near2 = distance_m**2
        close_since = self._close_since
        for i, a in enumerate(live):
            ax, ay = positions[i]
            aid = ids[i]
            row = i * n
            for j in range(i + 1, n):
                bx, by = positions[j]
                close = (ax - bx) ** 2 + (ay - by) ** 2 <= near2
                together = row + j in together_pairs
                if not close and not together:  # most pairs: apart, so not (or no longer) close
                    if close_since:
                        bid = ids[j]
                        close_since.pop((aid, bid) if aid < bid else (bid, aid), None)
                    continue
                b = live[j]
                key = (a.id, b.id) if a.id < b.id else (b.id, a.id)
                if together:
                    self._distinct_until[key] = ts + 10.0  # seen apart by one camera: two people
                if not close or together or self._distinct_until.get(key, -1.0) > ts:
                    self._close_since.pop(key, None)
                    continue
                since = self._close_since.setdefault(key, ts)
                if ts - since >= hold_s:
                    keep, drop = (a, b) if (a.born_ts, a.id) <= (b.born_ts, b.id) else (b, a)
                    out.append((keep, drop))
                    self._close_since.pop(key, None)
        return out

    def merge(self, keep: FloorTrack, drop: FloorTrack) -> None:
        """Fold ``drop`` into ``keep``: its camera bindings move over, it is deleted."""
        for key, tid in list(self.bindings.items()):
            if tid == drop.id:
                self.bindings[key] = keep.id
        for cam, seen in drop.seen_by.items():
            if cam not in keep.seen_by or keep.seen_by[cam][1] < seen[1]:
                keep.seen_by[cam] = seen
        keep.hits += drop.hits
        keep.confirmed = keep.confirmed or drop.confirmed
        keep.last_camera_ts = max(keep.last_camera_ts, drop.last_camera_ts)
        if keep.confirmed and keep.last_camera_ts < self._seen_floor:
            self._seen_floor = keep.last_camera_ts
        del self.tracks[drop.id]

    def remove(self, track_id: str) -> None:
        """Forget a track now (its shopper left the store) with its camera bindings."""
        if self.tracks.pop(track_id, None) is not None:
            self.bindings = {k: v for k, v in self.bindings.items() if v != track_id}

    def prune_due(self, ts: float) -> bool:
        """Whether :meth:`prune` at ``ts`` could delete a track (when not, it returns at once and ignores its
        ``kept_alive``). The fusion node prunes after every message: mostly nothing is stale, and before the floors
        nothing can be (a later time gives a smaller or equal difference, as rounded, so no track's test passes)."""
        return not (ts - self._seen_floor <= self.max_age_s and ts - self._born_floor <= self.tentative_s)

    def prune(self, ts: float, kept_alive: Collection[str] = frozenset()) -> list[FloorTrack]:
        """Delete stale tracks; returns the deleted ones.

        Tracks in ``kept_alive`` (bound to a session that gets position fixes)
        may live on fixes alone for up to ``fix_max_age_s`` without a camera.
        """
        if not self.prune_due(ts):
            return []
        tentative_s, max_age_s, fix_max_age_s = self.tentative_s, self.max_age_s, self.fix_max_age_s
        stale = [t for t in self.tracks.values()
                 if (ts - t.last_camera_ts > max_age_s if t.confirmed else ts - t.born_ts > tentative_s)]
        dead = [t for t in stale if not t.confirmed or not (
            t.id in kept_alive and ts - t.last_fix_ts < 2.0 and ts - t.last_camera_ts < fix_max_age_s)]
        for t in dead:
            del self.tracks[t.id]
        if dead:
            gone = {t.id for t in dead}
            self.bindings = {k: v for k, v in self.bindings.items() if v not in gone}
        seen_floor = born_floor = float("inf")
        for t in self.tracks.values():
            if t.confirmed:
                if t.last_camera_ts < seen_floor:
                    seen_floor = t.last_camera_ts
            elif t.born_ts < born_floor:
                born_floor = t.born_ts
        self._seen_floor, self._born_floor = seen_floor, born_floor
        return dead
