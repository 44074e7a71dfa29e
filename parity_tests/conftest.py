"""Imports both frameworks once, with fixed threads and TF32 off, so parity numbers are reproducible."""

import os
import warnings

# TF32 would change float32 matmul/conv results on Ampere+ GPUs in both frameworks.
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
warnings.filterwarnings("ignore", message="No ccache found")

try:  # h5py before paddle: under Paddle 2.6.2, importing h5py 3.16 after paddle fails (zlib.error) or aborts
    import h5py  # noqa: E402, F401
except ImportError:  # optional; the HDF5 tests need it
    pass
import paddle  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

# Importing paddle sets OMP_NUM_THREADS=1; torch gets a fixed count too, 1 by default: the tolerance
# table's figures are measured so, and ill-conditioned whole-model float32 results depend on torch's
# summation order (its thread count) by orders of magnitude.
torch.set_num_threads(int(os.environ.get("PARITY_THREADS", "1")))
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.allow_tf32 = False
if os.environ.get("PARITY_DEVICE"):  # e.g. "gpu:0"; torch stays on the CPU as the reference
    paddle.set_device(os.environ["PARITY_DEVICE"])


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` (pyproject's addopts) a test file's tests share one xdist worker, so
    its module-level caches are built once; a test that names its own ``xdist_group`` (the backend
    sweep's big models) is scheduled on its own. Runs before xdist reads the marks."""
    for item in items:
        module = getattr(item, "module", None)
        if module is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(module.__name__))
