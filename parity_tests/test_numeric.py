"""``paddle_rep.core.numeric``: the one relative-error formula and the 0-d-safe contiguous copy."""

import numpy as np
import pytest

from paddle_rep.core.numeric import REL_FLOOR, contiguous, difference, relative_error


def test_relative_error_is_max_abs_diff_over_max_abs_reference() -> None:
    expected = np.array([[1.0, -4.0], [2.0, 0.5]], np.float32)
    actual = expected + np.array([[0.0, 0.02], [-0.01, 0.0]], np.float32)
    assert relative_error(actual, expected) == pytest.approx(0.02 / 4.0, rel=1e-5)
    d = difference(actual, expected)
    assert d.max_ref == 4.0 and d.max_abs == pytest.approx(0.02, rel=1e-5)
    assert relative_error(expected, expected) == 0.0  # control: no difference, no error


def test_floor_and_non_finite() -> None:
    zeros = np.zeros(3)
    assert relative_error(np.full(3, 1e-15), zeros) == pytest.approx(1e-15 / REL_FLOOR)
    assert difference(np.ones(3), zeros).rel(floor=0.0) == float("inf")  # no floor: an all-zero reference
    assert relative_error(np.array([np.nan, 0.0]), np.ones(2)) == float("inf")  # a NaN never reads as small
    assert relative_error(2.5, 2.0) == pytest.approx(0.25)  # scalars too
    with pytest.raises(ValueError, match=r"shape \(2,\) differs"):
        relative_error(np.ones(2), np.ones(3))


def test_contiguous_keeps_0d_and_copies_only_when_needed() -> None:
    scalar = np.array(7, np.int64)
    assert contiguous(scalar).shape == () and contiguous(scalar) is scalar
    assert np.ascontiguousarray(scalar).shape == (1,)  # control: why numpy's own is not used
    transposed = np.arange(6.0).reshape(2, 3).T
    out = contiguous(transposed)
    assert out.flags.c_contiguous and np.array_equal(out, transposed)
    frozen = np.arange(3.0)
    frozen.flags.writeable = False
    assert contiguous(frozen) is frozen
    copied = contiguous(frozen, writeable=True)
    assert copied.flags.writeable and copied is not frozen and np.array_equal(copied, frozen)
