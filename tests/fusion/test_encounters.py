"""EncounterBook: who is who after a meeting is decided by appearance, or left open for review."""

import math

from storesense.fusion.appearance import RunningAppearance
from storesense.fusion.encounters import EncounterBook


def _vec(hot: int) -> tuple[float, ...]:
    """A unit descriptor: one strong hue bin per region (two regions of 12)."""
    v = [0.05] * 24
    v[hot] = v[12 + hot] = 1.0
    out = []
    for r in (0, 12):
        n = math.sqrt(sum(x * x for x in v[r:r + 12]))
        out += [x / n for x in v[r:r + 12]]
    return tuple(out)


RED, GREEN = _vec(1), _vec(4)


def _ref(vec) -> RunningAppearance:
    r = RunningAppearance()
    for _ in range(10):
        r.add(vec, 0.0, long_weight=0.0)
    return r


def _meet_and_part(book: EncounterBook, looks: dict[str, tuple], t_meet: float = 10.0) -> None:
    book.meet({"a": (1.0, 1.0), "b": (1.4, 1.0)}, t_meet)  # 0.4 m apart: they meet
    for k in range(10):
        t = t_meet + 1.0 + 0.1 * k
        book.meet({"a": (0.0, 1.0), "b": (3.0, 1.0)}, t)  # apart again
        for s, vec in looks.items():
            book.observe(s, vec, t, clear=True)


def test_tracks_that_came_out_swapped_are_given_back():
    book = EncounterBook()
    _meet_and_part(book, {"a": GREEN, "b": RED})  # a's track now shows b's colours and b's shows a's
    refs = {"a": _ref(RED), "b": _ref(GREEN)}
    (d,) = book.due(refs, 12.0)
    assert d.assignment == {"a": "b", "b": "a"} and d.margin > book.margin
    assert book.sure("a") and book.sure("b")  # decided: the cluster is closed


def test_tracks_that_kept_their_shoppers_are_confirmed():
    book = EncounterBook()
    _meet_and_part(book, {"a": RED, "b": GREEN})
    (d,) = book.due({"a": _ref(RED), "b": _ref(GREEN)}, 12.0)
    assert d.assignment == {"a": "a", "b": "b"}


def test_look_alikes_stay_open_then_are_undecided():
    book = EncounterBook(max_wait_s=5.0)
    _meet_and_part(book, {"a": RED, "b": RED})
    refs = {"a": _ref(RED), "b": _ref(RED)}
    assert book.due(refs, 12.0) == []  # too few views to give up yet: wait for more
    assert not book.sure("a")
    (d,) = book.due(refs, 16.0)  # waited more than max_wait_s since they met: undecided
    assert d.assignment is None and "cannot tell" in d.reason


def test_meeting_again_starts_the_views_afresh():
    book = EncounterBook()
    _meet_and_part(book, {"a": GREEN, "b": RED})
    book.meet({"a": (1.0, 1.0), "b": (1.2, 1.0)}, 13.0)  # together again before anything was decided
    assert book.due({"a": _ref(RED), "b": _ref(GREEN)}, 13.1) == []
    assert all(book.cluster_of(s).post.get(s) is None for s in "ab")


def test_a_track_that_looks_like_nobody_in_the_meeting_is_not_confirmed():
    book = EncounterBook()
    _meet_and_part(book, {"a": _vec(8), "b": GREEN})  # a's track now shows a stranger
    refs = {"a": _ref(RED), "b": _ref(GREEN)}
    assert book.due(refs, 12.0) == []  # more views may still settle it
    (d,) = book.due(refs, 10.0 + book.max_wait_s + 0.1)
    assert d.assignment is None and "nobody" in d.reason


def test_a_member_leaving_forces_the_decision():
    book = EncounterBook()
    book.meet({"a": (1.0, 1.0), "b": (1.4, 1.0)}, 10.0)
    (d,) = book.due({"a": _ref(RED), "b": _ref(GREEN)}, 10.5, leaving={"a"})
    assert d.assignment is None
