"""Export a model for inference (``paddle_rep.export``; the module is not named ``export`` so the
package attribute stays the function): re-parameterize, trace to a static graph, save; optionally ONNX.

The saved model takes ``[batch, C, H, W]`` with a dynamic batch (and dynamic H/W where the
shape gives ``None``). Paddle 3 writes ``<path>.json`` + ``<path>.pdiparams``, Paddle 2.6
``<path>.pdmodel`` + ``<path>.pdiparams``. ODConv layers trace into their batch-independent
formulation (see :mod:`paddle_rep.odconv`). ONNX goes through ``paddle2onnx`` when installed.
"""

import argparse
import copy
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import paddle
from paddle import nn

from .errors import ExportError, MappingError
from .odconv import ODConv2D
from .reparam import reparameterize_model

logger = logging.getLogger(__name__)

MODEL_SUFFIXES = (".json", ".pdmodel")  # Paddle 3 (PIR) first, then the legacy program
PARAMS_SUFFIX = ".pdiparams"


@dataclass(frozen=True)
class ExportedModel:
    """Files written by :func:`export`; ``onnx_file`` is None unless ONNX was asked for."""

    model_file: str
    params_file: str
    onnx_file: str | None = None


def parse_input_shape(shape: str | Sequence) -> tuple[int, int | None, int | None]:
    """``(C, H, W)`` from a sequence or a string ``"3,224,224"``; H/W may be None, -1 or "?" (dynamic)."""
    items = shape.split(",") if isinstance(shape, str) else list(shape)
    if len(items) != 3:
        raise ValueError(f"input_shape must be (C, H, W), got {shape!r}")
    dims = []
    for axis, item in zip("CHW", items, strict=True):
        text = str(item).strip().lower()
        if axis != "C" and (item is None or text in ("none", "?", "-1")):
            dims.append(None)
            continue
        if isinstance(item, bool) or not text.isdigit() or int(text) < 1:
            raise ValueError(f"input_shape {axis} must be a positive int{'' if axis == 'C' else ' or None'}, "
                             f"got {item!r} in {shape!r}")
        dims.append(int(text))
    return dims[0], dims[1], dims[2]


def _saved_model_file(prefix: str, since: float) -> str:
    written = [prefix + s for s in MODEL_SUFFIXES if Path(prefix + s).is_file()]
    fresh = [f for f in written if Path(f).stat().st_mtime >= since - 1.0]  # not a stale earlier export
    if not fresh:
        raise ExportError(f"paddle.jit.save wrote none of {[prefix + s for s in MODEL_SUFFIXES]}")
    return max(fresh, key=lambda f: Path(f).stat().st_mtime)


def export(model: nn.Layer, path: str | Path, input_shape: str | Sequence, *, dtype: str = "float32",
           reparameterize: bool = True, onnx: bool = False, opset_version: int = 13,
           input_name: str = "x", batch_size: int | None = None) -> ExportedModel:
    """Save ``model`` as a Paddle inference model at the prefix ``path``; the model itself is untouched.

    A copy is fused with :func:`~paddle_rep.reparameterize_model` (skip with
    ``reparameterize=False``), put in eval mode and traced with ``full_graph=True`` for the input
    ``[None, *input_shape]``. With ``onnx=True`` also writes ``<path>.onnx`` through paddle2onnx.

    ``batch_size`` fixes the batch dimension instead (for runtimes that want static shapes); the
    saved model then accepts only that batch size.

    ODConv layers always trace their unfold + matmul form, never upstream's batch fold: the
    fold is a conv whose weights are computed per input, and Paddle's oneDNN conv kernel, in
    inference, caches the reordered weights of its first call and reuses them for every later
    input (measured: 9e-4 to 2e-3 relative error on the second input of od_resnet18).
    """
    channels, height, width = parse_input_shape(input_shape)
    prefix = str(path)
    if not prefix or prefix.endswith(("/", *MODEL_SUFFIXES, PARAMS_SUFFIX, ".onnx")):
        raise ValueError(f"path is a file prefix such as 'out/model' (suffixes are added), got {prefix!r}")
    if onnx:
        _import_paddle2onnx()  # fail before the slow part
    model = reparameterize_model(model, inplace=False) if reparameterize else copy.deepcopy(model)
    model.eval()
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None, got {batch_size!r}")
    for layer in model.sublayers(include_self=True):
        if isinstance(layer, ODConv2D):
            layer.formulation = "unfold"  # see the docstring: the fold is wrong under oneDNN
    spec = paddle.static.InputSpec([batch_size, channels, height, width], dtype, input_name)
    static = paddle.jit.to_static(model, input_spec=[spec], full_graph=True)
    Path(prefix).parent.mkdir(parents=True, exist_ok=True)
    started = time.time()
    paddle.jit.save(static, prefix)
    result = ExportedModel(_saved_model_file(prefix, started), prefix + PARAMS_SUFFIX)
    logger.info("saved inference model %s (input [%s, %s, %s, %s])", result.model_file, batch_size, channels, height,
                width)
    if onnx:
        result = ExportedModel(result.model_file, result.params_file,
                               export_onnx(result, prefix + ".onnx", opset_version=opset_version))
    return result


def _import_paddle2onnx():
    try:
        import paddle2onnx
    except ImportError as error:
        # An ImportError (not ExportError), so the CLI exits 6 like every other missing optional package.
        raise ImportError("ONNX export needs paddle2onnx: pip install 'paddle-rep[onnx]'") from error
    return paddle2onnx


def export_onnx(exported: ExportedModel, onnx_file: str | Path, opset_version: int = 13) -> str:
    """Convert a saved inference model to ONNX with paddle2onnx; returns the ONNX path."""
    paddle2onnx = _import_paddle2onnx()
    onnx_file = str(onnx_file)
    started = time.time()
    try:
        # optimize_tool="None": the default ("polygraphy") pip-installs packages during export.
        paddle2onnx.export(exported.model_file, exported.params_file, save_file=onnx_file,
                           opset_version=opset_version, optimize_tool="None")
    except Exception as error:  # paddle2onnx logs and swallows the real error, then fails later
        raise ExportError(f"paddle2onnx could not convert {exported.model_file}: {error}") from error
    if not Path(onnx_file).is_file() or Path(onnx_file).stat().st_mtime < started - 1.0:
        raise ExportError(f"paddle2onnx wrote no {onnx_file} (see its log above)")
    logger.info("saved ONNX model %s (opset %d)", onnx_file, opset_version)
    return onnx_file


class Predictor:
    """A ``paddle.inference`` predictor for one exported model: ``predictor(x) -> ndarray``."""

    def __init__(self, exported: ExportedModel, use_onednn: bool = False, threads: int | None = None,
                 use_gpu: bool = False) -> None:
        config = paddle.inference.Config(exported.model_file, exported.params_file)
        if use_gpu:
            config.enable_use_gpu(256, 0)
        else:
            config.disable_gpu()
            # oneDNN reorders float32 sums (~3e-6 abs on small nets); off by default for exactness.
            if use_onednn:
                config.enable_mkldnn()
            else:
                config.disable_mkldnn()
            if threads:
                config.set_cpu_math_library_num_threads(threads)
        config.disable_glog_info()
        self._predictor = paddle.inference.create_predictor(config)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        (name,) = self._predictor.get_input_names()
        handle = self._predictor.get_input_handle(name)
        handle.reshape(list(x.shape))
        handle.copy_from_cpu(np.ascontiguousarray(x))
        self._predictor.run()
        return self._predictor.get_output_handle(self._predictor.get_output_names()[0]).copy_to_cpu()


# --- command line: ``paddle-rep export`` (registered in paddle_rep.cli) -------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``paddle-rep export`` (run by :func:`run_cli`)."""
    parser.add_argument("out", help="output prefix, e.g. exported/repvgg_a0")
    parser.add_argument("--arch", required=True, help="model name (see `paddle-rep list`)")
    parser.add_argument("--checkpoint", help="Paddle state dict (.pdparams) of the unfused model")
    parser.add_argument("--input-shape", default="3,224,224",
                        help="C,H,W of one sample; H or W may be '?' for a dynamic size (default 3,224,224)")
    parser.add_argument("--num-classes", type=int, help="passed to the model builder")
    parser.add_argument("--batch-size", type=int, help="fix the batch (default dynamic)")
    parser.add_argument("--onnx", action="store_true", help="also write OUT.onnx (needs paddle2onnx)")
    parser.add_argument("--opset", type=int, default=13, help="ONNX opset (default 13)")


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``paddle-rep export``; prints the written files."""
    from .models import create_model  # the model zoo is only needed by the command line

    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    model = create_model(args.arch, **kwargs)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    result = export(model, args.out, args.input_shape, onnx=args.onnx, opset_version=args.opset,
                    batch_size=args.batch_size)
    for file in (result.model_file, result.params_file, result.onnx_file):
        if file:
            print(file)
    return 0


def load_checkpoint(model: nn.Layer, checkpoint: str | Path) -> None:
    """Load a ``.pdparams`` state dict strictly (every key must match), without running pickled code."""
    from .convert.load import read_checkpoint  # restricted unpickler: checkpoints are untrusted

    loaded = read_checkpoint(checkpoint)
    state = loaded.state
    if loaded.framework != "paddle":
        from . import interop

        state = interop.from_torch(state, dtype=None)
    missing, unexpected = model.set_state_dict(state)
    if missing or unexpected:
        raise MappingError(f"{checkpoint} does not fit the model: missing {sorted(missing)[:10]}, "
                           f"unexpected {sorted(unexpected)[:10]}")
