"""Where Paddle's float32 training error on ODConv nets comes from: one op at a time, then a whole net.

Three measurements, each the float32 result against the float64 result of the *same* framework
(relative error ``max|f32 - f64| / max|f64|``), for torch and for Paddle, and their ratio:

1. ``ops``: every op of one ``ODConv2D`` in training mode (64 -> 64 channels, 3x3, batch 4, 16x16;
   kernel_num 1 and 4), forward output and every input's gradient. Each op gets the same inputs in
   both frameworks: values taken from a float64 forward of the op chain, rounded to float32, so
   the float64 run sees exactly the numbers the float32 run sees and only the op's own rounding
   is measured.
2. ``net``: od_resnet18 kernel_num 1 in training mode on 4x3x64x64, as
   ``parity_tests/test_models.py::test_train_step_matches_float32`` runs it (ReLU masks pinned to
   torch float32's): per-layer forward outputs, then gradients grouped by parameter kind.
3. ``attribution``: the same whole-net step with two Paddle kernels replaced, in the float32 run
   only, by a float64 computation of the same function (ODConv's attention pooling, every
   training-mode BatchNorm): how much of the gap each kernel accounts for. Then the time the
   cheapest candidate formulations cost (pooling as a matmul with a ones vector, BN in float64).

Not a test; run ``python tools/odconv_float32_ops.py [ops] [net] [attribution] [timing]`` from the
repository root (about a minute on 2 CPU cores). Findings: docs/odconv-float32.md.
"""

import contextlib
import copy
import functools
import sys
import time
import types
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.filterwarnings("ignore")

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import paddle.nn.functional as PF  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as TF  # noqa: E402

import paddle_rep  # noqa: E402
import paddle_rep.bn as paddle_bn  # noqa: E402
import paddle_rep.odconv as paddle_odconv  # noqa: E402
import paddle_rep.pooling  # noqa: E402
import torch_ref  # noqa: E402
from paddle_rep.core.numeric import relative_error  # noqa: E402
from parity_tests import helpers  # noqa: E402
from torch_ref.odconv import ODConv2d  # noqa: E402

torch.set_num_threads(1)  # as the parity suite (conftest.py); importing paddle set OMP_NUM_THREADS=1
B, C, OUT, A, HW = 4, 64, 64, 16, 16  # batch, in, out, attention channels, feature-map side


def row(name: str, t: float, p: float) -> str:
    ratio = "exact in both" if t == p == 0.0 else f"{p / max(t, 1e-300):.1f}"
    return f"| {name} | {t:.2e} | {p:.2e} | {ratio} |"


def header(title: str, first: str = "op") -> None:
    print(f"\n### {title}\n\n| {first} | torch f32 rel err | paddle f32 rel err | ratio |\n|---|---|---|---|")


# ------------------------------------------------------------------ 1. one ODConv2D, op by op

def _run(framework: str, fn, inputs: list[np.ndarray], upstream: np.ndarray, dtype: str):
    """fn's output and every input's gradient of sum(output * upstream), as float64 numpy."""
    if framework == "torch":
        ts = [torch.tensor(a.astype(dtype), requires_grad=True) for a in inputs]
        y = fn(*ts)
        (y * torch.tensor(upstream.astype(dtype))).sum().backward()
        return y.detach().double().numpy(), [t.grad.double().numpy() for t in ts]
    ts = [paddle.to_tensor(a.astype(dtype), stop_gradient=False) for a in inputs]
    y = fn(*ts)
    (y * paddle.to_tensor(upstream.astype(dtype))).sum().backward()
    return y.astype("float64").numpy(), [t.grad.astype("float64").numpy() for t in ts]


def _f32(a: np.ndarray) -> np.ndarray:
    """float64 holding float32 values: both runs of an op then start from the same numbers."""
    return np.asarray(a, np.float32).astype(np.float64)


def measure_op(name: str, torch_fn, paddle_fn, inputs: list[np.ndarray], names: list[str],
               rng: np.random.Generator) -> np.ndarray:
    """Print the op's rows (output, then each input's gradient); return its float64 output (torch)."""
    inputs = [_f32(a) for a in inputs]
    y64 = torch_fn(*[torch.from_numpy(a) for a in inputs]).detach().numpy()
    upstream = _f32(rng.normal(0.0, 1.0, y64.shape))
    errors = {}
    for framework, fn in (("torch", torch_fn), ("paddle", paddle_fn)):
        out64, grads64 = _run(framework, fn, inputs, upstream, "float64")
        out32, grads32 = _run(framework, fn, inputs, upstream, "float32")
        errors[framework] = [relative_error(out32, out64)] + [
            relative_error(g32, g64) for g32, g64 in zip(grads32, grads64, strict=True)]
    for i, what in enumerate(["out"] + [f"d{n}" for n in names]):
        print(row(f"{name}: {what}", errors["torch"][i], errors["paddle"][i]))
    return y64


def _bn(framework: str, channels: int):
    """Training-mode batch norm with fresh running statistics (the layers' kernel call)."""
    if framework == "torch":
        return lambda z, g, b: TF.batch_norm(z, torch.zeros(channels, dtype=z.dtype),
                                             torch.ones(channels, dtype=z.dtype), g, b, training=True)
    return lambda z, g, b: PF.batch_norm(z, paddle.zeros([channels], dtype=z.dtype),
                                         paddle.ones([channels], dtype=z.dtype), g, b, training=True)


def _aggregate(framework: str, kernel_num: int):
    """The library's per-sample kernel aggregation, [B*OUT, C, 3, 3], called on plain tensors."""
    def torch_fn(weight, spatial, kernel=None):
        layer = types.SimpleNamespace(kernel_num=kernel_num, out_planes=OUT, in_planes=C, groups=1, kernel_size=3,
                                      weight=weight)
        return ODConv2d.aggregate_weight(layer, spatial, kernel, B).reshape(B * OUT, C, 3, 3)

    def paddle_fn(weight, spatial, kernel=None):
        layer = types.SimpleNamespace(kernel_num=kernel_num, out_planes=OUT, in_planes=C, groups=1, kernel_size=3,
                                      weight=weight)
        out = paddle_odconv.ODConv2D.sample_kernels(layer, spatial, kernel)
        return out.expand([B, out.shape[1], out.shape[2]]).reshape([B * OUT, C, 3, 3])

    return torch_fn if framework == "torch" else paddle_fn


def op_table(temperature: float = 1.0) -> None:
    """Every op of one ODConv2D (common path) and the BN after it, fed a realistic activation."""
    rng = np.random.default_rng(0)
    header(f"One ODConv2D, {C}->{OUT}, 3x3, batch {B}, {HW}x{HW}, temperature {temperature:g}")
    # A post-ReLU activation, as every ODConv inside od_resnet sees: the 4 pooled values of a
    # channel are close to each other compared with their mean (the attention BN's conditioning).
    x = np.maximum(rng.normal(0.0, 1.0, (B, C, HW, HW)) + rng.normal(0.0, 0.5, (1, C, 1, 1)), 0.0)
    w_fc = rng.normal(0.0, np.sqrt(2.0 / A), (A, C, 1, 1))
    gamma_a, beta_a = rng.normal(1.0, 0.2, A), rng.normal(0.0, 0.2, A)
    w_heads = {n: (rng.normal(0.0, np.sqrt(2.0 / m), (m, A, 1, 1)), np.zeros(m))
               for n, m in (("channel", C), ("filter", OUT), ("spatial", 9), ("kernel", 4))}
    t = temperature

    pooled = measure_op("attention pool (mean over HxW)", lambda v: TF.adaptive_avg_pool2d(v, 1),
                        paddle_rep.pooling.global_avg_pool, [x], ["x"], rng)
    z = measure_op("attention fc (1x1 conv)", TF.conv2d, PF.conv2d, [pooled, w_fc], ["p", "w"], rng)
    a = measure_op(f"attention BN (train, n = B = {B})", _bn("torch", A), _bn("paddle", A), [z, gamma_a, beta_a],
                   ["z", "gamma", "beta"], rng)
    r = np.maximum(a, 0.0)  # ReLU: exact in both
    logits = {n: TF.conv2d(torch.from_numpy(r), torch.from_numpy(w), torch.from_numpy(b)).numpy()
              for n, (w, b) in w_heads.items()}
    channel = measure_op("channel head sigmoid(z/T)", lambda v: torch.sigmoid(v / t), lambda v: PF.sigmoid(v / t),
                         [logits["channel"]], ["z"], rng)
    filter_ = measure_op("filter head sigmoid(z/T)", lambda v: torch.sigmoid(v / t), lambda v: PF.sigmoid(v / t),
                         [logits["filter"]], ["z"], rng)
    spatial = measure_op("spatial head sigmoid(z/T)", lambda v: torch.sigmoid(v / t), lambda v: PF.sigmoid(v / t),
                         [logits["spatial"]], ["z"], rng).reshape(B, 1, 1, 3, 3)
    kernel = measure_op("kernel head softmax(z/T)", lambda v: TF.softmax(v / t, dim=1),
                        lambda v: PF.softmax(v / t, axis=1), [logits["kernel"].reshape(B, 4)], ["z"], rng)
    weight1 = rng.normal(0.0, np.sqrt(2.0 / (OUT * 9)), (1, OUT, C, 3, 3))
    weight4 = rng.normal(0.0, np.sqrt(2.0 / (OUT * 9)), (4, OUT, C, 3, 3))
    folded = measure_op("kernel aggregation, kernel_num 1", _aggregate("torch", 1), _aggregate("paddle", 1),
                        [weight1, spatial], ["weight", "spatial"], rng)
    measure_op("kernel aggregation, kernel_num 4", _aggregate("torch", 4), _aggregate("paddle", 4),
               [weight4, spatial, kernel], ["weight", "spatial", "kernel"], rng)
    scaled = measure_op("x * channel", lambda u, v: u * v, lambda u, v: u * v, [x, channel], ["x", "channel"], rng)

    def fold(framework: str):
        conv = TF.conv2d if framework == "torch" else PF.conv2d
        return lambda u, w: conv(u.reshape([1, B * C, HW, HW]), w, None, 1, 1, 1, B)

    out = measure_op(f"batch-fold conv (groups = B = {B})", fold("torch"), fold("paddle"), [scaled, folded],
                     ["x", "weight"], rng).reshape(B, OUT, HW, HW)
    y = measure_op("out * filter", lambda u, v: u * v, lambda u, v: u * v, [out, filter_], ["out", "filter"], rng)
    measure_op(f"block BN (train, n = B*H*W = {B * HW * HW})", _bn("torch", OUT), _bn("paddle", OUT),
               [y, rng.normal(1.0, 0.2, OUT), rng.normal(0.0, 0.2, OUT)], ["x", "gamma", "beta"], rng)


# ------------------------------------------------------------------ 2. the smallest whole net

NET = dict(name="od_resnet18", kernel_num=1, num_classes=10, dropout=0.0)
NET_INPUT = (4, 3, 64, 64)  # as test_train_step_matches_float32


def _net_models():
    kwargs = {k: v for k, v in NET.items() if k != "name"}
    torch32, paddle32 = helpers.make_pair(lambda: torch_ref.create_model(NET["name"], **kwargs),
                                          lambda: paddle_rep.create_model(NET["name"], **kwargs), "float32", seed=0)
    torch64 = copy.deepcopy(torch32).double()
    paddle64 = copy.deepcopy(paddle32)
    paddle64.to(dtype="float64")
    x = helpers.seeded_input(NET_INPUT, "float32", seed=1)
    upstream = np.random.default_rng(5).normal(0.0, 1.0, (NET_INPUT[0], NET["num_classes"])).astype("float32")
    return (torch32, paddle32, torch64, paddle64), x, upstream


def _net_steps(capture: bool = False):
    """The four pinned train steps (torch32, paddle32, torch64, paddle64) and, with ``capture``,
    every sublayer's forward output in each run."""
    models, x, upstream = _net_models()
    outputs = [{} for _ in models]
    handles = []
    for model, seen in zip(models, outputs, strict=True) if capture else ():
        is_torch = isinstance(model, torch.nn.Module)
        for name, layer in (model.named_modules() if is_torch else model.named_sublayers()):
            def keep(module, inputs, out, name=name, seen=seen):
                if isinstance(out, (torch.Tensor, paddle.Tensor)):
                    seen[name] = helpers.as_numpy(out.detach() if isinstance(out, torch.Tensor) else out).astype(
                        np.float64)
            handles.append(layer.register_forward_hook(keep) if is_torch else layer.register_forward_post_hook(keep))
    steps = helpers.pinned_train_steps(*models, x, upstream)
    for handle in handles:
        handle.remove()
    return steps, outputs


def _gradient_ratios(steps) -> list[tuple[str, float, float]]:
    """(name, torch own error, paddle own error) for the output, the input gradient and every gradient."""
    t32, p32, t64, p64 = steps
    rows = [("train output", t32.output, p32.output, t64.output, p64.output),
            ("input grad", t32.input_grad, p32.input_grad, t64.input_grad, p64.input_grad)]
    rows += [(f"grad {k}", t32.param_grads[k], p32.param_grads[k], t64.param_grads[k], p64.param_grads[k])
             for k in sorted(t32.param_grads)]
    return [(name, relative_error(a, c), relative_error(b, d)) for name, a, b, c, d in rows if np.any(c)]


def _group(name: str) -> str:
    if name in ("train output", "input grad"):
        return name
    for part, label in ((".attention.bn.", "attention BN"), (".attention.fc.", "attention fc"),
                        (".attention.", "attention heads"), ("conv", "ODConv / conv weights")):
        if part in name and (label != "ODConv / conv weights" or name.endswith(".weight")):
            return label
    return "BN and fc parameters"


def net_table() -> None:
    steps, outputs = _net_steps(capture=True)
    t32, p32, t64, p64 = outputs
    header(f"{NET['name']} kernel_num {NET['kernel_num']}, training mode, {'x'.join(map(str, NET_INPUT))}: "
           "forward outputs (cumulative error)", "layer")
    shown = ("conv1", "bn1", "layer1.0.conv1.attention.fc", "layer1.0.conv1.attention.bn", "layer1.0.conv1",
             "layer1.0.bn1", "layer1.0", "layer1.1.conv2.attention.fc", "layer1.1.conv2.attention.bn", "layer1",
             "layer2", "layer3", "layer4.1.conv2.attention.fc", "layer4.1.conv2.attention.bn", "layer4", "fc")
    for name in shown:
        if name in t32 and name in p32:
            print(row(name, relative_error(t32[name], t64[name]), relative_error(p32[name], p64[name])))
    gradients_table(steps, f"{NET['name']} kernel_num {NET['kernel_num']}: gradients (median and worst per group)")


def gradients_table(steps, title: str) -> None:
    header(title, "tensors")
    groups: dict[str, list[tuple[str, float, float]]] = {}
    for entry in _gradient_ratios(steps):
        groups.setdefault(_group(entry[0]), []).append(entry)
    for label, entries in groups.items():
        ratios = [p / t for _, t, p in entries]
        worst = max(entries, key=lambda e: e[2] / e[1])
        if len(entries) == 1:
            print(row(label, worst[1], worst[2]))
        else:
            print(f"| {label} ({len(entries)}): median ratio {np.median(ratios):.1f}; worst {worst[0]} | "
                  f"{worst[1]:.2e} | {worst[2]:.2e} | {worst[2] / worst[1]:.1f} |")


# ------------------------------------------------------------------ 3. attribution and cost

def _in_float64(fn):
    """fn computed in float64 for float32 inputs (an oracle for a float32 kernel's own rounding)."""
    def wrapped(*args):
        if args[0].dtype != paddle.float32:
            return fn(*args)
        return fn(*[a.astype("float64") for a in args]).astype("float32")
    return wrapped


def _bn_float64(layer, x):
    """A training-mode BN of a float32 input computed in float64 (running statistics left alone)."""
    if not (layer.training and x.dtype == paddle.float32):
        return _ORIGINAL_BN_FORWARD(layer, x)
    return PF.batch_norm(x.astype("float64"), layer._mean.astype("float64"), layer._variance.astype("float64"),
                         weight=layer.weight.astype("float64"), bias=layer.bias.astype("float64"), training=True,
                         epsilon=layer._epsilon).astype("float32")


_ORIGINAL_BN_FORWARD = paddle_bn.BatchNorm2D.forward


@contextlib.contextmanager
def replaced(pool: bool, bn: bool):
    original_pool = paddle_odconv.global_avg_pool
    if pool:
        paddle_odconv.global_avg_pool = _in_float64(original_pool)
    if bn:
        paddle_bn.BatchNorm2D.forward = _bn_float64
    try:
        yield
    finally:
        paddle_odconv.global_avg_pool = original_pool
        paddle_bn.BatchNorm2D.forward = _ORIGINAL_BN_FORWARD


def attribution() -> None:
    header(f"{NET['name']} kernel_num {NET['kernel_num']}: Paddle kernels replaced by float64 in the float32 run "
           "(input grad; median and worst ratio over all gradients)", "replaced")
    for label, pool, bn in (("nothing", False, False), ("attention pool", True, False),
                            ("every train-mode BN", False, True), ("attention pool + every BN", True, True)):
        with replaced(pool, bn):
            entries = _gradient_ratios(_net_steps()[0])
        ratios = {name: p / t for name, t, p in entries}
        worst = max(ratios, key=ratios.get)
        _, t, p = next(e for e in entries if e[0] == "input grad")
        print(f"| {label}: median {np.median(list(ratios.values())):.1f}, worst {ratios[worst]:.1f} ({worst}) | "
              f"{t:.2e} | {p:.2e} | {p / t:.1f} |")


def _time_backward(fn, x: paddle.Tensor, repeats: int = 20) -> float:
    """Milliseconds per forward + backward of ``fn(x).sum()`` (after 3 warm-up calls)."""
    for _ in range(3):
        fn(x).sum().backward()
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x).sum().backward()
    return (time.perf_counter() - start) / repeats * 1e3


def _matmul_pool(v: paddle.Tensor) -> paddle.Tensor:
    b, c, h, w = v.shape
    return (paddle.matmul(v.reshape([b * c, h * w]), paddle.ones([h * w, 1], v.dtype)) / (h * w)).reshape([b, c, 1, 1])


def timing() -> None:
    """Accuracy and cost of the candidate formulations, forward + backward (a rough guide: shared CPU)."""
    rng = np.random.default_rng(0)
    print("\n### Candidate formulations: float32 rel err of the forward, time of forward + backward\n")
    print("| formulation | shape | torch | paddle | paddle ms |\n|---|---|---|---|---|")
    for shape in ((4, 64, 16, 16), (8, 128, 56, 56)):
        x = np.maximum(rng.normal(0.3, 1.0, shape), 0.0).astype(np.float32)
        ref = x.astype(np.float64).mean(axis=(2, 3), keepdims=True)
        torch_err = relative_error(TF.adaptive_avg_pool2d(torch.from_numpy(x), 1).numpy(), ref)
        xp = paddle.to_tensor(x, stop_gradient=False)
        for label, fn in (("pool: reshape + mean (library)", paddle_rep.pooling.global_avg_pool),
                          ("pool: matmul with ones", _matmul_pool)):
            ms = _time_backward(fn, xp)
            print(f"| {label} | {shape} | {torch_err:.2e} | {relative_error(fn(xp).numpy(), ref):.2e} | {ms:.2f} |")
        layer = types.SimpleNamespace(training=True, _mean=paddle.zeros([shape[1]]), _variance=paddle.ones([shape[1]]),
                                      weight=paddle.ones([shape[1]]), bias=paddle.zeros([shape[1]]), _epsilon=1e-5)
        layer.weight.stop_gradient = layer.bias.stop_gradient = False
        native = functools.partial(PF.batch_norm, running_mean=layer._mean, running_var=layer._variance,
                                   weight=layer.weight, bias=layer.bias, training=True)
        for label, fn in (("BN: native float32", native), ("BN: in float64", functools.partial(_bn_float64, layer))):
            print(f"| {label} | {shape} | | | {_time_backward(fn, xp):.2f} |")


if __name__ == "__main__":
    chosen = sys.argv[1:] or ["ops", "net", "attribution", "timing"]
    print(f"paddle {paddle.__version__}, torch {torch.__version__}, numpy {np.__version__}")
    for part in chosen:
        {"ops": op_table, "net": net_table, "attribution": attribution, "timing": timing}[part]()
