"""Benchmark torch_ref and paddle_rep side by side in one process; writes a markdown table and a PNG chart.

Per case (each block, then whole models) it times the eval forward of: torch_ref training form and
fused, paddle_rep dygraph training form and fused, the exported ``paddle.inference`` predictor
(oneDNN on) of the fused and of the training-form model, every deploy backend of
``paddle_rep.apps.predictor.Predictor`` on the fused export (ONNX Runtime, OpenVINO; for ODConv models
also Paddle Inference on the fold programs, the unfold graph and the batch-1 fold graph run per
sample), and a straightforward Paddle RepVGG port (written here, for the RepVGG rows); for the model
rows also the int8 predictor per runtime and the peers a torch user would pick (the fused torch_ref
model through ``torch.onnx.export``, on ONNX Runtime and OpenVINO in float32 and after NNCF int8;
``--no-int8`` skips them); plus a training step (forward + backward) in each framework. ODConv rows
compare the batch fold, a per-sample loop, the unfold export formulation and upstream's 6-D
broadcast-and-sum aggregation (time and Paddle's peak allocated memory). Conversion of a B3-size
checkpoint against the floor reuses :mod:`paddle_rep.apps.bench_convert`. Both frameworks run with the
same thread count; every figure is the median of ``--repeat`` runs after a warm-up, and ratios come from the same run.

    python -m paddle_rep.apps.bench       # full run into docs/performance/bench.{md,png,json} + the summary table
    python -m paddle_rep.apps.bench --quick  # tiny sizes, a smoke run into results/
    python -m paddle_rep.apps.bench --quick --no-blocks --models qarepvgg_a0,dbb_resnet18  # those model rows only
    python -m paddle_rep.apps.bench --load   # the load benchmark (bench_load) into docs/performance/load.{md,json}
    paddle-rep bench [same arguments]     # the same tool
"""

import argparse
import contextlib
import copy
import gc
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .console import captured_output, quiet_paddle_notices

quiet_paddle_notices()  # before Paddle loads (the imports below)

import numpy as np  # noqa: E402
import paddle  # noqa: E402
import torch  # noqa: E402
from paddle import nn  # noqa: E402
from paddle.nn import functional as F  # noqa: E402

import paddle_rep  # noqa: E402
import torch_ref  # noqa: E402
from paddle_rep.apps.exporter import ExportedModel, export  # noqa: E402
from paddle_rep.apps.parity import (  # noqa: E402
    paddle_backward,
    paddle_release_grads,
    randomize_bn,
    torch_backward,
    torch_release_grads,
)
from paddle_rep.apps.predictor import BACKENDS, Predictor  # noqa: E402
from paddle_rep.core import interop  # noqa: E402
from paddle_rep.core.numeric import relative_error  # noqa: E402
from paddle_rep.models import create_model  # noqa: E402
from paddle_rep.odconv import ODConv2D  # noqa: E402

logger = logging.getLogger("bench")
ROOT = Path(__file__).resolve().parents[2]  # the source checkout (docs/performance)
PERF_DOCS = ROOT / "docs" / "performance"

# --- harness ----------------------------------------------------------------------------------


def set_threads(n: int) -> str:
    """Same intra-op thread count in both frameworks (importing paddle sets OMP_NUM_THREADS=1)."""
    torch.set_num_threads(n)
    for owner in ("base", "fluid"):  # paddle.base on >= 2.6, paddle.fluid before
        core = getattr(getattr(paddle, owner, None), "core", None)
        if core is not None and hasattr(core, "set_num_threads"):
            core.set_num_threads(n)
            return f"paddle.{owner}.core.set_num_threads({n})"
    os.environ["OMP_NUM_THREADS"] = str(n)  # only reaches threads created from now on
    return f"OMP_NUM_THREADS={n} (no set_num_threads in this Paddle)"


@dataclass
class Timing:
    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median * 1e3:.1f} ms"


def timeit(fn: Callable[[], object], warmup: int, repeat: int) -> Timing:
    """Median (and range) of ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return Timing(statistics.median(times), min(times), max(times))


def _memory_stat(kind: str) -> int | None:
    core = paddle.base.core if hasattr(paddle, "base") else None
    fn = getattr(core, f"host_memory_stat_{kind}_value", None)
    return None if fn is None else int(fn("Allocated", 0))


def paddle_peak_bytes(fn: Callable[[], object]) -> int | None:
    """Peak bytes Paddle's host allocator held during ``fn()`` above what it held before; None if untracked."""
    core = paddle.base.core if hasattr(paddle, "base") else None
    if core is None or not hasattr(core, "host_memory_stat_reset_peak_value"):
        return None
    gc.collect()
    core.host_memory_stat_reset_peak_value("Allocated", 0)
    before = _memory_stat("current")
    fn()
    return _memory_stat("peak") - before


# --- a straightforward Paddle RepVGG port (the comparison point; written for this benchmark) ---


class PlainSE(nn.Layer):
    def __init__(self, channels: int, internal: int) -> None:
        super().__init__()
        self.down = nn.Conv2D(channels, internal, 1)
        self.up = nn.Conv2D(internal, channels, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.sigmoid(self.up(F.relu(self.down(s))))


class PlainRepVGGBlock(nn.Layer):
    """What a direct port looks like: native BN, no checks; fused form keeps SE and drops the branches."""

    def __init__(self, cin: int, cout: int, stride: int, groups: int, use_se: bool) -> None:
        super().__init__()

        def conv_bn(k: int, pad: int) -> nn.Sequential:
            return nn.Sequential(("conv", nn.Conv2D(cin, cout, k, stride, pad, groups=groups, bias_attr=False)),
                                 ("bn", nn.BatchNorm2D(cout)))

        self.rbr_dense, self.rbr_1x1 = conv_bn(3, 1), conv_bn(1, 0)
        self.rbr_identity = nn.BatchNorm2D(cin) if cin == cout and stride == 1 else None
        self.se = PlainSE(cout, cout // 16) if use_se else nn.Identity()
        self.rbr_reparam = None

    def forward(self, x):
        if self.rbr_reparam is not None:
            return F.relu(self.se(self.rbr_reparam(x)))
        out = self.rbr_dense(x) + self.rbr_1x1(x)
        if self.rbr_identity is not None:
            out = out + self.rbr_identity(x)
        return F.relu(self.se(out))


def plain_port(model: nn.Layer, fused: nn.Layer | None = None) -> nn.Layer:
    """A copy of ``model`` with every RepVGGBlock swapped for :class:`PlainRepVGGBlock` (same weights);
    with ``fused`` (the re-parameterized model) the plain blocks take its fused convs."""
    from paddle_rep.repvgg import RepVGGBlock

    fused_blocks = {} if fused is None else dict(fused.named_sublayers(include_self=True))

    def plain_block(block: RepVGGBlock, path: str) -> PlainRepVGGBlock:
        stride = block.rbr_dense.conv._stride
        plain = PlainRepVGGBlock(block.in_channels, block.out_channels, stride if isinstance(stride, int) else
                                 stride[0], block.groups, not isinstance(block.se, nn.Identity))
        missing, unexpected = plain.set_state_dict(block.state_dict())
        assert not missing and not unexpected, (missing, unexpected)
        if fused is not None:
            plain.rbr_reparam = fused_blocks[path].rbr_reparam
            plain.rbr_dense = plain.rbr_1x1 = plain.rbr_identity = None
        plain.train() if block.training else plain.eval()
        return plain

    def swap(parent: nn.Layer, prefix: str) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, RepVGGBlock):
                setattr(parent, name, plain_block(child, prefix + name))
            else:
                swap(child, f"{prefix}{name}.")

    if isinstance(model, RepVGGBlock):
        return plain_block(model, "")
    model = copy.deepcopy(model)
    swap(model, "")
    return model


# --- ODConv comparison formulations, installed in place of the batch fold ----------------------


def _odconv_official(self: ODConv2D, x: paddle.Tensor) -> paddle.Tensor:
    """Upstream's aggregation: the 6-D ``(spatial * kernel * weight).sum(1)`` broadcast, then the fold."""
    channel, filter_, spatial, kernel = self.attention(x)
    batch, _, height, width = x.shape
    x = (x * channel).reshape([1, -1, height, width])
    weight = self.weight.unsqueeze(0)  # [1, kn, out, in, k, k]
    if spatial is not None:
        weight = spatial.unsqueeze(1) * weight
    if kernel is not None:
        weight = kernel.reshape([batch, self.kernel_num, 1, 1, 1, 1]) * weight
    weight = weight.sum(axis=1).reshape([-1, self.in_planes // self.groups, self.kernel_size, self.kernel_size])
    if weight.shape[0] != batch * self.out_planes:
        weight = weight.tile([batch, 1, 1, 1])
    out = F.conv2d(x, weight, None, self.stride, self.padding, self.dilation, groups=self.groups * batch)
    out = out.reshape([batch, self.out_planes, out.shape[-2], out.shape[-1]])
    return out if filter_ is None else out * filter_


def _odconv_loop(self: ODConv2D, x: paddle.Tensor) -> paddle.Tensor:
    """One plain conv per sample with that sample's aggregated kernel."""
    channel, filter_, spatial, kernel = self.attention(x)
    batch = x.shape[0]
    weight = self.aggregate_weight(spatial, kernel, batch)
    outs = [F.conv2d(x[b:b + 1] * channel[b:b + 1], weight[b], None, self.stride, self.padding, self.dilation,
                     self.groups) for b in range(batch)]
    out = paddle.concat(outs, axis=0)
    return out if filter_ is None else out * filter_


ODCONV_FORMULATIONS = {
    "fold": ("fold", None),
    "unfold (export)": ("unfold", None),
    "per-sample loop": ("fold", _odconv_loop),
    "official 6-D sum": ("fold", _odconv_official),
}


@contextlib.contextmanager
def odconv_formulation(model: nn.Layer, variant: str):
    formulation, impl = ODCONV_FORMULATIONS[variant]
    layers = [m for m in model.sublayers(include_self=True) if isinstance(m, ODConv2D)]
    for layer in layers:
        layer.formulation = formulation
        if impl is not None:
            layer._forward_impl_common = types.MethodType(impl, layer)
    try:
        yield
    finally:
        for layer in layers:
            layer.formulation = "auto"
            layer.__dict__.pop("_forward_impl_common", None)


# --- cases ------------------------------------------------------------------------------------


@dataclass
class Case:
    name: str
    build_torch: Callable[[], torch.nn.Module]
    build_paddle: Callable[[], nn.Layer]
    shape: tuple[int, int, int, int]  # forward input
    train_shape: tuple[int, int, int, int]  # training-step input
    repvgg: bool = False
    odconv: bool = False
    model: bool = False  # a whole-model row: int8 and torch-exported peer columns too


def _blocks(quick: bool) -> list[Case]:
    c, hw, b = (16, 16, 2) if quick else (64, 56, 8)
    shape = (b, c, hw, hw)
    return [
        Case("ACBlock 3x3", lambda: torch_ref.ACBlock(c, c, 3, padding=1),
             lambda: paddle_rep.ACBlock(c, c, 3, padding=1), shape, shape),
        Case("RepVGGBlock", lambda: torch_ref.RepVGGBlock(c, c, 3, padding=1),
             lambda: paddle_rep.RepVGGBlock(c, c, 3, padding=1), shape, shape, repvgg=True),
        Case("RepVGGBlock + SE", lambda: torch_ref.RepVGGBlock(c, c, 3, padding=1, use_se=True),
             lambda: paddle_rep.RepVGGBlock(c, c, 3, padding=1, use_se=True), shape, shape, repvgg=True),
        Case("ODConv2D k3 kn4", lambda: torch_ref.ODConv2d(c, c, 3, padding=1, kernel_num=4),
             lambda: paddle_rep.ODConv2D(c, c, 3, padding=1, kernel_num=4), shape, shape, odconv=True),
    ]


@dataclass(frozen=True)
class ModelRow:
    """One whole-model row: its name, the registry builder and its kwargs, and the columns only it gets."""

    row: str
    arch: str
    kwargs: dict = field(default_factory=dict)
    repvgg: bool = False  # RepVGGBlock models: the plain Paddle port columns
    odconv: bool = False  # ODConv's dygraph formulations


MODELS = [
    ModelRow("repvgg_a0", "repvgg_a0", repvgg=True),
    ModelRow("repvgg_b1g2", "repvgg_b1g2", repvgg=True),
    ModelRow("od_resnet18 1x", "od_resnet18"),
    ModelRow("od_resnet18 4x", "od_resnet18", {"kernel_num": 4}, odconv=True),
    ModelRow("od_mobilenetv2_100", "od_mobilenetv2_100"),
    ModelRow("acnet_resnet18", "acnet_resnet18"),
    # The newer families. QARepVGG's blocks are not RepVGGBlocks (no BN on the 1x1 and identity branches, one
    # after the sum), so the plain RepVGG port does not apply; MobileOne-S0 has no SE; DBB's deploy form is a
    # plain ResNet-18.
    ModelRow("qarepvgg_a0", "qarepvgg_a0"),
    ModelRow("mobileone_s0", "mobileone_s0"),
    ModelRow("dbb_resnet18", "dbb_resnet18"),
]
QUICK_MODELS = ("repvgg_a0", "od_resnet18 4x")  # --quick's model rows unless --models names others


def select_models(names: list[str] | None, quick: bool) -> list[ModelRow]:
    """The model rows to run: those named (exact row names, in MODELS' order), else the default set.

    Args:
        names: Row names from ``--models``; None for the default (every row, or ``QUICK_MODELS`` with quick).
        quick: Whether this is a ``--quick`` run.

    Returns:
        The selected rows.

    Raises:
        SystemExit: A name is not a row of MODELS.
    """
    known = [m.row for m in MODELS]
    if names is None:
        return [m for m in MODELS if not quick or m.row in QUICK_MODELS]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from {known}")
    return [m for m in MODELS if m.row in names]


def _models(rows: list[ModelRow], batch: int, size: int, train_batch: int, train_size: int) -> list[Case]:
    return [Case(m.row, lambda m=m: torch_ref.create_model(m.arch, **m.kwargs),
                 lambda m=m: create_model(m.arch, **m.kwargs), (batch, 3, size, size),
                 (train_batch, 3, train_size, train_size), repvgg=m.repvgg, odconv=m.odconv, model=True)
            for m in rows]


# --- measurements -----------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    shape: tuple
    times: dict[str, Timing] = field(default_factory=dict)
    diffs: dict[str, float] = field(default_factory=dict)
    memory: dict[str, int | None] = field(default_factory=dict)


def _torch_train_step(model: torch.nn.Module, x: np.ndarray, upstream: np.ndarray) -> Callable[[], None]:
    xt, up = torch.from_numpy(x), torch.from_numpy(upstream)
    return lambda: (torch_release_grads(model), torch_backward(model, xt, up))


def _paddle_train_step(model: nn.Layer, x: np.ndarray, upstream: np.ndarray) -> Callable[[], None]:
    xp, up = paddle.to_tensor(x), paddle.to_tensor(upstream)
    return lambda: (paddle_release_grads(model), paddle_backward(model, xp, up))


def run_case(case: Case, args: argparse.Namespace, workdir: Path) -> Row:
    rng = np.random.default_rng(0)
    tm = case.build_torch()
    randomize_bn(tm, rng)  # statistics far from the defaults, so the fused and unfused forms differ
    tm.eval()
    pm = case.build_paddle()
    missing, unexpected = pm.set_state_dict(interop.from_torch(tm.state_dict()))
    assert not missing and not unexpected, (missing, unexpected)
    pm.eval()
    x = rng.standard_normal(case.shape).astype("float32")
    xt, xp = torch.from_numpy(x), paddle.to_tensor(x)
    row = Row(case.name, case.shape)
    w, r = args.warmup, args.repeat
    tf = torch_ref.reparameterize_model(tm)
    pf = paddle_rep.reparameterize_model(pm)

    with torch.no_grad():
        ref = tf(xt).numpy()
        row.times["torch train-form"] = timeit(lambda: tm(xt), w, r)
        row.times["torch fused"] = timeit(lambda: tf(xt), w, r)
    with paddle.no_grad():
        row.diffs["paddle fused"] = relative_error(pf(xp).numpy(), ref)
        row.times["paddle train-form"] = timeit(lambda: pm(xp), w, r)
        row.times["paddle fused"] = timeit(lambda: pf(xp), w, r)
        if case.repvgg:
            plain, plain_fused = plain_port(pm), plain_port(pm, fused=pf)
            row.diffs["plain port fused"] = relative_error(plain_fused(xp).numpy(), ref)
            row.times["plain port train-form"] = timeit(lambda: plain(xp), w, r)
            row.times["plain port fused"] = timeit(lambda: plain_fused(xp), w, r)
    if not args.no_predictor:
        # The error is measured on a second input after the timed runs: a kernel that caches
        # something of its first call (as oneDNN's conv does with weights) shows there.
        x2 = rng.standard_normal(case.shape).astype("float32")
        with torch.no_grad():
            ref2 = tf(torch.from_numpy(x2)).numpy()
        stem = workdir / case.name.replace(" ", "_")
        onnx_backends = [b for b in args.backends if b != "paddle"]
        batch = case.shape[0]
        int8 = case.model and not args.no_int8 and bool(onnx_backends)
        # int8 times, not accuracy: random calibration inputs (docs/int8.md measures accuracy on trained models)
        calibration = rng.standard_normal((INT8_CALIBRATION, *case.shape[1:])).astype("float32") if int8 else None
        for key, fused in (("predictor (oneDNN)", True), ("predictor train-form", False)):
            files = export(pm, f"{stem}_{fused}", case.shape[1:], reparameterize=fused,
                           onnx=fused and bool(onnx_backends), fold_batch_sizes=sorted({1, batch}),
                           calibration=calibration if fused else None, int8_backends=onnx_backends)
            predictor = Predictor(files, use_onednn=True, threads=args.threads, fold=False)
            row.times[key] = timeit(lambda p=predictor: p(x), w, r)
            row.diffs[key.replace(" (oneDNN)", "")] = relative_error(predictor(x2), ref2)
            if fused and files.fold_paddle_files and "paddle" in args.backends:
                predictor_ = Predictor(files, threads=args.threads)  # fold programs, oneDNN off
                row.times["predictor fold"] = timeit(lambda p=predictor_: p(x), w, r)
                row.diffs["predictor fold"] = relative_error(predictor_(x2), ref2)
            if fused:
                for key_, predictor_ in _onnx_predictors(files, onnx_backends, batch, args.threads):
                    row.times[key_] = timeit(lambda p=predictor_: p(x), w, r)
                    row.diffs[key_] = relative_error(predictor_(x2), ref2)
        if int8:
            for key_, runner in _torch_peers(tf, case.shape, onnx_backends, calibration, stem, args.threads):
                row.times[key_] = timeit(lambda p=runner: p(x), w, r)
                row.diffs[key_] = relative_error(runner(x2), ref2)
    if case.odconv and not args.no_formulations:
        _odconv_variants(pm, xp, ref, row, w, r)
    if not args.no_train:
        xtt = rng.standard_normal(case.train_shape).astype("float32")
        with torch.no_grad():
            upstream = rng.standard_normal(tuple(tm(torch.from_numpy(xtt)).shape)).astype("float32")
        tm.train()
        pm.train()
        row.times["torch train step"] = timeit(_torch_train_step(tm, xtt, upstream), w, r)
        row.times["paddle train step"] = timeit(_paddle_train_step(pm, xtt, upstream), w, r)
        if case.repvgg:
            plain = plain_port(pm)
            row.times["plain port train step"] = timeit(_paddle_train_step(plain, xtt, upstream), w, r)
    return row


def _onnx_predictors(files: ExportedModel, backends: list[str], batch: int, threads: int):
    """The ONNX backends' predictors: the default path (ODConv's fold graph of this batch when the
    model has one); for ODConv models also the other ways of serving a batch (the batch-independent
    unfold graph, and the batch-1 fold graph run once per sample); int8 where the export has it."""
    for backend in backends:
        yield backend, Predictor(files, backend, threads)
        if files.int8 is not None:
            yield f"{backend} int8", Predictor(files, backend, threads, precision="int8")
        if backend == "openvino":
            bf16 = Predictor(files, backend, threads, precision="bf16")  # opt-in; f32 (and a warning) without bf16
            if bf16.precision == "bf16":
                yield BF16_COLUMN, bf16
        if files.fold_onnx_files:
            yield f"{backend} unfold", Predictor(files, backend, threads, fold=False)
            if batch > 1:
                one = ExportedModel(files.model_file, files.params_file, files.onnx_file,
                                    {1: files.fold_onnx_files[1]})
                yield f"{backend} fold b1 x{batch}", Predictor(one, backend, threads)


def _torch_peers(model: torch.nn.Module, shape: tuple, backends: list[str], calibration: np.ndarray, stem: Path,
                 threads: int):
    """What a torch user would deploy: the fused torch_ref model through ``torch.onnx.export`` (fixed batch),
    run by ONNX Runtime and OpenVINO in float32, and after NNCF's int8 with its defaults on that file."""
    import nncf
    import onnx
    from nncf.common.logging.logger import set_log_level

    from .quantize.ptq import _chunks, int8_runner

    set_log_level(logging.ERROR)
    onnx_file = f"{stem}_torch.onnx"
    with warnings.catch_warnings():  # the TorchScript exporter's deprecation note (onnxscript is not installed)
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(shape),), onnx_file, dynamo=False, opset_version=13, input_names=["x"])
    items = list(_chunks(calibration, shape[0], True))
    for backend in backends:
        yield f"torch-onnx {backend}", Predictor(_plain_export(onnx_file, shape), backend, threads)
        if backend == "onnxruntime":
            model_proto = onnx.shape_inference.infer_shapes(onnx.load(onnx_file))  # NNCF's ONNX graph needs dtypes
            try:
                with captured_output("nncf"):  # its progress bars print whatever the log level
                    quantized = nncf.quantize(model_proto, nncf.Dataset(items, lambda b: {"x": b}),
                                              subset_size=len(items))
            except AttributeError as error:  # an edge ONNX shape inference leaves untyped (ODConv's reshapes)
                logger.warning("NNCF cannot quantize the torch-exported %s for ONNX Runtime (%s): no peer int8 "
                               "column", onnx_file, error)
                continue
            int8_file = f"{stem}_torch.int8.onnx"
            onnx.save(quantized, int8_file)
        else:
            import openvino as ov

            with captured_output("nncf"):
                quantized = nncf.quantize(ov.Core().read_model(onnx_file), nncf.Dataset(items),
                                          subset_size=len(items))
            int8_file = f"{stem}_torch.int8.xml"
            ov.save_model(quantized, int8_file, compress_to_fp16=False)
        yield f"torch-onnx {backend} int8", int8_runner(int8_file, backend, threads)


def _plain_export(onnx_file: str, shape: tuple) -> ExportedModel:
    """An ``ExportedModel`` holding only a foreign ONNX file (for the Predictor's ONNX backends)."""
    return ExportedModel("", "", onnx_file, input_shape=tuple(shape[1:]), batch_size=shape[0])


def _odconv_variants(model: nn.Layer, xp: paddle.Tensor, ref: np.ndarray, row: Row, w: int, r: int) -> None:
    with paddle.no_grad():
        for variant in ODCONV_FORMULATIONS:
            with odconv_formulation(model, variant):
                row.diffs[f"odconv {variant}"] = relative_error(model(xp).numpy(), ref)
                row.memory[f"odconv {variant}"] = paddle_peak_bytes(lambda: model(xp))
                row.times[f"odconv {variant}"] = timeit(lambda: model(xp), w, r)


def run_convert(args: argparse.Namespace) -> list[dict]:
    from .bench_convert import run_variants

    return run_variants(args.convert_model, args.convert_repeat, None,
                               ["convert --arch"], echo=lambda s: print(s, flush=True))


# --- report -----------------------------------------------------------------------------------

FORWARD_COLUMNS = ["torch train-form", "torch fused", "paddle train-form", "paddle fused", "predictor train-form",
                   "predictor (oneDNN)", "plain port train-form", "plain port fused"]


def _ms(row: Row, key: str) -> str:
    t = row.times.get(key)
    return "" if t is None else f"{t.median * 1e3:.1f}"


def _ratio(row: Row, num: str, den: str) -> float | None:
    a, b = row.times.get(num), row.times.get(den)
    return None if a is None or b is None else a.median / b.median


def _fmt(value: float | None, suffix: str = "x") -> str:
    return "" if value is None else f"{value:.2f}{suffix}"


# The default path of each backend ("predictor fold": Paddle Inference on ODConv's fold programs, oneDNN off).
DEPLOY_BACKENDS = ["predictor (oneDNN)", "predictor fold", "onnxruntime", "openvino"]
BF16_COLUMN = "openvino bf16"  # the opt-in bf16 predictor: shown, never counted as the fastest float32 path
PEER = "torch-onnx "  # the official torch model through torch.onnx.export (+ NNCF int8): shown, never ours
INT8_CALIBRATION = 16  # random calibration samples for the int8 columns (timing only)


def _deploy_columns(rows: list[Row]) -> list[str]:
    present = {k for r in rows for k in r.times}
    extra = sorted(k for k in present if k.startswith(("onnxruntime ", "openvino ")) and not _is_int8(k))
    return [k for k in DEPLOY_BACKENDS if k in present] + extra


def best_deploy(row: Row) -> tuple[str, float] | None:
    """The fastest float32 deploy path and its ratio to torch fused (None without deploy figures).

    Every column is a path ``Predictor`` serves (``fold b1 xN`` is the default for a dynamic-batch
    export, ``unfold`` is ``fold=False``), so each one counts; the opt-in bf16 one is shown apart.
    """
    ratios = [(k, _ratio(row, k, "torch fused")) for k in _deploy_columns([row])
              if k != BF16_COLUMN and not _is_int8(k) and not k.startswith(PEER)]
    ratios = [(k, v) for k, v in ratios if v is not None]
    return min(ratios, key=lambda kv: kv[1]) if ratios else None


def _is_int8(column: str) -> bool:
    return column.endswith(" int8")


def best_int8(row: Row) -> tuple[str, float] | None:
    """The fastest of our int8 paths (not the torch-exported peers') and its ratio to torch fused."""
    ratios = [(k, _ratio(row, k, "torch fused")) for k in row.times if _is_int8(k) and not k.startswith(PEER)]
    ratios = [(k, v) for k, v in ratios if v is not None]
    return min(ratios, key=lambda kv: kv[1]) if ratios else None


def _render_deploy(rows: list[Row]) -> list[str]:
    columns = _deploy_columns(rows)
    if not columns:
        return []
    lines = ["", "### Deploy backends (eval forward of the exported fused model), ms (ratio to torch fused; "
             "max rel error on a second input)", "",
             "Backends: Paddle Inference with oneDNN (ODConv in the unfold form), and on ODConv's fold programs "
             "for this batch with oneDNN off (`predictor fold`); ONNX Runtime and OpenVINO "
             "(f32) on the paddle2onnx file, ODConv models on the batch-fold graph exported for this batch. "
             "`unfold`: the batch-independent graph; `fold b1 xN`: the batch-1 fold graph run once per sample; "
             "`openvino bf16`: the opt-in `precision='bf16'` (where the CPU has bf16; not counted as fastest).",
             "", "| case | input | torch fused | " + " | ".join(columns) + " | fastest / torch fused |",
             "|---|---|---:|" + "---:|" * (len(columns) + 1)]
    for row in rows:
        cells = []
        for key in columns:
            t = row.times.get(key)
            diff = row.diffs.get(key.replace(" (oneDNN)", ""))
            cells.append("" if t is None else f"{t.median * 1e3:.1f} ({_fmt(_ratio(row, key, 'torch fused'))}, "
                         f"{diff:.0e})")
        best = best_deploy(row)
        best_s = "" if best is None else f"**{best[1]:.2f}x** ({best[0].replace(' (oneDNN)', '')})"
        lines.append(f"| {row.name} | {'x'.join(map(str, row.shape))} | {_ms(row, 'torch fused')} | "
                     + " | ".join(cells) + f" | {best_s} |")
    return lines


INT8_COLUMNS = ["onnxruntime", "onnxruntime int8", "openvino", "openvino int8", "torch-onnx onnxruntime",
                "torch-onnx onnxruntime int8", "torch-onnx openvino", "torch-onnx openvino int8"]


def _render_int8(rows: list[Row]) -> list[str]:
    """The int8 table: our int8 per runtime next to float32, and the torch-exported peers in both precisions."""
    rows = [row for row in rows if any(_is_int8(k) for k in row.times)]
    if not rows:
        return []
    columns = [c for c in INT8_COLUMNS if any(c in row.times for row in rows)]
    lines = ["", "### int8 (model rows), ms (ratio to torch fused; max rel error on a second input)", "",
             "Ours: `export(..., calibration=...)` and `Predictor(..., precision='int8')` (per-channel weights, the "
             "default keep_float='auto': all int8 unless the stem and classifier must stay float, ODConv's "
             "per-input kernels float). Peers (`torch-onnx`): the fused torch_ref "
             "model through `torch.onnx.export`, float32 and after `nncf.quantize` with its defaults on that file. "
             "Random weights and calibration inputs: the errors show the runtimes compute, not int8 accuracy "
             "(docs/int8.md measures that on trained models).",
             "", "| case | input | torch fused | " + " | ".join(columns)
             + " | fastest int8 / torch fused | ours / peer int8, onnxruntime | ours / peer int8, openvino |",
             "|---|---|---:|" + "---:|" * (len(columns) + 3)]
    for row in rows:
        cells = []
        for key in columns:
            t = row.times.get(key)
            cells.append("" if t is None else f"{t.median * 1e3:.1f} ({_fmt(_ratio(row, key, 'torch fused'))}, "
                         f"{row.diffs.get(key, float('nan')):.0e})")
        best = best_int8(row)
        best_s = "" if best is None else f"**{best[1]:.2f}x** ({best[0]})"
        peers = [_fmt(_ratio(row, f"{b} int8", f"{PEER}{b} int8")) for b in ("onnxruntime", "openvino")]
        lines.append(f"| {row.name} | {'x'.join(map(str, row.shape))} | {_ms(row, 'torch fused')} | "
                     + " | ".join(cells) + f" | {best_s} | {peers[0]} | {peers[1]} |")
    return lines


def summary_table(rows: list[Row]) -> str:
    """The summary page's performance table: whole models, each backend's ratio to torch fused eager."""
    lines = ["| model, " + (f"batch {rows[0].shape[0]}, {rows[0].shape[2]}x{rows[0].shape[3]}" if rows else "")
             + " | torch fused | Paddle fused (dygraph) | Paddle Inference (oneDNN) | Paddle Inference, ODConv fold "
             "| ONNX Runtime | OpenVINO | fastest / torch | OpenVINO bf16 (opt-in; error) | fastest int8 / torch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    def cell(row: Row, key: str, error: bool = False) -> str:
        t = row.times.get(key)
        if t is None:
            return ""
        return f"{t.median * 1e3:.1f} ms ({_fmt(_ratio(row, key, 'torch fused'))}" + (
            f"; {row.diffs[key]:.0e})" if error else ")")

    for row in rows:
        best = best_deploy(row)
        lines.append(f"| {row.name} | {_ms(row, 'torch fused')} ms | {cell(row, 'paddle fused')} | "
                     f"{cell(row, 'predictor (oneDNN)')} | {cell(row, 'predictor fold')} | "
                     f"{cell(row, 'onnxruntime')} | {cell(row, 'openvino')} | "
                     + ("" if best is None else f"**{best[1]:.2f}x** {best[0].replace(' (oneDNN)', '')}")
                     + f" | {cell(row, BF16_COLUMN, error=True)} | {_best_int8_cell(row)} |")
    return "\n".join(lines) + "\n"


def _best_int8_cell(row: Row) -> str:
    best = best_int8(row)
    return "" if best is None else f"**{best[1]:.2f}x** {best[0]}"


TABLE_START, TABLE_END = "<!-- bench-table:start -->", "<!-- bench-table:end -->"


def update_summary_page(page: Path, table: str) -> None:
    """Replace the table between the bench markers in ``page`` (the markers must be there)."""
    text = page.read_text()
    if TABLE_START not in text or TABLE_END not in text:
        raise SystemExit(f"{page} has no {TABLE_START} ... {TABLE_END} markers")
    head, rest = text.split(TABLE_START, 1)
    tail = rest.split(TABLE_END, 1)[1]
    page.write_text(f"{head}{TABLE_START}\n{table}{TABLE_END}{tail}")


def render(rows: list[Row], convert: list[dict], meta: dict) -> str:
    lines = [f"Median of {meta['repeat']} runs after {meta['warmup']} warm-up, {meta['threads']} threads in both "
             f"frameworks ({meta['thread_call']}); {meta['machine']}; torch {torch.__version__}, "
             f"paddle {paddle.__version__}. Times in ms; ratios from the same run.", "",
             "### Forward (eval), ms", "",
             "| case | input | " + " | ".join(FORWARD_COLUMNS) + " | predictor / torch fused "
             "| paddle fused / torch fused | fusion speed-up torch | fusion speed-up paddle "
             "| fusion speed-up predictor | paddle / plain port "
             "(train-form, fused) | max rel diff vs torch fused |",
             "|---|---|" + "---:|" * (len(FORWARD_COLUMNS) + 7)]
    for row in rows:
        plain = (f"{_fmt(_ratio(row, 'paddle train-form', 'plain port train-form'))}, "
                 f"{_fmt(_ratio(row, 'paddle fused', 'plain port fused'))}") if "plain port fused" in row.times else ""
        diffs = ", ".join(f"{k} {v:.0e}" for k, v in row.diffs.items() if not k.startswith("odconv"))
        lines.append(f"| {row.name} | {'x'.join(map(str, row.shape))} | "
                     + " | ".join(_ms(row, c) for c in FORWARD_COLUMNS)
                     + f" | {_fmt(_ratio(row, 'predictor (oneDNN)', 'torch fused'))}"
                     f" | {_fmt(_ratio(row, 'paddle fused', 'torch fused'))}"
                     f" | {_fmt(_ratio(row, 'torch train-form', 'torch fused'))}"
                     f" | {_fmt(_ratio(row, 'paddle train-form', 'paddle fused'))}"
                     f" | {_fmt(_ratio(row, 'predictor train-form', 'predictor (oneDNN)'))} | {plain} | {diffs} |")
    lines += _render_deploy(rows)
    lines += _render_int8(rows)
    train_rows = [r for r in rows if "torch train step" in r.times]
    if train_rows:
        lines += ["", "### Training step (forward + backward, train mode), ms", "",
                  "| case | input | torch | paddle_rep | paddle / torch | plain port | paddle_rep / plain port |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for row in train_rows:
            lines.append(f"| {row.name} | {'x'.join(map(str, meta['train_shapes'][row.name]))} | "
                         f"{_ms(row, 'torch train step')} | {_ms(row, 'paddle train step')} | "
                         f"{_fmt(_ratio(row, 'paddle train step', 'torch train step'))} | "
                         f"{_ms(row, 'plain port train step')} | "
                         f"{_fmt(_ratio(row, 'paddle train step', 'plain port train step'))} |")
    od_rows = [r for r in rows if r.memory]
    if od_rows:
        lines += ["", "### ODConv formulations (Paddle dygraph forward, eval)", "",
                  "| case | formulation | ms | vs fold | peak allocated MiB | vs official | max rel diff |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for row in od_rows:
            fold, official = row.times["odconv fold"].median, row.memory.get("odconv official 6-D sum")
            for variant in ODCONV_FORMULATIONS:
                key = f"odconv {variant}"
                mem = row.memory.get(key)
                mem_s = "n/a" if mem is None else f"{mem / 2**20:.1f}"
                vs = "" if mem is None or not official else f"{mem / official:.2f}x"
                lines.append(f"| {row.name} | {variant} | {row.times[key].median * 1e3:.1f} | "
                             f"{row.times[key].median / fold:.2f}x | {mem_s} | {vs} | {row.diffs[key]:.0e} |")
    if convert:
        floor = convert[0]
        lines += ["", f"### Checkpoint conversion ({meta['convert_model']}, {floor['params_m']:.0f}M parameters, "
                  f"{floor['checkpoint_mib']:.0f} MiB; fresh process each, best of {meta['convert_repeat']})", "",
                  "| variant | s | vs floor | all runs, s | peak RSS MiB | vs floor |", "|---|---:|---:|---|---:|---:|"]
        for c in convert:
            lines.append(f"| {c['name']} | {c['seconds']:.2f} | {c['seconds'] / floor['seconds']:.2f}x | "
                         f"{', '.join(f'{s:.2f}' for s in c['runs'])} | {c['peak_rss_mb']:.0f} | "
                         f"{c['peak_rss_mb'] / floor['peak_rss_mb']:.2f}x |")
    return "\n".join(lines) + "\n"


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = {k for r in rows for k in r.times}
    series = ["torch train-form", "paddle fused"] + [k for k in [*DEPLOY_BACKENDS, BF16_COLUMN] if k in present]
    names = [r.name for r in rows]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(rows) + 1.8))
    height = 0.8 / len(series)
    for i, key in enumerate(series):
        values = [_ratio(r, key, "torch fused") or 0.0 for r in rows]
        ax.barh([y + i * height for y in range(len(rows))], values, height, label=key)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.axvline(0.6, color="grey", linestyle="--", linewidth=1, label="0.6x target (fastest deploy path)")
    ax.set_yticks([y + 0.4 - height / 2 for y in range(len(rows))], names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("forward time relative to torch_ref fused, eager (lower is faster; log scale)")
    ax.set_title("paddle-rep vs torch_ref, eval forward, same process and threads\n"
                 "(predictor = Paddle Inference; onnxruntime / openvino: exported ONNX)")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main -------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few repeats (a smoke run)")
    parser.add_argument("--out", type=Path, help="folder for bench.md/.png/.json (default docs/performance, "
                        "quick results/)")
    parser.add_argument("--summary-page", type=Path, help="page whose performance table (between the bench-table "
                        "markers) is rewritten (default docs/performance/index.md of the source checkout on a "
                        "full run with every case; never with --quick)")
    parser.add_argument("--no-summary-page", action="store_true", help="leave the summary page alone")
    parser.add_argument("--render", type=Path, metavar="BENCH_JSON",
                        help="time nothing: rebuild bench.md/.png from a saved bench.json into --out (default: "
                             "the JSON's folder), and the table of --summary-page when given")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"deploy backends to time, comma-separated (default {','.join(BACKENDS)})")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="threads for both frameworks")
    parser.add_argument("--repeat", type=int, help="timed runs per figure (default 5, quick 2)")
    parser.add_argument("--warmup", type=int, help="untimed runs first (default 2, quick 1)")
    parser.add_argument("--batch", type=int, help="model forward batch (default 8, quick 1)")
    parser.add_argument("--size", type=int, help="model input size (default 224, quick 32)")
    parser.add_argument("--train-batch", type=int, help="model training-step batch (default 4, quick 2)")
    parser.add_argument("--train-size", type=int, help="model training-step input size (default 160, quick 32)")
    parser.add_argument("--only", action="append", default=[], help="run only cases whose name contains this (a "
                        "substring: repvgg_a0 also matches qarepvgg_a0; --models picks model rows exactly)")
    parser.add_argument("--models", type=lambda text: [n.strip() for n in text.split(",") if n.strip()],
                        help="model rows to run, comma-separated exact row names (default: all, quick: "
                             f"{', '.join(QUICK_MODELS)}); e.g. --models qarepvgg_a0,mobileone_s0")
    parser.add_argument("--no-blocks", action="store_true", help="skip the single-block rows")
    parser.add_argument("--no-models", action="store_true", help="skip the whole-model rows")
    parser.add_argument("--no-train", action="store_true", help="skip training steps")
    parser.add_argument("--no-predictor", action="store_true", help="skip the exported predictor")
    parser.add_argument("--no-convert", action="store_true", help="skip the checkpoint conversion benchmark")
    parser.add_argument("--load", action="store_true",
                        help="run only the load benchmark (paddle_rep.apps.bench_load): images/s and p50/p99 "
                             "latency at concurrency 1, 2, 4 and in throughput mode, into OUT/load.{md,json}")
    parser.add_argument("--no-formulations", action="store_true", help="skip the ODConv dygraph formulations")
    parser.add_argument("--no-int8", action="store_true", help="skip the int8 and torch-exported peer columns "
                        "of the model rows")
    parser.add_argument("--convert-model", help="checkpoint for the conversion benchmark (default repvgg_b3, "
                        "quick rep_tiny)")
    parser.add_argument("--convert-repeat", type=int, help="conversion runs per variant, best kept (default 3)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quick = args.quick
    defaults = dict(repeat=(2, 5), warmup=(1, 2), batch=(1, 8), size=(32, 224), train_batch=(2, 4),
                    train_size=(32, 160), convert_model=("rep_tiny", "repvgg_b3"), convert_repeat=(1, 3))
    for name, (small, full) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    logging.basicConfig(level=logging.WARNING)
    # `import paddle` (above) set the root logger to INFO with a handler: third-party INFO lines
    # (matplotlib's font cache, ...) would reach the console.
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("paddle_rep").setLevel(logging.WARNING)
    if args.render is not None:
        return render_saved(args.render, args.out or args.render.parent,
                            None if args.no_summary_page else args.summary_page)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(args.backends) - set(BACKENDS))
    if unknown:
        raise SystemExit(f"--backends: unknown {unknown}; choose from {BACKENDS}")
    if args.out is None:
        args.out = Path("results") if quick else PERF_DOCS
    if args.load:
        from paddle_rep.apps.bench_load import render_load, run_load

        set_threads(args.threads)
        print(render_load(run_load(args)))
        return 0
    models = select_models(args.models, quick)
    full_run = not (quick or args.only or args.models is not None or args.no_models or args.no_blocks
                    or args.no_predictor or args.no_formulations)
    if args.summary_page is None and full_run and not args.no_summary_page:
        args.summary_page = PERF_DOCS / "index.md"
    thread_call = set_threads(args.threads)
    paddle.set_device("cpu")

    cases = ([] if args.no_blocks else _blocks(quick)) + (
        [] if args.no_models else _models(models, args.batch, args.size, args.train_batch, args.train_size))
    if args.only:
        cases = [c for c in cases if any(o in c.name for o in args.only)]
    started = time.perf_counter()
    # Conversion first: a child's peak RSS (ru_maxrss) starts from this process's RSS at spawn time.
    convert = [] if args.no_convert else run_convert(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            t0 = time.perf_counter()
            row = run_case(case, args, Path(tmp))
            rows.append(row)
            print(f"{case.name}: " + ", ".join(f"{k} {v}" for k, v in row.times.items())
                  + f"  [{time.perf_counter() - t0:.0f} s]", flush=True)
    meta = {"repeat": args.repeat, "warmup": args.warmup, "threads": args.threads, "thread_call": thread_call,
            "machine": f"{platform.machine()} CPU, {os.cpu_count()} cores", "convert_model": args.convert_model,
            "convert_repeat": args.convert_repeat, "train_shapes": {c.name: c.train_shape for c in cases},
            "seconds": time.perf_counter() - started}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench.json").write_text(json.dumps({"meta": meta, "convert": convert,
                                                     "rows": [_row_to_json(r) for r in rows]}, indent=1))
    text = write_report(rows, convert, meta, args.out, None if args.no_summary_page else args.summary_page)
    print(text)
    print(f"wrote {args.out / 'bench.md'}, {args.out / 'bench.png'} and {args.out / 'bench.json'} "
          f"in {time.perf_counter() - started:.0f} s")
    return 0


def _row_to_json(row: Row) -> dict:
    return {"name": row.name, "shape": row.shape, "diffs": row.diffs, "memory": row.memory,
            "times": {k: vars(v) for k, v in row.times.items()}}


def _row_from_json(data: dict) -> Row:
    return Row(data["name"], tuple(data["shape"]), {k: Timing(**v) for k, v in data["times"].items()},
               data["diffs"], data["memory"])


def write_report(rows: list[Row], convert: list[dict], meta: dict, out: Path, summary_page: Path | None) -> str:
    """Write bench.md and bench.png into ``out`` and, given ``summary_page``, its performance table."""
    text = render(rows, convert, meta)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.md").write_text(text)
    if rows:
        chart(rows, out / "bench.png")
    if summary_page is not None:
        update_summary_page(summary_page, summary_table([r for r in rows if r.shape[1] == 3]))
        print(f"updated the performance table in {summary_page}")
    return text


def render_saved(saved: Path, out: Path, summary_page: Path | None) -> int:
    """Rebuild a report from a run's bench.json (after a change to how results are shown)."""
    data = json.loads(saved.read_text())
    write_report([_row_from_json(r) for r in data["rows"]], data["convert"], data["meta"], out, summary_page)
    print(f"rebuilt {out / 'bench.md'} and {out / 'bench.png'} from {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
