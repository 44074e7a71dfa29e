"""bfloat16 as numpy holds it: uint16 bit patterns (numpy has no bfloat16 dtype; neither framework is needed).

A bfloat16 number is the upper half of a float32, so widening is exact and narrowing is a rounding.
"""

import numpy as np

TORCH_BF16_NAN = 0x7FC0  # the quiet NaN torch produces for any float32 NaN


def bf16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 numbers given as their uint16 bit patterns (exact)."""
    return (np.asarray(bits, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)


def float32_to_bfloat16_bits(array: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (uint16) of ``array`` rounded as torch rounds float32: to nearest, ties to even.

    NaN becomes torch's quiet NaN 0x7FC0; values beyond the bfloat16 range round to +-Inf.
    """
    values = np.asarray(array, dtype=np.float32)
    bits = np.ascontiguousarray(values).view(np.uint32).astype(np.uint64)  # uint64: the addition cannot wrap
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(values), np.uint16(TORCH_BF16_NAN), rounded).astype(np.uint16).reshape(values.shape)
