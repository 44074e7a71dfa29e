"""Small numeric helpers that the library, the applications and the parity suite share (numpy only).

* :func:`difference` / :func:`relative_error`: how far an output is from a reference, the one
  formula every comparison uses: ``max|actual - expected| / max(max|expected|, floor)``, in float64.
* :func:`contiguous`: a C-ordered array that keeps a 0-d array 0-d.
"""

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

REL_FLOOR = 1e-12  # the smallest reference scale a relative error divides by


@dataclass(frozen=True)
class Difference:
    """The largest absolute difference from a reference, and the reference's largest magnitude."""

    max_abs: float  # max|actual - expected| in float64; inf when a difference is not finite
    max_ref: float  # max|expected|

    def rel(self, floor: float = REL_FLOOR) -> float:
        """The relative error ``max_abs / max(max_ref, floor)``.

        Args:
            floor: the smallest scale divided by; 0 divides by ``max_ref`` itself.

        Returns:
            The relative error; inf when the scale is 0 (``floor=0`` and an all-zero reference).
        """
        scale = max(self.max_ref, floor)
        return self.max_abs / scale if scale > 0 else float("inf")


def difference(actual: ArrayLike, expected: ArrayLike) -> Difference:
    """How far ``actual`` is from the reference ``expected``.

    Args:
        actual: the array under test (any array-like, compared in float64).
        expected: the reference, of the same shape.

    Returns:
        The largest absolute difference and the reference's largest magnitude.

    Raises:
        ValueError: the shapes differ.
    """
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.shape != expected.shape:
        raise ValueError(f"shape {actual.shape} differs from the reference's {expected.shape}")
    diff = np.abs(actual - expected)
    max_abs = float(diff.max(initial=0.0)) if np.isfinite(diff).all() else float("inf")
    return Difference(max_abs, float(np.abs(expected).max(initial=0.0)))


def relative_error(actual: ArrayLike, expected: ArrayLike, floor: float = REL_FLOOR) -> float:
    """The relative error ``max|actual - expected| / max(max|expected|, floor)``, in float64.

    Args:
        actual: the array under test.
        expected: the reference, of the same shape.
        floor: the smallest scale divided by (an all-zero reference).

    Returns:
        The relative error; inf when a difference is not finite.

    Raises:
        ValueError: the shapes differ.
    """
    return difference(actual, expected).rel(floor)


def contiguous(array: np.ndarray, writeable: bool = False) -> np.ndarray:
    """``array`` itself when C-contiguous (and writable, if ``writeable``), else a C-ordered copy.

    Not ``np.ascontiguousarray``: it turns a 0-d array (a scalar parameter, ``num_batches_tracked``)
    into shape ``(1,)``.

    Args:
        array: any numpy array.
        writeable: also copy a read-only array (``torch.from_numpy`` warns on those, such as the
            arrays of a protocol-5 pickle).

    Returns:
        ``array`` or its C-ordered copy, of the same shape and dtype.
    """
    if array.flags.c_contiguous and (array.flags.writeable or not writeable):
        return array
    return array.copy(order="C")
