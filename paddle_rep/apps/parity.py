"""Seeded model state and training steps shared by the parity suite and the benchmark.

The suite (``parity_tests``, not installed) and :mod:`paddle_rep.apps.bench` both need models whose
BatchNorm state is far from the defaults (mean 0, variance 1, gamma 1, beta 0 make a wrong fold
look right) and a forward + backward pass in each framework; both import them from here.
"""

from dataclasses import dataclass

import numpy as np
import paddle
import torch
from paddle import nn

from paddle_rep.core import interop


def randomize_bn(module: torch.nn.Module, rng: np.random.Generator) -> None:
    """Give every torch BN non-default running statistics and affine parameters, drawn from ``rng``."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.from_numpy(rng.normal(0.0, 0.5, n)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, n)))
                if m.weight is not None:
                    m.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, n)))
                    m.bias.copy_(torch.from_numpy(rng.normal(0.0, 0.5, n)))


def randomize_paddle_bn(model: nn.Layer, rng: np.random.Generator) -> None:
    """Non-default running statistics and affine parameters for every Paddle BN (as :func:`randomize_bn`)."""
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, nn.layer.norm._BatchNormBase):
            n, dtype = layer._mean.shape[0], layer._mean.dtype
            layer._mean.set_value(paddle.to_tensor(rng.normal(0.0, 0.5, n), dtype=dtype))
            layer._variance.set_value(paddle.to_tensor(rng.uniform(0.5, 2.0, n), dtype=dtype))
            if layer.weight is not None:
                layer.weight.set_value(paddle.to_tensor(rng.uniform(0.5, 1.5, n), dtype=dtype))
                layer.bias.set_value(paddle.to_tensor(rng.normal(0.0, 0.5, n), dtype=dtype))


def torch_backward(module: torch.nn.Module, x: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """One forward and backward pass of ``module``: the gradients of ``sum(output * upstream)``; returns the output."""
    y = module(x)
    (y * upstream).sum().backward()
    return y


def paddle_backward(module: nn.Layer, x: paddle.Tensor, upstream: paddle.Tensor) -> paddle.Tensor:
    """:func:`torch_backward` in Paddle."""
    y = module(x)
    (y * upstream).sum().backward()
    return y


def torch_release_grads(module: torch.nn.Module) -> None:
    """Drop the gradients (released, not zeroed: a full-size net's would otherwise be kept and accumulate)."""
    module.zero_grad(set_to_none=True)


def paddle_release_grads(module: nn.Layer) -> None:
    """:func:`torch_release_grads` in Paddle (``clear_gradient(False)``: a Paddle 2.6 API too)."""
    for parameter in module.parameters():
        parameter.clear_gradient(False)


@dataclass
class TrainStep:
    """What one training step computed: the output and every gradient."""

    output: np.ndarray
    input_grad: np.ndarray
    param_grads: dict[str, np.ndarray]  # under torch names


def torch_train_step(module: torch.nn.Module, x: np.ndarray, upstream: np.ndarray) -> TrainStep:
    """A train-mode step of ``module`` on ``x``; the gradients are copied out and released."""
    module.train()
    xt = torch.tensor(x, requires_grad=True)
    y = torch_backward(module, xt, torch.from_numpy(upstream))
    grads = {name: p.grad.detach().numpy().copy() for name, p in module.named_parameters()}
    torch_release_grads(module)
    return TrainStep(y.detach().numpy(), xt.grad.numpy(), grads)


def paddle_train_step(module: nn.Layer, x: np.ndarray, upstream: np.ndarray) -> TrainStep:
    """:func:`torch_train_step` in Paddle; gradients come back under torch names and layouts (``interop.to_torch``).

    Raises:
        AssertionError: a trainable parameter got no gradient.
    """
    module.train()
    xp = paddle.to_tensor(x, stop_gradient=False)
    y = paddle_backward(module, xp, paddle.to_tensor(upstream))
    grads = {name: p.grad for name, p in module.named_parameters() if not p.stop_gradient}
    missing_grad = [name for name, g in grads.items() if g is None]
    assert not missing_grad, f"no gradient reached {missing_grad}"
    grads = interop.to_torch(grads, dtype=None, num_batches_tracked=None)
    paddle_release_grads(module)
    return TrainStep(y.numpy(), xp.grad.numpy(), grads)
