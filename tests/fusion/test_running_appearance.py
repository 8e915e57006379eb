"""A running appearance's short memory waits to be blended until read: the same bits as blending every view at once."""

import math

import numpy as np
import pytest

from storesense.fusion.appearance import RunningAppearance, _mix


def _eager(views, long_weight, recent_weight):
    """The two memories blended view by view (the arithmetic before the short memory waited)."""
    long = recent = None
    for n, vec in enumerate(views, 1):
        first = 1.0 / n
        if long_weight is not None:
            long = vec if long is None else _mix(long, vec, first if first > long_weight else long_weight)
        recent = vec if recent is None else _mix(recent, vec, first if first > recent_weight else recent_weight)
    return long, recent


def _unit_vectors(rng, n):
    out = []
    for _ in range(n):
        v = rng.gamma(0.5, 1.0, 24) * (rng.random(24) > 0.3)
        if rng.random() < 0.1:
            v[12:] = 0.0  # the legs hidden: that region stays zeros
        for r in (0, 12):
            s = np.sqrt((v[r:r + 12] ** 2).sum())
            if s > 0:
                v[r:r + 12] /= s
        out.append(tuple(float(x) for x in v))
    return out


@pytest.mark.parametrize("held", [1, 3, 64])
@pytest.mark.parametrize("long_weight", [0.05, None])
def test_recent_is_bit_identical_however_often_it_is_read(held, long_weight):
    rng = np.random.default_rng(held)
    views = _unit_vectors(rng, 300)
    look = RunningAppearance(held=held)
    assert look.recent is None
    for k, vec in enumerate(views, 1):
        look.add(vec, float(k), long_weight=long_weight)
        if k in (1, 2, 5, 70, 71, 200) or rng.random() < 0.02:  # read now and then: past and beyond the window
            long, recent = _eager(views[:k], long_weight, 0.3)
            assert look.recent == recent  # tuples of floats: equal only when every bit is
            assert look.long == long
        assert len(look._waiting) <= held  # the memory held stays bounded
    long, recent = _eager(views, long_weight, 0.3)
    assert look.recent == recent and look.long == long and look.n == 300 and look.ts == 300.0


def test_views_without_a_vector_and_memories_kept_out():
    look = RunningAppearance()
    look.add(None, 1.0)
    assert look.n == 0 and look.recent is None
    vec = _unit_vectors(np.random.default_rng(0), 1)[0]
    look.add(vec, 2.0, long_weight=0.0, recent_weight=None)  # only the long memory
    assert look.recent is None and look.long == vec and look.n == 1


def _loop_mix(current, new, weight):
    """The blend as an element-wise loop: each region's norm summed left to right from 0.0."""
    keep = 1.0 - weight
    m = [keep * c + weight * v for c, v in zip(current, new)]
    out = []
    for region in (m[:12], m[12:]):
        norm = 0.0
        for x in region:
            norm += x * x
        norm = math.sqrt(norm)
        out += [x / norm for x in region] if norm > 0 else region
    return tuple(out)


def test_the_written_out_blend_is_the_loop_to_the_bit():
    rng = np.random.default_rng(3)
    views = _unit_vectors(rng, 400)
    for a, b in zip(views, views[1:]):
        for w in (0.3, 0.05, 1.0 / 7, 1.0 / 25):
            assert _mix(a, b, w) == _loop_mix(a, b, w)
    zeros = (0.0,) * 24
    assert _mix(zeros, zeros, 0.3) == zeros


@pytest.mark.parametrize("held_long", [1, 5, 64])
def test_lazy_long_memory_is_bit_identical_however_often_it_is_read(held_long):
    """LazyLongAppearance blends its long memory when read (the fusion node's track looks): the same bits as
    blending each view as it comes, whenever it is read, with views that carry no vector in between."""
    from storesense.fusion.appearance import LazyLongAppearance

    rng = np.random.default_rng(held_long + 7)
    views = _unit_vectors(rng, 250)
    eager, lazy = RunningAppearance(), LazyLongAppearance(held_long=held_long)
    for k, vec in enumerate(views):
        vec = None if k % 17 == 5 else vec
        for look in (eager, lazy):
            look.add(vec, 0.1 * k, long_weight=1.0 / 25, recent_weight=None)
        if rng.random() < 0.15:
            assert lazy.long == eager.long
    assert (lazy.long, lazy.n, lazy.ts) == (eager.long, eager.n, eager.ts)
