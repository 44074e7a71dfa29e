"""The torch <-> Paddle state-dict mapping (paddle_rep.core.interop)."""

import subprocess
import sys

import numpy as np
import paddle
import pytest
import torch

import paddle_rep
import torch_ref
from paddle_rep.core import interop
from paddle_rep.core.errors import MappingError


class _Head(torch.nn.Module):
    """A conv, a BN and a Linear: every mapping rule at once."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, bias=False)
        self.bn = torch.nn.BatchNorm2d(4)
        self.linear = torch.nn.Linear(4, 5)


class _PaddleHead(paddle.nn.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 4, 3, bias_attr=False)
        self.bn = paddle.nn.BatchNorm2D(4)
        self.linear = paddle.nn.Linear(4, 5)


@pytest.mark.parametrize(("torch_key", "paddle_key"), [
    ("bn.running_mean", "bn._mean"),
    ("a.b.running_var", "a.b._variance"),
    ("bn.num_batches_tracked", None),
    ("bn.weight", "bn.weight"),
    ("running_mean", "_mean"),
    ("layer1.0.conv1.weight", "layer1.0.conv1.weight"),
])
def test_key_mapping_table(torch_key: str, paddle_key: str | None) -> None:
    assert interop.torch_key_to_paddle(torch_key) == paddle_key
    if paddle_key is not None:
        assert interop.paddle_key_to_torch(paddle_key) == torch_key


def test_from_torch_renames_drops_and_transposes() -> None:
    torch.manual_seed(0)
    head = _Head()
    state = interop.from_torch(head.state_dict())
    assert list(state) == ["conv.weight", "bn.weight", "bn.bias", "bn._mean", "bn._variance",
                           "linear.weight", "linear.bias"]
    assert all(v.dtype == np.float32 for v in state.values())
    np.testing.assert_array_equal(state["linear.weight"], head.linear.weight.detach().numpy().T)
    np.testing.assert_array_equal(state["conv.weight"], head.conv.weight.detach().numpy())
    missing, unexpected = _PaddleHead().set_state_dict(state)
    assert not missing and not unexpected


def test_round_trip_is_bit_exact_and_loads_strictly_into_torch() -> None:
    torch.manual_seed(1)
    head = _Head()
    head.bn.running_var.uniform_(0.5, 2.0)
    original = head.state_dict()
    back = interop.to_torch(interop.from_torch(original))
    assert list(back) == list(original)
    for key, value in original.items():
        if key.endswith("num_batches_tracked"):
            continue
        np.testing.assert_array_equal(back[key], value.numpy(), err_msg=key)
    fresh = _Head()
    fresh.load_state_dict({k: torch.from_numpy(v) for k, v in back.items()}, strict=True)


def test_to_torch_from_a_paddle_block_loads_into_torch_ref_strictly() -> None:
    block = paddle_rep.RepVGGBlock(8, 8, 3, padding=1, use_se=False)
    state = interop.to_torch(block.state_dict())
    torch_ref.RepVGGBlock(8, 8, 3, padding=1).load_state_dict({k: torch.from_numpy(v) for k, v in state.items()},
                                                               strict=True)


@pytest.mark.parametrize("dtype", ["float32", "float64", None], ids=["float32", "float64", "keep"])
def test_dtype_cast(dtype: str | None) -> None:
    state = {"conv.weight": np.ones((2, 2, 1, 1), dtype=np.float16)}
    out = interop.from_torch(state, dtype=dtype)
    assert out["conv.weight"].dtype == (np.float16 if dtype is None else np.dtype(dtype))


def test_non_float_tensor_names_its_key() -> None:
    with pytest.raises(MappingError, match="'layer.index'.*int64"):
        interop.from_torch({"layer.index": np.arange(3)})


def test_paddle_tensors_and_numpy_are_accepted() -> None:
    value = np.arange(6, dtype=np.float32).reshape(2, 3)
    from_paddle = interop.to_torch({"fc.weight": paddle.to_tensor(value)})
    np.testing.assert_array_equal(from_paddle["fc.weight"], value.T)


def test_interop_imports_no_framework() -> None:
    code = ("import sys, paddle_rep.core.interop; "
            "assert 'torch' not in sys.modules and 'paddle' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_scalar_parameters_keep_their_shape() -> None:
    """A 0-d tensor (a learnable scalar) maps to a 0-d array both ways, and a transposed view becomes C-ordered."""
    out = interop.from_torch({"temperature": torch.tensor(2.5), "fc.weight": torch.ones(3, 2)})
    assert out["temperature"].shape == () and out["temperature"] == 2.5
    assert out["fc.weight"].shape == (2, 3) and out["fc.weight"].flags.c_contiguous
    assert interop.to_torch({"temperature": np.array(2.5, dtype=np.float32)})["temperature"].shape == ()
