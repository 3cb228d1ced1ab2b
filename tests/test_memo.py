"""The point memo answers repeated point sets from its store, never other points', within its capacity."""

from __future__ import annotations

import torch

from vpinn.geometry.memo import PointMemo

F64 = torch.float64


def counted():
    """A function of points (b, 3) -> (sum of coordinates (b,),) that counts its calls."""
    calls = []

    def function(points):
        calls.append(len(points))
        return (points.sum(1),)

    return function, calls


def test_equal_points_are_answered_from_the_store():
    memo, (function, calls) = PointMemo(), counted()
    x = torch.rand(50, 3, dtype=F64, generator=torch.Generator().manual_seed(0))
    first = memo(x, function)
    again = memo(x.clone(), function)  # another tensor, the same points
    assert calls == [50] and again[0] is first[0] and (memo.hits, memo.misses) == (1, 1)


def test_other_points_with_the_same_sums_are_computed():
    """A permutation of the points has the key's coordinate sums but is not equal: computed."""
    memo, (function, calls) = PointMemo(), counted()
    x = torch.tensor([[0.0, 1, 2], [3, 4, 5]], dtype=F64)
    memo(x, function)
    (value,) = memo(x.flip(0), function)
    assert calls == [2, 2] and value.tolist() == [12.0, 3.0]


def test_stored_points_are_a_copy():
    """Changing the caller's tensor in place afterwards does not make a stale answer."""
    memo, (function, calls) = PointMemo(), counted()
    x = torch.zeros(4, 3, dtype=F64)
    memo(x, function)
    x[0, 0] = 1.0
    (value,) = memo(x, function)
    assert calls == [4, 4] and value[0] == 1.0


def test_least_recently_used_entries_leave_beyond_the_capacity():
    memo, (function, calls) = PointMemo(capacity=10), counted()
    a, b, c = (torch.full((4, 3), float(k), dtype=F64) for k in range(3))
    memo(a, function), memo(b, function), memo(a, function)  # a is now the most recent
    memo(c, function)  # 12 points > 10: b leaves
    assert memo.stored == 8
    memo(a, function), memo(c, function)
    memo(b, function)
    assert calls == [4, 4, 4, 4] and memo.hits == 3
    memo(torch.zeros(11, 3, dtype=F64), function)  # larger than the capacity: computed, not stored
    assert memo.stored == 8


def test_points_off_the_cpu_bypass_the_store():
    """On a GPU the key's sums would be a host synchronisation per step: such points are always
    computed, never stored (a meta tensor stands in for a CUDA one)."""
    memo, calls = PointMemo(), []
    points = torch.empty(5, 3, device="meta")
    for _ in range(2):
        memo(points, lambda p: calls.append(1) or (p,))
    assert len(calls) == 2 and memo.stored == 0 and memo.hits == memo.misses == 0
