"""Shared machinery of the parity suite: seeded data, randomised BN state, weight transfer, comparison.

Weights move between the frameworks only through ``paddle_rep.core.interop`` (the public path),
and every transfer asserts that ``set_state_dict`` reported no missing or unexpected key.
"""

import contextlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import paddle
import torch
from paddle import nn

from paddle_rep.apps.parity import (
    TrainStep,
    paddle_train_step,
    randomize_bn,
    randomize_paddle_bn,
    torch_train_step,
)
from paddle_rep.core import interop
from paddle_rep.core.numeric import difference
from parity_tests.tolerances import ill_conditioned_reason, own_error_factor, tolerance

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
    failures: list[str] = field(default_factory=list)  # checks beyond the bound (measure_against_rounding)

    @property
    def ok(self) -> bool:
        return self.max_abs <= self.allowed * self.max_ref and not self.failures

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "FAILED"
        extra = "".join(f"; {f}" for f in self.failures)
        return (f"{self.what}: max|diff| {self.max_abs:.3e} = {self.rel:.3e} x max|ref| {self.max_ref:.3e} "
                f"(allowed {self.allowed:.1e} rel: {self.reason}){extra} -> {verdict}")


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
    diff = difference(actual, expected)
    if diff.max_ref == 0.0:
        raise AssertionError(f"{what}: the reference is all zeros, so the comparison could not fail")
    _record(what, kind, dtype, diff.rel(floor=0.0))
    return Comparison(what, diff.max_abs, diff.max_ref, diff.rel(floor=0.0), tol.rel, tol.reason)


def _record(what: str, kind: str, dtype: str, rel: float) -> None:
    """With PARITY_RECORD=path, append every measured figure (how tolerances.py's figures are taken)."""
    path = os.environ.get("PARITY_RECORD")
    if path:
        test = os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0]
        with Path(path).open("a", encoding="utf-8") as log:
            log.write(json.dumps({"test": test, "what": what, "kind": kind, "dtype": dtype, "rel": rel}) + "\n")


PADDLE_ERROR_FACTOR = 4  # Paddle's float32-vs-float64 error may be at most this multiple of torch's (measured <= 2.8x)
# Past the bound, a listed comparison may use this many x the reference's own float32 error: by the triangle
# inequality |p32 - t32| <= |p32 - p64| + |p64 - t64| + |t64 - t32| <= (PADDLE_ERROR_FACTOR + 1) x it (+ rounding).
ROUNDING_FACTOR = PADDLE_ERROR_FACTOR + 1


def _max_abs_diff(a, b) -> float:
    return difference(as_numpy(a), as_numpy(b)).max_abs


def _assert_finite(what: str, **tensors) -> None:
    bad = [name for name, t in tensors.items() if t is not None and not np.isfinite(as_numpy(t)).all()]
    if bad:
        raise AssertionError(f"{what}: non-finite values in {', '.join(bad)} (an inf twin would allow anything)")


def measure_against_rounding(what: str, actual, expected, kind: str, dtype: str,
                             actual_exact=None, expected_exact=None) -> Comparison:
    """``measure``, with float64 twins as a yardstick that cannot absorb the error it measures.

    ``actual_exact`` and ``expected_exact`` are the same computation run in float64 by each side.
    Every comparison with twins also requires the actual side's float32 error
    ``max|actual - actual_exact|`` to stay within :data:`PADDLE_ERROR_FACTOR` x the reference's
    ``max|expected - expected_exact|`` plus the table bound: a float32-only bug on the actual side
    (a cancelling variance formula, a float32 fast path) fails here even where the float64 tests pass.

    Only tensors listed in ``tolerances.ILL_CONDITIONED`` (matched on ``what``, each with its reason)
    may then exceed the table bound, by :data:`ROUNDING_FACTOR` x the reference's own float32 error:
    the allowance comes from the reference alone, never from the side under test.
    """
    result = measure(what, actual, expected, kind, dtype)
    if expected_exact is None:
        return result
    _assert_finite(what, actual_exact=actual_exact, expected_exact=expected_exact)
    reference_error = _max_abs_diff(expected, expected_exact)
    factor, factor_reason = own_error_factor(what, PADDLE_ERROR_FACTOR)
    table_abs = result.allowed * result.max_ref
    _record(f"{what} [reference float32 error]", kind, dtype, reference_error / result.max_ref)
    if actual_exact is not None:
        actual_error = _max_abs_diff(actual, actual_exact)
        _record(f"{what} [actual float32 error]", kind, dtype, actual_error / result.max_ref)
        own_bound = factor * reference_error + table_abs
        if actual_error > own_bound:
            result.failures.append(
                f"its own float32 error {actual_error:.3e} > {factor:g} x the reference's "
                f"{reference_error:.3e} + table bound {table_abs:.3e}")
        if factor_reason is not None:
            result.reason += f"; own-error factor {factor:g} ({factor_reason})"
    reason = ill_conditioned_reason(what)
    if reason is not None and not result.ok:
        rounding = factor + 1  # the triangle inequality, as ROUNDING_FACTOR
        result.allowed += rounding * reference_error / result.max_ref
        result.reason += (f"; listed ill-conditioned ({reason}): + {rounding:g}x the reference's own "
                          f"float32 error {reference_error:.2e}")
    return result


def assert_close(what: str, actual, expected, kind: str, dtype: str) -> Comparison:
    result = measure(what, actual, expected, kind, dtype)
    assert result.ok, str(result)
    return result


def assert_all_close(results: list[Comparison]) -> None:
    """Assert a batch of comparisons at once, so one failure never hides another."""
    failed = [str(r) for r in results if not r.ok]
    assert not failed, "\n".join(failed)


def torch_meta(name: str, **kwargs) -> torch.nn.Module:
    """A torch_ref zoo model on torch's meta device (no memory, no init cost)."""
    with torch.device("meta"):
        import torch_ref

        return torch_ref.create_model(name, **kwargs)


def paddle_lazy(name: str, **kwargs) -> nn.Layer:
    """A paddle_rep zoo model built under ``paddle.LazyGuard`` (parameters not initialised)."""
    import paddle_rep

    with paddle.LazyGuard():
        return paddle_rep.create_model(name, **kwargs)


def torch_trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def paddle_trainable(model: nn.Layer) -> int:
    # BN _mean/_variance are parameters with stop_gradient=True in Paddle.
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


def calibrate_paddle_bn(model: nn.Layer, x: np.ndarray, rng: np.random.Generator, spread: float = 0.2) -> None:
    """Random affine parameters, and running statistics near those of the data each BN sees (eval mode).

    :func:`randomize_paddle_bn`'s statistics have nothing to do with the activations, so the deep SE
    nets (RepVGG-D2se, RepVGGplus) grow them by orders of magnitude and amplify rounding chaotically
    (fused vs unfused D2se: 0.75 relative in float32, 1.2 in float64). Here each BN's mean and
    variance are its input's per-channel statistics on ``x``, moved by ``spread`` standard deviations
    and scaled by exp(``spread`` * N(0, 1)): still far from the defaults, but every layer's output stays
    O(1), as in a trained net. The model is left in eval mode.
    """
    randomize_paddle_bn(model, rng)

    def set_from_input(layer: nn.Layer, inputs: tuple) -> None:
        values = inputs[0].numpy().astype("float64")
        axes = tuple(a for a in range(values.ndim) if a != 1)
        mean, var = values.mean(axis=axes), values.var(axis=axes)
        var = np.maximum(var, 1e-2 * max(var.mean(), 1e-6))  # a channel ReLU left at zero: no 1/sqrt(eps) gain
        n, dtype = mean.shape[0], layer._mean.dtype
        layer._mean.set_value(paddle.to_tensor(mean + spread * np.sqrt(var) * rng.normal(size=n), dtype=dtype))
        layer._variance.set_value(paddle.to_tensor(var * np.exp(spread * rng.normal(size=n)), dtype=dtype))

    hooks = [layer.register_forward_pre_hook(set_from_input) for layer in model.sublayers(include_self=True)
             if isinstance(layer, nn.layer.norm._BatchNormBase)]
    model.eval()
    try:
        with paddle.no_grad():
            model(paddle.to_tensor(x))
    finally:
        for hook in hooks:
            hook.remove()


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


class ReluMasks:
    """Pins every ReLU and ReLU6 to the active set a reference run recorded.

    A pre-activation within float32 rounding of 0 (or of 6) lands on either side depending on
    summation order; in train mode BN's backward then spreads that one unit's gradient over its
    channel, so one flip moves a whole-model input gradient by ~1e-2 relative: a coin toss between
    runs, machines and frameworks, not a porting error. ``record`` the reference's masks (calls in
    order), then ``replay`` them in the other runs, which then compute the same piecewise-linear
    branch and differ by rounding only. ``F.relu`` is patched (both frameworks' ``nn.ReLU`` call it,
    and so does the SE block), ReLU6 modules are hooked. Replay checks each call's shape, so models
    that call their ReLUs in another order fail loudly instead of comparing mismatched masks.
    """

    def __init__(self) -> None:
        self.masks: list[tuple[np.ndarray, np.ndarray | None]] = []  # (active, clipped at 6 or None)

    @contextlib.contextmanager
    def record(self, model):
        """Run ``model`` (either framework) unchanged, keeping each ReLU call's masks."""
        self.masks.clear()

        def keep(x, six: bool):
            v = x.detach().numpy() if isinstance(x, torch.Tensor) else x.numpy()
            self.masks.append(((v > 0) & (v < 6), v >= 6) if six else (v > 0, None))

        with self._intercepted(model, keep, replace=False):
            yield self

    @contextlib.contextmanager
    def replay(self, model):
        """Run ``model`` with the recorded masks: output = x * active (+ 6 where clipped at 6)."""
        calls = iter(range(len(self.masks)))

        def pinned(x, six: bool):
            index = next(calls, None)
            assert index is not None, "more ReLU calls than the recorded run made"
            active, clipped = self.masks[index]
            assert tuple(x.shape) == active.shape, f"ReLU call {index}: shape {tuple(x.shape)} != {active.shape}"
            assert (clipped is not None) == six, f"ReLU call {index}: ReLU vs ReLU6"
            if isinstance(x, torch.Tensor):
                out = x * torch.from_numpy(active).to(x.dtype)
                return out if clipped is None else out + 6 * torch.from_numpy(clipped).to(x.dtype)
            out = x * paddle.to_tensor(active).astype(x.dtype)
            return out if clipped is None else out + 6 * paddle.to_tensor(clipped).astype(x.dtype)

        with self._intercepted(model, pinned, replace=True):
            yield self
        assert next(calls, None) is None, "fewer ReLU calls than the recorded run made"

    @staticmethod
    @contextlib.contextmanager
    def _intercepted(model, seen, replace: bool):
        is_torch = isinstance(model, torch.nn.Module)
        functional = torch.nn.functional if is_torch else paddle.nn.functional
        original = functional.relu

        def relu(x, *args, **kwargs):
            result = seen(x, False)
            return result if replace else original(x, *args, **kwargs)

        def relu6_hook(module, inputs, output):
            result = seen(inputs[0], True)
            return result if replace else None

        relu6 = (torch.nn.ReLU6,) if is_torch else (nn.ReLU6,)
        modules = list(model.modules()) if is_torch else model.sublayers(include_self=True)
        six = [m for m in modules if isinstance(m, relu6)]
        inplace = [m.inplace for m in six] if is_torch else []
        for m in six if is_torch else []:
            m.inplace = False  # an in-place ReLU6 would overwrite the input the hook reads
        handles = [m.register_forward_hook(relu6_hook) if is_torch else m.register_forward_post_hook(relu6_hook)
                   for m in six]
        functional.relu = relu
        try:
            yield
        finally:
            functional.relu = original
            for handle in handles:
                handle.remove()
            for m, flag in zip(six if is_torch else [], inplace, strict=True):
                m.inplace = flag


def pinned_train_steps(torch_model: torch.nn.Module, paddle_model: nn.Layer, torch_exact: torch.nn.Module,
                       paddle_exact: nn.Layer, x: np.ndarray, upstream: np.ndarray) -> list[TrainStep]:
    """float32 train steps of both frameworks and their float64 twins, all on torch float32's ReLU masks
    (:class:`ReluMasks`): ``[torch32, paddle32, torch64, paddle64]``."""
    masks = ReluMasks()
    with masks.record(torch_model):
        steps = [torch_train_step(torch_model, x, upstream)]
    x64, up64 = x.astype(np.float64), upstream.astype(np.float64)
    for model, step, args in ((paddle_model, paddle_train_step, (x, upstream)),
                              (torch_exact, torch_train_step, (x64, up64)),
                              (paddle_exact, paddle_train_step, (x64, up64))):
        with masks.replay(model):
            steps.append(step(model, *args))
    return steps


def compare_train_steps(paddle_step: TrainStep, torch_step: TrainStep, dtype: str,
                        zero_grad_suffixes: tuple[str, ...] = (),
                        step_scaled_suffixes: tuple[str, ...] = ()) -> list[Comparison]:
    """Output, input gradient and every parameter gradient, each against the tolerance table.

    Parameters ending in one of ``zero_grad_suffixes`` have an exactly zero gradient (a per-channel
    shift followed by a train-mode BN, e.g. QARepVGG's ``rbr_dense.bn.bias``): both sides must then be
    zero to the table's bound, measured against the largest gradient of the step, since comparing
    rounding noise with rounding noise says nothing.
    """
    assert set(paddle_step.param_grads) == set(torch_step.param_grads), (
        f"parameter sets differ: {sorted(set(paddle_step.param_grads) ^ set(torch_step.param_grads))}"
    )
    results = [
        measure("train output", paddle_step.output, torch_step.output, "output", dtype),
        measure("input grad", paddle_step.input_grad, torch_step.input_grad, "input_grad", dtype),
    ]
    zero = zero_grad_names(torch_step.param_grads, zero_grad_suffixes)
    results += [measure_zero_grad(f"grad {name}", paddle_step.param_grads[name], torch_step, name, dtype)
                for name in zero]
    scaled = zero_grad_names(torch_step.param_grads, step_scaled_suffixes)
    results += [measure_step_scaled_grad(f"grad {name}", paddle_step.param_grads[name], torch_step, name, dtype)
                for name in scaled]
    results += [measure(f"grad {name}", paddle_step.param_grads[name], torch_step.param_grads[name],
                        "param_grad", dtype) for name in sorted(torch_step.param_grads)
                if name not in zero and name not in scaled]
    return results


def zero_grad_names(grads: Mapping[str, object], suffixes: tuple[str, ...]) -> list[str]:
    """The parameter names ending in one of ``suffixes`` (whose exact gradient is zero)."""
    return sorted(n for n in grads if suffixes and n.endswith(suffixes))


def measure_zero_grad(what: str, actual, torch_step: TrainStep, name: str, dtype: str) -> Comparison:
    """A BN bias gradient that is exactly zero (see ``cancelled_grad`` in the tolerance table).

    Both sides must be zero to the bound, against the yardstick max|dL/dgamma| of the same BN
    (a sum over the same terms).
    """
    tol = tolerance("cancelled_grad", dtype)
    scale = float(np.abs(as_numpy(torch_step.param_grads[name[:-len("bias")] + "weight"])).max(initial=0.0))
    size = max(float(np.abs(as_numpy(actual)).max()), float(np.abs(as_numpy(torch_step.param_grads[name])).max()))
    _record(what, "cancelled_grad", dtype, size / scale)
    return Comparison(f"{what} (zero in exact arithmetic; yardstick max|dL/dgamma|)", size, scale, size / scale,
                      tol.rel, tol.reason)


def measure_step_scaled_grad(what: str, actual, torch_step: TrainStep, name: str, dtype: str) -> Comparison:
    """A gradient that a train-mode BN all but cancels, against the step's largest parameter gradient.

    DBB's depthwise ``dbb_1x1_kxk.conv1`` gives each output one input channel and a train-mode BN
    follows, which undoes the output's scale: only ``eps`` keeps the gradient from zero (about 2e-4
    of the block's largest), so its own size is no yardstick; the ``param_grad`` bound applies to
    the difference over the largest gradient of the same step.
    """
    tol = tolerance("param_grad", dtype)
    scale = max(float(np.abs(as_numpy(g)).max(initial=0.0)) for g in torch_step.param_grads.values())
    diff = float(np.abs(as_numpy(actual).astype(np.float64) - as_numpy(torch_step.param_grads[name])).max())
    _record(what, "param_grad", dtype, diff / scale)
    return Comparison(f"{what} (all but cancelled; yardstick the step's largest gradient)", diff, scale,
                      diff / scale, tol.rel, tol.reason)


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
