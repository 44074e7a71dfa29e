"""Shared machinery of the parity suite: seeded data, randomised BN state, weight transfer, comparison.

Weights move between the frameworks only through ``paddle_rep.interop`` (the public path),
and every transfer asserts that ``set_state_dict`` reported no missing or unexpected key.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import paddle
import torch

from paddle_rep import interop
from parity_tests.tolerances import tolerance

DTYPES = ("float32", "float64")
TORCH_DTYPES = {"float32": torch.float32, "float64": torch.float64}


@dataclass
class Comparison:
    what: str
    max_abs: float
    max_ref: float
    rel: float
    allowed: float
    reason: str

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.allowed * self.max_ref

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        return (f"{self.what}: max|diff| {self.max_abs:.3e} = {self.rel:.3e} x max|ref| {self.max_ref:.3e} "
                f"(allowed {self.allowed:.0e} rel: {self.reason}) -> {verdict}")


def as_numpy(value) -> np.ndarray:
    return interop.to_numpy(value)


def measure(what: str, actual, expected, kind: str, dtype: str) -> Comparison:
    """Compare two tensors of any framework against the tolerance table, without asserting."""
    actual, expected = as_numpy(actual), as_numpy(expected)
    if actual.shape != expected.shape:
        raise AssertionError(f"{what}: shape {actual.shape} != expected {expected.shape}")
    if not np.isfinite(actual).all() or not np.isfinite(expected).all():
        raise AssertionError(f"{what}: non-finite values")
    tol = tolerance(kind, dtype)
    max_abs = float(np.abs(actual.astype(np.float64) - expected.astype(np.float64)).max(initial=0.0))
    max_ref = float(np.abs(expected).max(initial=0.0))
    if max_ref == 0.0:
        raise AssertionError(f"{what}: the reference is all zeros, so the comparison could not fail")
    return Comparison(what, max_abs, max_ref, max_abs / max_ref, tol.rel, tol.reason)


ROUNDING_FACTOR = 3  # |p32 - t32| <= |p32 - p64| + |p64 - t64| + |t64 - t32|: 2 x rounding, plus margin


def measure_against_rounding(what: str, actual, expected, kind: str, dtype: str,
                             actual_exact=None, expected_exact=None) -> Comparison:
    """``measure``, or, when that fails in float32, within float32's own rounding error of each framework.

    Where float32 is ill-conditioned (training-mode BN over channels that barely vary across
    the batch, gradients that nearly cancel, Adam dividing a gradient near its epsilon by
    itself), a fixed relative bound is the wrong yardstick. ``actual_exact`` and
    ``expected_exact`` are the same computation run in float64 by each framework (which the
    float64 tests prove equal); the float32 gap may then be :data:`ROUNDING_FACTOR` times the
    larger of the two frameworks' float32 errors. Without ``actual_exact`` only the reference's
    own error counts: the stricter yardstick, for when the reference is not what is under test.
    """
    result = measure(what, actual, expected, kind, dtype)
    if result.ok or expected_exact is None:
        return result
    pairs = [(expected, expected_exact)] + ([] if actual_exact is None else [(actual, actual_exact)])
    errors = [float(np.abs(as_numpy(a).astype(np.float64) - as_numpy(e)).max(initial=0.0)) for a, e in pairs]
    rounding = max(errors)
    result.allowed = max(result.allowed, ROUNDING_FACTOR * rounding / result.max_ref)
    result.reason += f"; or {ROUNDING_FACTOR}x float32's own rounding error ({rounding:.2e})"
    return result


def assert_close(what: str, actual, expected, kind: str, dtype: str) -> Comparison:
    result = measure(what, actual, expected, kind, dtype)
    assert result.ok, str(result)
    return result


def assert_all_close(results: list[Comparison]) -> None:
    """Assert a batch of comparisons at once, so one failure never hides another."""
    failed = [str(r) for r in results if not r.ok]
    assert not failed, "\n".join(failed)


def randomize_bn(module: torch.nn.Module, rng: np.random.Generator) -> None:
    """Give every torch BN non-default running statistics and affine parameters.

    Defaults (mean 0, var 1, gamma 1, beta 0) make a wrong fold look right.
    """
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.from_numpy(rng.normal(0.0, 0.5, n)))
                m.running_var.copy_(torch.from_numpy(rng.uniform(0.5, 2.0, n)))
                if m.weight is not None:
                    m.weight.copy_(torch.from_numpy(rng.uniform(0.5, 1.5, n)))
                    m.bias.copy_(torch.from_numpy(rng.normal(0.0, 0.5, n)))


def align_bn_constants_to_paddle(module: torch.nn.Module) -> None:
    """For float64 cases: use the eps and momentum Paddle's BN kernel really gets (float32 values).

    Paddle passes ``epsilon`` and ``momentum`` to its kernel as float32, so in float64 the
    frameworks would differ by ~1e-12 (eps) and ~1e-7 relative per update (momentum) for a
    reason that is not a porting error. The torch reference adopts the same constants.
    """
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eps = float(np.float32(m.eps))
            m.momentum = 1.0 - float(np.float32(1.0 - m.momentum))


def transfer_to_paddle(torch_module: torch.nn.Module, paddle_module: paddle.nn.Layer, dtype: str) -> None:
    """Copy weights torch -> Paddle through ``interop.from_torch``; strict."""
    state = interop.from_torch(torch_module.state_dict(), dtype=dtype)
    missing, unexpected = paddle_module.set_state_dict(state)
    assert not missing and not unexpected, f"missing {missing}, unexpected {unexpected}"


def make_pair(torch_factory: Callable[[], torch.nn.Module], paddle_factory: Callable[[], paddle.nn.Layer],
              dtype: str, seed: int) -> tuple[torch.nn.Module, paddle.nn.Layer]:
    """Build a torch module with seeded weights and random BN state, and its Paddle copy."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    torch_module = torch_factory().to(TORCH_DTYPES[dtype])
    randomize_bn(torch_module, rng)
    if dtype == "float64":
        align_bn_constants_to_paddle(torch_module)
    paddle_module = paddle_factory()
    paddle_module.to(dtype=dtype)
    transfer_to_paddle(torch_module, paddle_module, dtype)
    return torch_module, paddle_module


def seeded_input(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    """Non-zero normal input (zeros would hide missing biases)."""
    return np.random.default_rng(seed + 1000).normal(0.0, 1.0, shape).astype(dtype)


@dataclass
class TrainStep:
    output: np.ndarray
    input_grad: np.ndarray
    param_grads: dict[str, np.ndarray]  # under torch names


def torch_train_step(module: torch.nn.Module, x: np.ndarray, upstream: np.ndarray) -> TrainStep:
    module.train()
    xt = torch.tensor(x, requires_grad=True)
    y = module(xt)
    (y * torch.from_numpy(upstream)).sum().backward()
    grads = {name: p.grad.detach().numpy().copy() for name, p in module.named_parameters()}
    return TrainStep(y.detach().numpy(), xt.grad.numpy(), grads)


def paddle_train_step(module: paddle.nn.Layer, x: np.ndarray, upstream: np.ndarray) -> TrainStep:
    """Gradients come back under torch names and layouts, through ``interop.to_torch``."""
    module.train()
    xp = paddle.to_tensor(x, stop_gradient=False)
    y = module(xp)
    (y * paddle.to_tensor(upstream)).sum().backward()
    grads = {name: p.grad for name, p in module.named_parameters() if not p.stop_gradient}
    missing_grad = [name for name, g in grads.items() if g is None]
    assert not missing_grad, f"no gradient reached {missing_grad}"
    grads = interop.to_torch(grads, dtype=None, num_batches_tracked=None)
    return TrainStep(y.numpy(), xp.grad.numpy(), grads)


def compare_train_steps(paddle_step: TrainStep, torch_step: TrainStep, dtype: str) -> list[Comparison]:
    assert set(paddle_step.param_grads) == set(torch_step.param_grads), (
        f"parameter sets differ: {sorted(set(paddle_step.param_grads) ^ set(torch_step.param_grads))}"
    )
    results = [
        measure("train output", paddle_step.output, torch_step.output, "output", dtype),
        measure("input grad", paddle_step.input_grad, torch_step.input_grad, "input_grad", dtype),
    ]
    results += [measure(f"grad {name}", paddle_step.param_grads[name], torch_step.param_grads[name],
                        "param_grad", dtype) for name in sorted(torch_step.param_grads)]
    return results


def running_stats(state: Mapping[str, object]) -> dict[str, np.ndarray]:
    """The BN running statistics of a torch-named state dict."""
    return {k: as_numpy(v) for k, v in state.items() if k.endswith(("running_mean", "running_var"))}


def paddle_running_stats(module: paddle.nn.Layer) -> dict[str, np.ndarray]:
    return running_stats(interop.to_torch(module.state_dict(), dtype=None, num_batches_tracked=None))


def eval_outputs(torch_module: torch.nn.Module, paddle_module: paddle.nn.Layer,
                 x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    torch_module.eval()
    paddle_module.eval()
    with torch.no_grad():
        expected = torch_module(torch.from_numpy(x)).numpy()
    with paddle.no_grad():
        actual = paddle_module(paddle.to_tensor(x)).numpy()
    return actual, expected
