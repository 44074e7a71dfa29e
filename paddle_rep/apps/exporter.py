"""Export a model for inference (``paddle_rep.export``; the module is not named ``export`` so the
package attribute stays the function): re-parameterize, trace to a static graph, save; optionally ONNX.

The saved model takes ``[batch, C, H, W]`` with a dynamic batch (and dynamic H/W where the
shape gives ``None``). Paddle 3 writes ``<path>.json`` + ``<path>.pdiparams``, Paddle 2.6
``<path>.pdmodel`` + ``<path>.pdiparams``. ODConv layers trace into their batch-independent
formulation (see :mod:`paddle_rep.odconv`). ONNX goes through ``paddle2onnx`` when installed.
A manifest (:mod:`.manifest`) lists what was written; :mod:`.predictor` runs the files.
"""

import argparse
import copy
import dataclasses
import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import paddle
from paddle import nn

from paddle_rep.core.errors import ExportError
from paddle_rep.core.numeric import relative_error
from paddle_rep.odconv import ODConv2D
from paddle_rep.reparam import reparameterize_model

from .console import captured_output, quiet_warnings
from .manifest import add_checks, manifest_path, write_manifest
from .optional import require
from .quantize.ptq import Int8Files

logger = logging.getLogger(__name__)

MODEL_SUFFIXES = (".json", ".pdmodel")  # Paddle 3 (PIR) first, then the legacy program
PARAMS_SUFFIX = ".pdiparams"


@dataclass(frozen=True)
class ExportedModel:
    """Files written by :func:`export`.

    ``onnx_file`` (None unless ONNX was asked for) is the batch-independent graph; ``fold_onnx_files``
    maps a batch size to an ONNX graph of that batch with ODConv's batch fold, ``fold_paddle_files``
    to the Paddle program (model file, params file) it came from (only for models with ODConv
    layers; see :func:`export`). ``input_shape`` is the exported ``(C, H, W)`` (None for a dynamic
    H/W), ``batch_size`` the fixed batch (None: dynamic): the predictors' input contract.
    ``manifest_file`` is ``PREFIX-manifest.json`` (see :mod:`paddle_rep.apps.manifest`). Fields
    left None (an instance made by hand) make the contract check only rank and dtype. ``int8``
    (None unless exported with calibration data) lists the int8 files per backend.
    """

    model_file: str
    params_file: str
    onnx_file: str | None = None
    fold_onnx_files: dict[int, str] = field(default_factory=dict)
    fold_paddle_files: dict[int, tuple[str, str]] = field(default_factory=dict)
    input_shape: tuple[int, int | None, int | None] | None = None
    batch_size: int | None = None
    manifest_file: str | None = None
    int8: Int8Files | None = None


# int8 from the ONNX graphs (export(..., onnx=True)); "paddle": Paddle Inference oneDNN int8 from the model
# itself (.quantize.paddle_int8), opt-in: not for ODConv or SE models under Paddle 3 (docs/int8.md).
ONNX_INT8_BACKENDS = ("onnxruntime", "openvino")
INT8_BACKENDS = (*ONNX_INT8_BACKENDS, "paddle")
def parse_input_shape(shape: str | Sequence) -> tuple[int, int | None, int | None]:
    """Parse the input shape of one sample.

    Args:
        shape: ``(C, H, W)`` as a sequence or a string ``"3,224,224"``; H/W may be None, -1 or "?" (dynamic).

    Returns:
        ``(C, H, W)`` as ints, H/W None where dynamic.

    Raises:
        ValueError: not three items, or C not a positive int, or H/W neither a positive int nor dynamic.
    """
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


def _check_batch(name: str, value, or_none: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int{' or None' if or_none else ''}, got {value!r}")


def _saved_model_file(prefix: str, since: float) -> str:
    written = [prefix + s for s in MODEL_SUFFIXES if Path(prefix + s).is_file()]
    fresh = [f for f in written if Path(f).stat().st_mtime >= since - 1.0]  # not a stale earlier export
    if not fresh:
        raise ExportError(f"paddle.jit.save wrote none of {[prefix + s for s in MODEL_SUFFIXES]}")
    return max(fresh, key=lambda f: Path(f).stat().st_mtime)


def _foldable(model: nn.Layer) -> list[ODConv2D]:
    # The 1x1, kernel_num=1 ODConv is a plain conv in every formulation: nothing to fold.
    return [m for m in model.sublayers(include_self=True)
            if isinstance(m, ODConv2D) and not (m.kernel_size == 1 and m.kernel_num == 1)]


def _save_static(model: nn.Layer, prefix: str, shape: list, dtype: str, input_name: str) -> ExportedModel:
    spec = paddle.static.InputSpec(shape, dtype, input_name)
    started = time.time()
    with quiet_warnings(), captured_output("paddle.jit.save"):
        static = paddle.jit.to_static(model, input_spec=[spec], full_graph=True)
        paddle.jit.save(static, prefix)
    return ExportedModel(_saved_model_file(prefix, started), prefix + PARAMS_SUFFIX)


def export(model: nn.Layer, path: str | Path, input_shape: str | Sequence, *, dtype: str = "float32",
           reparameterize: bool = True, onnx: bool = False, opset_version: int = 13,
           input_name: str = "x", batch_size: int | None = None,
           fold_batch_sizes: Sequence[int] | None = None, calibration: Any = None, calibration_size: int | None = None,
           int8_backends: Sequence[str] = ("onnxruntime", "openvino"), int8_options: Any = None) -> ExportedModel:
    """Save ``model`` as a Paddle inference model at the prefix ``path``; the model itself is untouched.

    A copy is fused with :func:`~paddle_rep.reparameterize_model` (skip with
    ``reparameterize=False``), put in eval mode and traced with ``full_graph=True`` for the input
    ``[None, *input_shape]``. With ``onnx=True`` also writes ``<path>.onnx`` through paddle2onnx,
    with the output's batch as dynamic as the input's, checked by ``onnx.checker``.

    ``batch_size`` fixes the batch dimension instead (for runtimes that want static shapes); the
    saved model then accepts only that batch size.

    ODConv: the Paddle model and ``<path>.onnx`` hold its unfold + batched-matmul form, never
    upstream's batch fold: the fold is a conv whose weights are computed per input, and Paddle's
    oneDNN conv kernel, in inference, caches the reordered weights of its first call and reuses
    them for every later input (measured: up to 33 % error on the second input). ONNX Runtime and
    OpenVINO run the fold correctly, and much faster, and so does Paddle Inference with oneDNN
    off; but its group count fixes the batch, so with ``onnx=True`` a model with ODConv layers also
    gets one fold graph per batch size in ``fold_batch_sizes`` (default: ``batch_size``, or 1):
    ``<path>.fold_b<N>.onnx`` and the Paddle program ``<path>.fold_b<N>`` it came from;
    :class:`~paddle_rep.apps.predictor.Predictor` serves any batch from them by splitting it into
    chunks of those sizes.

    int8: with ``calibration`` (and ``onnx=True``) every ONNX graph is also quantized for each of
    ``int8_backends`` (:func:`~paddle_rep.apps.quantize.ptq.quantize_exported`): ``<path>.int8.onnx``
    (ONNX Runtime, QDQ) and ``<path>.int8.xml``/``.bin`` (OpenVINO), and the same for each fold
    graph; ``Predictor(..., precision="int8")`` runs them. ``"paddle"`` in ``int8_backends`` (opt-in;
    ``onnx=True`` not needed for it alone) also writes ``<path>.int8.pdmodel``/``.pdiparams`` for Paddle
    Inference's oneDNN int8 (:func:`~paddle_rep.apps.quantize.paddle_int8.quantize_paddle`; not for
    models with ODConv or SE blocks: a :class:`QuantizationError`).

    Last, writes ``<path>-manifest.json``: every file with its size and sha256, the input contract,
    precisions, fold batch sizes, versions and the checks run (``onnx.checker`` on each ONNX file);
    :meth:`Predictor.load <paddle_rep.apps.predictor.Predictor.load>` reads it. Everything is
    written into a staging folder next to ``path`` and moved into place only once complete (the
    manifest last), so a failed export (bad calibration data, a converter or quantizer error)
    leaves an earlier export at ``path`` as it was.

    Args:
        model: the model (training or deploy form).
        path: output prefix, e.g. ``"out/model"``.
        input_shape: ``(C, H, W)`` of one sample (H/W may be None: dynamic) or ``"3,224,224"``.
        dtype: input dtype.
        reparameterize: fuse first.
        onnx: also write ONNX (needs paddle2onnx).
        opset_version: ONNX opset.
        input_name: the graph's input name.
        batch_size: fix the batch (None: dynamic).
        fold_batch_sizes: batch sizes of ODConv's fold graphs.
        calibration: int8 calibration data (an ndarray ``[N, C, H, W]``, a ``.npy`` file, a folder of
            images or an iterable of batches; see :func:`~paddle_rep.apps.quantize.load_calibration`).
        calibration_size: use the first N calibration samples (fewer available: a warning).
        int8_backends: which int8 files to write: ``"onnxruntime"``, ``"openvino"``, ``"paddle"``.
        int8_options: :class:`~paddle_rep.apps.quantize.Int8Options` (default: per-channel, first conv
            and classifier float).

    Returns:
        The written files (``int8`` set when calibrated).

    Raises:
        ValueError: a bad argument.
        CalibrationError: the calibration data is unusable (wrong shape, NaN/Inf, unreadable); raised
            before anything is written.
        QuantizationError: a quantizer failed (the earlier export at ``path`` stays).
        ExportError: tracing or ONNX conversion failed.
    """
    channels, height, width = parse_input_shape(input_shape)
    prefix = str(path)
    if not prefix or prefix.endswith(("/", *MODEL_SUFFIXES, PARAMS_SUFFIX, ".onnx")):
        raise ValueError(f"path is a file prefix such as 'out/model' (suffixes are added), got {prefix!r}")
    if batch_size is not None:
        _check_batch("batch_size", batch_size, or_none=True)
    if fold_batch_sizes is None:
        fold_batch_sizes = (batch_size or 1,)
    fold_batch_sizes = tuple(sorted(set(fold_batch_sizes)))
    for size in fold_batch_sizes:
        _check_batch("fold_batch_sizes item", size)
    int8_backends = tuple(int8_backends)
    if calibration is not None:
        for backend in int8_backends:
            if backend not in INT8_BACKENDS:
                raise ValueError(f"int8_backends items must be in {INT8_BACKENDS}, got {backend!r}")
        if not onnx and set(int8_backends) & set(ONNX_INT8_BACKENDS):
            raise ValueError("calibration= quantizes the ONNX graphs for onnxruntime and openvino: pass onnx=True "
                             "too (or int8_backends=('paddle',) for Paddle Inference int8 alone)")
        from .quantize.calibration import load_calibration  # checked before anything is written

        calibration = load_calibration(calibration, (channels, height, width), calibration_size)
    elif calibration_size is not None:
        raise ValueError("calibration_size needs calibration data (calibration=...)")
    if onnx:
        require("paddle2onnx", "ONNX export")  # fail before the slow part
        require("onnx", "ONNX export")
    final = Path(prefix)
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=final.parent, prefix=f".{final.name}.export-") as tmp:
        staged_prefix = str(Path(tmp) / final.name)
        staged, checks = _export_files(model, staged_prefix, (channels, height, width), dtype, reparameterize, onnx,
                                       opset_version, input_name, batch_size, fold_batch_sizes)
        int8 = None
        if calibration is not None:
            from .quantize.ptq import Int8Options

            options = int8_options or Int8Options()
            files = _quantize(model, staged, staged_prefix, calibration, int8_backends, options, reparameterize,
                              input_name)
            staged = dataclasses.replace(staged, int8=files)
            int8 = {"calibration_samples": len(calibration), "options": dataclasses.asdict(options),
                    "keep_float": files.keep_float}
        result = _move_export(staged, Path(tmp), final.parent)
    write_manifest(result, input_name, dtype, checks, int8)
    logger.info("saved inference model %s (input [%s, %s, %s, %s])", result.model_file, batch_size, channels, height,
                width)
    return result


def _quantize(model: nn.Layer, staged: ExportedModel, prefix: str, calibration: np.ndarray,
              backends: tuple[str, ...], options, reparameterize: bool, input_name: str) -> Int8Files:
    """The int8 files of :func:`export`: ``"paddle"`` from the model (first: it refuses ODConv models before
    the slow part), the ONNX backends from the ONNX graphs."""
    from .quantize import ptq

    plain, folds, keep_float = {}, {}, {}
    if "paddle" in backends:
        from .quantize.paddle_int8 import quantize_paddle

        fused = reparameterize_model(model, inplace=False) if reparameterize else copy.deepcopy(model)
        fused.eval()
        plain["paddle"], _ = quantize_paddle(fused, prefix + ".int8", staged.input_shape, calibration, options,
                                             staged.batch_size, input_name)
        folds["paddle"] = {}
    onnx_backends = tuple(backend for backend in backends if backend in ONNX_INT8_BACKENDS)
    if onnx_backends:
        files = ptq.quantize_exported(staged, calibration, onnx_backends, options)
        plain.update(files.onnx_file)
        folds.update(files.fold_files)
        keep_float.update(files.keep_float)
    return Int8Files(plain, folds, keep_float)


def _export_files(model: nn.Layer, prefix: str, shape: tuple, dtype: str, reparameterize: bool, onnx: bool,
                  opset_version: int, input_name: str, batch_size: int | None,
                  fold_batch_sizes: tuple[int, ...]) -> tuple[ExportedModel, list[dict]]:
    """Write the float files of :func:`export` at ``prefix``; returns them and the checks run."""
    channels, height, width = shape
    model = reparameterize_model(model, inplace=False) if reparameterize else copy.deepcopy(model)
    model.eval()
    foldable = _foldable(model)
    fold_model = copy.deepcopy(model) if onnx and foldable else None
    for layer in foldable:
        layer.formulation = "unfold"  # see export's docstring: the fold is wrong under oneDNN
    result = _save_static(model, prefix, [batch_size, channels, height, width], dtype, input_name)
    contract = dict(input_shape=(channels, height, width), batch_size=batch_size)
    if not onnx:
        return dataclasses.replace(result, **contract), []
    onnx_file = export_onnx(result, prefix + ".onnx", opset_version=opset_version)
    folds, paddle_folds = {}, {}
    if fold_model is not None:
        for layer in _foldable(fold_model):
            layer.formulation = "fold"
        for size in fold_batch_sizes:
            saved = _save_static(copy.deepcopy(fold_model), f"{prefix}.fold_b{size}", [size, channels, height, width],
                                 dtype, input_name)
            paddle_folds[size] = (saved.model_file, saved.params_file)
            folds[size] = export_onnx(saved, f"{prefix}.fold_b{size}.onnx", opset_version=opset_version)
    result = ExportedModel(result.model_file, result.params_file, onnx_file, folds, paddle_folds, **contract)
    checks = [{"name": f"onnx.checker {Path(file).name}", "passed": True, "figure": "full_check=True"}
              for file in (onnx_file, *folds.values())]
    return result, checks


def _move_export(staged: ExportedModel, stage: Path, folder: Path) -> ExportedModel:
    """Move every file of the staging folder into ``folder``; returns ``staged`` with the final paths."""
    for file in sorted(stage.iterdir(), key=lambda f: f.suffix == ".xml"):  # an OpenVINO .xml after its .bin
        if file.is_file():
            file.replace(folder / file.name)

    def moved(path: str) -> str:
        return str(folder / Path(path).name)

    int8 = staged.int8
    if int8 is not None:
        int8 = dataclasses.replace(int8, onnx_file={b: moved(f) for b, f in int8.onnx_file.items()},
                                   fold_files={b: {n: moved(f) for n, f in sizes.items()}
                                               for b, sizes in int8.fold_files.items()})
    return dataclasses.replace(
        staged, model_file=moved(staged.model_file), params_file=moved(staged.params_file),
        onnx_file=moved(staged.onnx_file) if staged.onnx_file else None,
        fold_onnx_files={n: moved(f) for n, f in staged.fold_onnx_files.items()},
        fold_paddle_files={n: (moved(m), moved(p)) for n, (m, p) in staged.fold_paddle_files.items()},
        manifest_file=str(manifest_path(folder / Path(staged.model_file).name.rsplit(".", 1)[0])), int8=int8)


def _fix_onnx_batch(model) -> None:
    """paddle2onnx declares the output batch as 1 when the input's is dynamic (ONNX Runtime then warns
    on every run): give every graph output the input's symbolic batch."""
    first = model.graph.input[0].type.tensor_type.shape.dim[0]
    if first.HasField("dim_value") and first.dim_value > 0:
        return  # a fixed batch: paddle2onnx's output shapes are right
    symbol = first.dim_param or "batch"
    first.dim_param = symbol
    for value in model.graph.output:
        dims = value.type.tensor_type.shape.dim
        if len(dims):
            dims[0].Clear()
            dims[0].dim_param = symbol


def _drop_unused_initializers(model) -> None:
    """paddle2onnx leaves constants no node reads (ONNX Runtime warns about each on load)."""
    graph = model.graph
    if any(attr.type in (attr.GRAPH, attr.GRAPHS) for node in graph.node for attr in node.attribute):
        return  # subgraphs may read outer constants: leave the graph as written
    used = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
    unused = [init for init in graph.initializer if init.name not in used]
    for init in unused:
        graph.initializer.remove(init)
    if unused:
        logger.debug("dropped %d unused ONNX initializers", len(unused))


def export_onnx(exported: ExportedModel, onnx_file: str | Path, opset_version: int = 13) -> str:
    """Convert a saved inference model to ONNX with paddle2onnx; returns the ONNX path.

    The file is written next to its final name and moved there only once ``onnx.checker`` accepts
    it, so a failed conversion leaves no partial file and keeps an earlier good one.

    Args:
        exported: the saved inference model (its ``model_file`` and ``params_file`` are read).
        onnx_file: where to write the ONNX file.
        opset_version: ONNX opset.

    Returns:
        The ONNX file's path.

    Raises:
        ExportError: paddle2onnx failed or wrote nothing, or ``onnx.checker`` rejects its model.
        MissingExportPackageError: paddle2onnx or onnx is not installed.
    """
    paddle2onnx = require("paddle2onnx", "ONNX export")
    onnx_lib = require("onnx", "ONNX export")
    onnx_file = Path(onnx_file)
    onnx_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=onnx_file.parent) as tmp:
        draft = Path(tmp) / onnx_file.name
        try:
            # optimize_tool="None": the default ("polygraphy") pip-installs packages during export.
            with quiet_warnings(), captured_output("paddle2onnx"):
                paddle2onnx.export(exported.model_file, exported.params_file, save_file=str(draft),
                                   opset_version=opset_version, optimize_tool="None")
        except Exception as error:  # paddle2onnx logs and swallows the real error, then fails later
            raise ExportError(f"paddle2onnx could not convert {exported.model_file}: {error}") from error
        if not draft.is_file():
            raise ExportError(f"paddle2onnx wrote no {onnx_file} (run with -vv for its log)")
        model = onnx_lib.load(str(draft))
        _fix_onnx_batch(model)
        _drop_unused_initializers(model)
        try:
            onnx_lib.checker.check_model(model, full_check=True)
        except onnx_lib.checker.ValidationError as error:
            raise ExportError(f"{onnx_file}: the ONNX model from paddle2onnx fails onnx.checker: {error}") from error
        onnx_lib.save(model, str(draft))
        draft.replace(onnx_file)
    logger.info("saved ONNX model %s (opset %d)", onnx_file, opset_version)
    return str(onnx_file)


# --- command line: ``paddle-rep export`` (registered in paddle_rep.apps.cli) -------------------------

def _parse_sizes(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(item) for item in text.split(","))
    except ValueError:
        raise ValueError(f"--fold-batch-sizes must be comma-separated ints, got {text!r}") from None


def check_backend(model: nn.Layer, exported: ExportedModel, backend: str, shape: tuple[int, ...],
                  threads: int | None = None, seed: int = 0, precision: str = "f32") -> float:
    """Compare an export run by a backend with the model it came from, on two seeded random inputs.

    Args:
        model: the exported model (a fused eval-mode copy is the reference; the model is not changed).
        exported: its export.
        backend: the :class:`~paddle_rep.apps.predictor.Predictor` backend.
        shape: the inputs' ``[N, C, H, W]``.
        threads: the runtime's thread count (None: its default).
        seed: seeds the inputs.
        precision: the predictor's precision.

    Returns:
        The largest relative error of ``backend`` against the model over the two inputs.
    """
    from .predictor import Predictor  # the predictor module imports this one

    fused = reparameterize_model(model, inplace=False)
    fused.eval()
    predictor = Predictor(exported, backend, threads, precision=precision)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(2):  # a runtime that caches its first call shows on the second input
        x = rng.standard_normal(shape).astype("float32")
        with paddle.no_grad():
            expected = fused(paddle.to_tensor(x)).numpy()
        actual = predictor(x)
        worst = max(worst, relative_error(actual, expected))
    return worst


def run_cli(args: argparse.Namespace) -> int:
    """Handler of ``paddle-rep export``; prints the written files, the --backend check and the int8 check.

    Each check is also recorded in the export's manifest.

    Args:
        args: the parsed ``paddle-rep export`` command line.

    Returns:
        The exit status, 0.

    Raises:
        ValueError: conflicting options (``--precision int8`` without an int8 backend or without
            ``--calibration``, ``--calibration`` without ``--precision int8``, ``--calibration-size`` without
            ``--calibration``), or a bad argument of :func:`export`.
        ExportError: the export failed, or the ``--backend`` check differs from the model by more than
            :data:`CHECK_TOLERANCES` (recorded in the manifest first).
        CalibrationError: the calibration data is unusable.
        QuantizationError: a quantizer failed.
    """
    from paddle_rep.models import create_model  # the model zoo is only needed by the command line

    from .convert import load_checkpoint

    backend = args.backend
    int8 = args.precision == "int8"
    if int8 and backend not in INT8_BACKENDS:
        raise ValueError(f"--precision int8 needs --backend onnxruntime, openvino or paddle, got --backend {backend}")
    if int8 and not args.calibration:
        raise ValueError("--precision int8 needs --calibration PATH (a folder of images or a .npy [N, C, H, W] "
                         "array of preprocessed samples)")
    if args.calibration and not int8:
        raise ValueError("--calibration is for --precision int8")
    if args.calibration_size is not None and not args.calibration:
        raise ValueError("--calibration-size needs --calibration PATH")
    kwargs = {} if args.num_classes is None else {"num_classes": args.num_classes}
    model = create_model(args.arch, **kwargs)
    if args.checkpoint:
        load_checkpoint(model, args.checkpoint)
    calibration = held_out = None
    if int8:
        from .quantize.calibration import family_preprocess, load_calibration

        data = load_calibration(args.calibration, parse_input_shape(args.input_shape), args.calibration_size,
                                family_preprocess(args.arch))
        calibration, held_out = split_held_out(data)
    result = export(model, args.out, args.input_shape, onnx=args.onnx or backend in ONNX_INT8_BACKENDS,
                    opset_version=args.opset, batch_size=args.batch_size,
                    fold_batch_sizes=_parse_sizes(args.fold_batch_sizes), calibration=calibration,
                    int8_backends=(backend,) if int8 else ONNX_INT8_BACKENDS)
    for file in manifest_files(result):
        print(file)
    if backend:
        channels, height, width = parse_input_shape(args.input_shape)
        shape = (args.batch_size or 2, channels, height or 64, width or 64)
        # bf16 rounding would hide a graph that is 1e-3 off: the graph is checked in f32 first.
        for precision in ("f32", "bf16") if args.precision == "bf16" else ("f32",):
            error = check_backend(model, result, backend, shape, args.threads, precision=precision)
            bound = CHECK_TOLERANCES[precision]
            print(f"{backend} {precision}: max rel diff {error:.1e} vs the model on two inputs of {list(shape)}")
            add_checks(result.manifest_file, [{"name": f"{backend} {precision} vs the model", "passed": error <= bound,
                                               "figure": f"max rel diff {error:.1e} (bound {bound:.0e})",
                                               "input": list(shape)}])
            if error > bound:
                raise ExportError(f"{backend} {precision} differs from the model by {error:.1e} (allowed {bound:.0e})")
    if int8:
        report = _check_int8_files(model, result, backend, held_out, args.threads)
        print(report.render())
        add_checks(result.manifest_file, [int8_check_record(report, len(calibration))])
    return 0


def _check_int8_files(model: nn.Layer, result: ExportedModel, backend: str, held_out: np.ndarray,
                      threads: int | None):
    """The CLI's int8 check: the ONNX int8 file against its float graph (with the per-layer table), or
    Paddle Inference's int8 predictor against the model itself."""
    from .quantize.report import check_int8, compare_outputs

    if backend != "paddle":
        return check_int8(result.onnx_file, result.int8.onnx_file[backend], backend, held_out, threads)
    from .predictor import Predictor

    predictor = Predictor(result, "paddle", threads=threads, precision="int8")
    chunks = [held_out[i:i + 8] for i in range(0, len(held_out), 8)]
    model.eval()
    with paddle.no_grad():
        expected = np.concatenate([model(paddle.to_tensor(chunk)).numpy() for chunk in chunks])
    return compare_outputs("paddle", expected, np.concatenate([predictor(chunk) for chunk in chunks]))


def split_held_out(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split calibration data for the CLI's int8 check: every 8th sample is held out.

    Args:
        data: ``[N, C, H, W]`` calibration samples.

    Returns:
        ``(calibration, held_out)``; both are ``data`` itself when there are fewer than 8 samples (the
        check then runs on seen data, with a warning).
    """
    if len(data) < 8:
        logger.warning("only %d calibration samples: the int8 check runs on the calibration data itself", len(data))
        return data, data
    held = np.zeros(len(data), bool)
    held[7::8] = True
    return np.ascontiguousarray(data[~held]), np.ascontiguousarray(data[held])


def int8_check_record(report: Any, calibration_samples: int) -> dict:
    """The manifest's record of an int8 check.

    Args:
        report: the :class:`~paddle_rep.apps.quantize.report.Int8Report`.
        calibration_samples: how many samples calibrated the int8 files.

    Returns:
        ``{"name", "passed", "figure", "held_out_samples", "calibration_samples", "layers"}``; ``passed`` is
        top-1 agreement >= :data:`INT8_AGREEMENT_WARN` (a failed record warns, the export stays).
    """
    return {"name": f"{report.backend} int8 vs f32", "passed": report.top1_agreement >= INT8_AGREEMENT_WARN,
            "figure": f"top-1 agreement {100 * report.top1_agreement:.2f} %, output rel. error max "
                      f"{report.max_rel_error:.2e} mean {report.mean_rel_error:.2e}",
            "held_out_samples": report.samples, "calibration_samples": calibration_samples,
            "layers": [{"name": layer.name, "op": layer.op,  # None: a layer left in float (no noise)
                        "sqnr_db": round(layer.sqnr_db, 2) if np.isfinite(layer.sqnr_db) else None}
                       for layer in report.layers]}


def manifest_files(result: ExportedModel) -> list[str]:
    """Every file of an export in the order the CLI prints them.

    Args:
        result: the export.

    Returns:
        The paths, the manifest last.
    """
    from .manifest import file_roles

    return [*file_roles(result).values(), result.manifest_file]


# The int8 check's record is marked failed (the export stays: int8 is lossy, the user decides) below this
# top-1 agreement with float32; the digits models measure >= 98 % (docs/int8.md).
INT8_AGREEMENT_WARN = 0.9
# f32: every runtime measured <= 2e-6 rel on the zoo (summation order); a wrong graph is >= 1e-3 off.
# bf16 (8 mantissa bits): measured <= 2.8e-2 on the zoo in OpenVINO (acnet_resnet50, random BN statistics).
CHECK_TOLERANCES = {"f32": 1e-4, "bf16": 5e-2}
