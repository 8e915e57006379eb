"""The open interior of an axis-aligned rectangle is inside it by the even-odd test (the zones' fast path)."""

import numpy as np

from storesense.geometry.polygons import point_in_polygon, rectangle_interior


def test_rectangle_interior_points_are_inside_by_point_in_polygon():
    rng = np.random.default_rng(5)
    for _ in range(300):
        x0, x1 = sorted(rng.uniform(-20, 20, 2).tolist())
        y0, y1 = sorted(rng.uniform(-20, 20, 2).tolist())
        ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        k = int(rng.integers(4))
        ring = ring[k:] + ring[:k]
        if rng.random() < 0.5:
            ring.reverse()
        assert rectangle_interior(ring) == (x0, y0, x1, y1)
        for x, y in zip(rng.uniform(x0, x1, 50).tolist(), rng.uniform(y0, y1, 50).tolist()):
            if x0 < x < x1 and y0 < y < y1:
                assert point_in_polygon(x, y, ring)
        # just inside the corners, by one float step
        xa, xb = np.nextafter(x0, x1).item(), np.nextafter(x1, x0).item()
        ya, yb = np.nextafter(y0, y1).item(), np.nextafter(y1, y0).item()
        for x, y in ((xa, ya), (xa, yb), (xb, ya), (xb, yb)):
            assert point_in_polygon(x, y, ring)


def test_other_polygons_have_no_interior_box():
    assert rectangle_interior([(0, 0), (4, 0), (4, 3)]) is None
    assert rectangle_interior([(0, 0), (4, 0), (0, 3), (4, 3)]) is None  # crossed order (a bow tie)
    assert rectangle_interior([(0, 0), (4, 1), (4, 3), (0, 3)]) is None
    assert rectangle_interior([(0, 0), (4, 0), (4, 3), (0, 3), (0, 1)]) is None
    assert rectangle_interior([(0, 0), (4, 0), (4, 3), (0, 3)]) == (0.0, 0.0, 4.0, 3.0)
