"""Run an exported model: :class:`Predictor` and its runtimes (Paddle Inference, ONNX Runtime, OpenVINO).

Guarantees, the same on every backend and precision (see docs/serving.md):

- **Thread safety.** A predictor may be called from any number of threads at once; each call gets
  the answer a single-threaded call gives. Each runtime's own mechanism, never one global lock:
  Paddle Inference runs each call on a predictor clone checked out of a pool (clones share the
  weights), OpenVINO on an infer request checked out of a pool (one request per call in flight),
  ONNX Runtime calls ``InferenceSession.run``, which is thread-safe. A pool grows to the largest
  number of calls in flight at once and keeps that many clones/requests until :meth:`Predictor.close`.
- **One input contract**, checked before the runtime sees the data (:class:`InputContract`):
  a ``numpy.ndarray`` of rank 4 ``[N, C, H, W]`` with the exported C (and H, W and N where the
  export fixed them); float32 as is, float16 and float64 converted to float32 (``astype``: float64
  values beyond float32's range become inf), every other dtype (integer, bool, complex) refused; a
  non-contiguous array is copied to a contiguous one. A violation raises
  :class:`~paddle_rep.core.errors.InputContractError` with the same message on every backend. An
  empty batch (N=0) returns an empty float32 result ``[0, *output dims]``. NaN and Inf are data:
  they pass through to the runtime unchecked.
"""

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import paddle

from paddle_rep.core.errors import InputContractError, ManifestError, PredictorClosedError, QuantizationError

from .console import captured_output
from .exporter import ExportedModel, _check_batch
from .manifest import load_manifest
from .optional import require

logger = logging.getLogger(__name__)

BACKENDS = ("paddle", "onnxruntime", "openvino")
# "bf16": bfloat16 convolutions and matmuls (8 mantissa bits; about 0.5x the f32 time where the
# CPU has native bf16), opt-in on OpenVINO. Paddle Inference's bf16 mode is left out: it failed on
# ODConv's unfold graphs (Paddle 3) or stayed f32 on RepVGG (Paddle 2.6), with no way to tell which.
# "int8": the export's int8 files (export(..., calibration=DATA)): ONNX Runtime and OpenVINO; Paddle Inference
# (oneDNN int8) where the export has its files (int8_backends including "paddle"; not for ODConv/SE models).
PRECISIONS = ("f32", "bf16", "int8")
CONVERTED_DTYPES = (np.dtype("float16"), np.dtype("float64"))  # converted to float32; float32 passes as is
DEFAULT_MANY_BATCH = 8  # predict_many's chunk of one large array when the export fixes no batch


def default_onednn(fold_program: bool) -> bool:
    """Paddle Inference's oneDNN setting for one graph kind when the caller leaves ``use_onednn`` None.

    On for every graph oneDNN runs correctly (5x faster on repvgg_a0: 106 ms against 532 ms at batch
    8, ~1e-6 relative difference from reordered float32 sums); off for ODConv's batch-fold programs,
    where oneDNN's conv caches the reordered weights of its first call and answers every later input
    with them (weights there are computed from the input).

    Args:
        fold_program: whether the graph is one of ODConv's batch-fold programs.

    Returns:
        Whether Paddle Inference runs the graph with oneDNN.
    """
    return not fold_program


@dataclass(frozen=True)
class InputContract:
    """What every backend accepts: ``[N, C, H, W]``; ``None`` fields are free (dynamic in the export)."""

    channels: int | None = None
    height: int | None = None
    width: int | None = None
    batch: int | None = None

    def check(self, x: Any) -> np.ndarray:
        """Check an input against the contract and convert it for the runtime.

        Args:
            x: the input batch, a ``numpy.ndarray`` ``[N, C, H, W]`` (anything else is refused).

        Returns:
            ``x`` as the contiguous float32 array the runtime gets (float16 and float64 converted).

        Raises:
            InputContractError: ``x`` is not an ndarray, has a refused dtype, is not of rank 4, or its C, H, W
                or N differ from the contract's fixed ones (N=0 always passes).
        """
        if not isinstance(x, np.ndarray):
            raise InputContractError(f"input: expected a numpy.ndarray [N, C, H, W], got {type(x).__name__}")
        if x.dtype != np.float32:
            if x.dtype not in CONVERTED_DTYPES:
                raise InputContractError(f"input dtype: expected float32 (float16 and float64 are converted), got "
                                         f"{x.dtype}; scale and normalize integer images to float first")
        if x.ndim != 4:
            raise InputContractError(f"input rank: expected 4 dims [N, C, H, W], got {x.ndim} (shape {x.shape})")
        n, c, h, w = x.shape
        if self.channels is not None and c != self.channels:
            raise InputContractError(f"input channels: expected C={self.channels}, got {c} (shape {x.shape})")
        fixed = (self.height, self.width)
        if any(f is not None and f != g for f, g in zip(fixed, (h, w), strict=True)):
            want = "x".join("?" if f is None else str(f) for f in fixed)
            raise InputContractError(f"input height x width: expected {want} (fixed at export), got {h}x{w} "
                                     f"(shape {x.shape})")
        if self.batch is not None and n not in (0, self.batch):
            raise InputContractError(f"input batch: expected N={self.batch} (fixed at export) or 0, got {n} "
                                     f"(shape {x.shape})")
        if x.dtype != np.float32:
            with np.errstate(over="ignore"):
                x = x.astype(np.float32)
        return np.ascontiguousarray(x)

    @classmethod
    def of(cls, exported: ExportedModel) -> "InputContract":
        """The export's input contract.

        Args:
            exported: the export.

        Returns:
            Its contract (rank and dtype only for an :class:`ExportedModel` made by hand without ``input_shape``).
        """
        if exported.input_shape is None:
            return cls(batch=exported.batch_size)
        channels, height, width = exported.input_shape
        return cls(channels, height, width, exported.batch_size)


def _check_int8(exported: ExportedModel, backend: str, fold: bool, use_onednn: bool | None, use_gpu: bool) -> None:
    """:class:`QuantizationError` unless ``exported`` has int8 files for ``backend`` (each graph it would run)."""
    if backend == "paddle":
        if use_gpu or use_onednn is False:
            raise ValueError("precision='int8' with backend='paddle' runs oneDNN's int8 kernels on the CPU: leave "
                             "use_gpu=False and use_onednn on")
        how = ("export with calibration data and the Paddle backend: paddle_rep.apps.export(model, path, input_shape, "
               "calibration=DATA, int8_backends=('paddle', ...)); models with ODConv or SE blocks cannot have "
               "Paddle int8 files under Paddle 3 (docs/int8.md, 'Paddle Inference int8'): use backend="
               "'onnxruntime' or 'openvino'")
    else:
        how = ("export with calibration data: paddle_rep.apps.export(model, path, input_shape, onnx=True, "
               "calibration=DATA), or paddle-rep export OUT --arch NAME --onnx --backend "
               f"{backend} --precision int8 --calibration PATH")
    files = exported.int8
    if files is None or backend not in files.onnx_file:
        have = "" if files is None else f" (it has int8 for {sorted(files.onnx_file)})"
        raise QuantizationError(f"precision='int8': the export {exported.model_file} has no {backend} int8 files"
                                f"{have}; {how}")
    folds = exported.fold_paddle_files if backend == "paddle" else exported.fold_onnx_files
    missing = set(folds) - set(files.fold_files.get(backend, {})) if fold else set()
    if missing:
        raise QuantizationError(f"precision='int8': the export has no {backend} int8 fold graphs for batch sizes "
                                f"{sorted(missing)}; {how}")


class _Pool:
    """Runtime objects handed to one call at a time; made on demand (``make``), so the pool grows to the
    largest number of calls in flight at once."""

    def __init__(self, make: Callable[[], object], first: object | None = None) -> None:
        self._make = make
        self._free = [] if first is None else [first]
        self._lock = threading.Lock()

    @contextlib.contextmanager
    def checkout(self) -> Iterator[object]:
        with self._lock:
            item = self._free.pop() if self._free else None
        if item is None:
            item = self._make()
        try:
            yield item
        finally:
            with self._lock:
                self._free.append(item)

    def clear(self) -> None:
        with self._lock:
            self._free.clear()


class _PaddleRunner:
    """Paddle Inference: one predictor, and a pool of its clones (shared weights), one per call in flight."""

    def __init__(self, model_file: str, params_file: str, threads: int | None, use_onednn: bool,
                 use_gpu: bool, int8: bool = False) -> None:
        config = paddle.inference.Config(model_file, params_file)
        if use_gpu:
            config.enable_use_gpu(256, 0)
        else:
            config.disable_gpu()
            if use_onednn:
                config.enable_mkldnn()
                if int8:  # the quantize_linear/dequantize_linear program becomes oneDNN int8 kernels
                    config.enable_mkldnn_int8()
            else:
                config.disable_mkldnn()
            if threads:
                config.set_cpu_math_library_num_threads(threads)
        config.disable_glog_info()
        # The int8 passes print their reports ("quantized 21 fused_conv2d ops") past glog, to the console.
        with captured_output("Paddle Inference's int8 passes") if int8 else contextlib.nullcontext():
            self._base = paddle.inference.create_predictor(config)
        self._clone_lock = threading.Lock()
        self._pool = _Pool(self._clone, first=self._base)

    def _clone(self):
        with self._clone_lock:
            return self._base.clone()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._pool.checkout() as predictor:
            (name,) = predictor.get_input_names()
            handle = predictor.get_input_handle(name)
            handle.reshape(list(x.shape))
            handle.copy_from_cpu(x)
            predictor.run()
            return predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()

    def close(self) -> None:
        self._pool.clear()
        self._base = None


class _OnnxRuntimeRunner:
    """ONNX Runtime: ``InferenceSession.run`` is thread-safe, so calls share one session."""

    def __init__(self, onnx_file: str, threads: int | None) -> None:
        ort = require("onnxruntime", "the onnxruntime backend")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are not actionable for a user
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(onnx_file, options, providers=["CPUExecutionProvider"])
        self._name = self._session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self._session.run(None, {self._name: x})[0]

    def close(self) -> None:
        self._session = None


class _OpenVINORunner:
    """OpenVINO: one compiled model, and a pool of its infer requests, one per call in flight (a request
    holds its input and output buffers: two calls on one request overwrite each other's)."""

    def __init__(self, onnx_file: str, threads: int | None, precision: str, hint: str = "LATENCY") -> None:
        ov = require("openvino", "the openvino backend")
        # Precision always explicit: on CPUs with bf16 OpenVINO's default is bf16 (4e-4 to 7e-3 off here).
        config = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        # OpenVINO reads the ONNX file: its Paddle frontend cannot read Paddle 3's .json programs.
        self._compiled = ov.Core().compile_model(onnx_file, "CPU", config)
        self._pool = _Pool(self._compiled.create_infer_request)
        self.optimal_requests = int(self._compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self._pool.checkout() as request:
            request.infer({0: x})
            return request.get_output_tensor(0).data.copy()

    def close(self) -> None:
        self._pool.clear()
        self._compiled = None


def _openvino_precision(precision: str) -> str:
    """``precision``, or "f32" (with a warning) where OpenVINO's CPU plugin has no kernels for it here."""
    ov = require("openvino", "the openvino backend")
    if precision.upper() in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):  # "BF16" needs avx512_bf16/AMX
        return precision
    logger.warning("precision=%r: this CPU has no %s kernels in OpenVINO; running f32", precision, precision)
    return "f32"


class Predictor:
    """An exported model behind one inference runtime: ``predictor(x) -> ndarray``; thread-safe.

    ``backend``: ``"paddle"`` (Paddle Inference, the default), ``"onnxruntime"`` or ``"openvino"``
    (both read the ONNX file; export with ``onnx=True``). ``threads`` sets the runtime's intra-op
    thread count per call (None: its default). For a model with ODConv layers every backend runs the
    exact batch-fold graphs of the export when it has them (``fold=False``: the unfold graph): a
    batch is split into chunks of the exported fold batch sizes, largest first, each graph's
    runtime built on first use.

    ``use_onednn`` (Paddle): None picks per graph (:func:`default_onednn`): on, except for ODConv's
    fold programs, where oneDNN's conv answers every input with the kernels of the first, so they
    always run without it. ``False`` turns it off everywhere (bitwise the dygraph model's sums).

    ``precision="bf16"`` (opt-in, ``"openvino"`` only) runs the convs and matmuls in bfloat16: about
    half the f32 time on CPUs with native bf16, at ~5e-3 relative error (the zoo, measured). Where
    the CPU has no bf16 the predictor runs f32 and warns; ``predictor.precision`` is what it runs.

    ``precision="int8"`` (``"onnxruntime"`` and ``"openvino"``) runs the int8 files that
    ``export(..., onnx=True, calibration=DATA)`` wrote, with the same graph choice (fold graphs split
    by batch), pools, input contract and thread safety as f32; parts the quantizer left float run in
    f32. With ``"paddle"`` it runs the ``.int8.pdmodel`` program of ``export(..., calibration=DATA,
    int8_backends=("paddle", ...))`` on Paddle Inference's oneDNN int8 kernels (CPU, oneDNN on; no
    ODConv or SE models: see docs/int8.md). Without int8 files it raises
    :class:`~paddle_rep.core.errors.QuantizationError` saying how to add them.

    Calls may come from any number of threads at once (see the module docstring for the guarantee
    and the input contract). :meth:`predict_many` keeps the runtime busy with several calls in
    flight; :meth:`close` (or ``with Predictor(...) as p:``) frees the runtimes. :meth:`load` builds a
    predictor from an export's manifest in a fresh process.

    Args:
        exported: the files of :func:`~paddle_rep.apps.exporter.export`.
        backend: ``"paddle"``, ``"onnxruntime"`` or ``"openvino"``.
        threads: the runtime's intra-op thread count per call (None: its default).
        use_onednn: Paddle Inference's oneDNN (None: per graph, :func:`default_onednn`).
        use_gpu: run Paddle Inference on the GPU.
        fold: run ODConv's batch-fold graphs where the export has them (False: the unfold graph).
        precision: ``"f32"``, ``"bf16"`` (OpenVINO) or ``"int8"``.

    Raises:
        ValueError: an unknown ``backend`` or ``precision``, ``threads`` not a positive int, ``"bf16"`` on a
            backend other than OpenVINO, an ONNX backend for an export without an ONNX file, or ``"int8"``
            on Paddle with ``use_gpu=True`` or ``use_onednn=False``.
        QuantizationError: ``precision="int8"`` and the export has no int8 files for ``backend`` (or for
            some of its fold graphs).
        MissingExportPackageError: the backend's runtime is not installed.
    """

    def __init__(self, exported: ExportedModel, backend: str = "paddle", threads: int | None = None, *,
                 use_onednn: bool | None = None, use_gpu: bool = False, fold: bool = True,
                 precision: str = "f32") -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
        if threads is not None:
            _check_batch("threads", threads, or_none=True)
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision == "bf16" and backend != "openvino":
            raise ValueError(f"precision='bf16' needs backend='openvino', got backend={backend!r} (ONNX Runtime's "
                             "CPU convs are f32; Paddle Inference's bf16 passes broke ODConv graphs)")
        if precision == "int8":
            _check_int8(exported, backend, fold, use_onednn, use_gpu)
        self.backend = backend
        self.contract = InputContract.of(exported)
        self._threads = threads
        self._use_gpu = use_gpu
        self._use_onednn = use_onednn
        self._runners: dict[tuple, Callable[[np.ndarray], np.ndarray]] = {}
        self._lock = threading.Lock()  # guards building runners (once per graph), never a call
        self._closed = False
        self._empty: dict[tuple[int, int], tuple[int, ...]] = {}
        self.precision = _openvino_precision(precision) if precision == "bf16" else precision
        # graphs: batch size (None: any) -> (key of the graph, is a fold program), largest first
        if backend == "paddle" and precision == "int8":
            model_file = exported.int8.onnx_file["paddle"]
            graphs = {exported.batch_size: ((model_file, str(Path(model_file).with_suffix(".pdiparams"))), False)}
        elif backend == "paddle":
            if fold and exported.fold_paddle_files:
                graphs = {size: (files, True) for size, files in exported.fold_paddle_files.items()}
            else:
                graphs = {exported.batch_size: ((exported.model_file, exported.params_file), False)}
        else:
            require("onnxruntime" if backend == "onnxruntime" else "openvino", f"the {backend} backend")
            if precision == "int8":
                files = exported.int8
                if fold and exported.fold_onnx_files:
                    graphs = {size: (file, True) for size, file in files.fold_files[backend].items()}
                else:
                    graphs = {exported.batch_size: (files.onnx_file[backend], False)}
            elif fold and exported.fold_onnx_files:
                graphs = {size: (file, True) for size, file in exported.fold_onnx_files.items()}
            elif exported.onnx_file is None:
                raise ValueError(f"the {backend} backend reads the ONNX file: export with onnx=True "
                                 f"(paddle-rep export --onnx); {exported.model_file} has none")
            else:
                graphs = {exported.batch_size: (exported.onnx_file, False)}
        self._folded = any(fold_program for _, fold_program in graphs.values())
        self._graphs = dict(sorted(graphs.items(), key=lambda item: -(item[0] or 0)))
        self._runner(next(iter(self._graphs)))  # build the first graph now: a broken file fails here

    @classmethod
    def load(cls, path: str | Path, backend: str = "paddle", precision: str = "f32", **kwargs: Any) -> "Predictor":
        """A predictor for the export whose manifest is ``path``.

        Every file the manifest lists is checked (present, same size and sha256) before a runtime
        reads it.

        Args:
            path: ``PREFIX-manifest.json`` or ``PREFIX``.
            backend: as for :class:`Predictor`.
            precision: as for :class:`Predictor`.
            **kwargs: passed to :class:`Predictor` (``threads``, ``use_onednn``, ``fold``, ...).

        Returns:
            The predictor.

        Raises:
            ManifestError: the manifest or a file it lists is missing, unreadable or edited (names it),
                or the export has no files for ``backend`` / ``precision``.
            ValueError: a bad argument (see :class:`Predictor`).
        """
        exported, manifest = load_manifest(path)
        available = manifest.get("precisions", {}).get(backend)
        if not available:
            raise ManifestError(f"{exported.manifest_file}: the export has no files for backend {backend!r} "
                                f"(it has {sorted(manifest.get('precisions', {}))}); export with onnx=True",
                                exported.manifest_file)
        if precision not in available:
            raise ManifestError(f"{exported.manifest_file}: backend {backend!r} offers precisions {available}, "
                                f"not {precision!r}", exported.manifest_file)
        return cls(exported, backend, precision=precision, **kwargs)

    def _runner(self, size: int | None, throughput: bool = False) -> Callable[[np.ndarray], np.ndarray]:
        key = (size, throughput)
        runner = self._runners.get(key)
        if runner is None:
            with self._lock:
                if self._closed:
                    raise PredictorClosedError("this Predictor is closed; build a new one")
                runner = self._runners.get(key)
                if runner is None:
                    runner = self._runners[key] = self._build(*self._graphs[size], throughput)
        return runner

    def _build(self, graph, fold_program: bool, throughput: bool) -> Callable[[np.ndarray], np.ndarray]:
        if self.backend == "paddle":
            onednn = default_onednn(fold_program) if self._use_onednn is None else self._use_onednn
            return _PaddleRunner(*graph, self._threads, onednn and not fold_program, self._use_gpu,
                                 int8=self.precision == "int8")
        if self.backend == "onnxruntime":
            return _OnnxRuntimeRunner(graph, self._threads)
        # int8: the IR carries the int8 ops; what the quantizer left float runs in f32 (not bf16)
        precision = "f32" if self.precision == "int8" else self.precision
        return _OpenVINORunner(graph, self._threads, precision, "THROUGHPUT" if throughput else "LATENCY")

    def _predict(self, x: np.ndarray, throughput: bool = False) -> np.ndarray:
        if self._closed:
            raise PredictorClosedError("this Predictor is closed; build a new one")
        x = self.contract.check(x)
        if len(x) == 0:
            return self._empty_result(x)
        if not self._folded:
            return self._runner(next(iter(self._graphs)), throughput)(x)
        outputs, start = [], 0
        while start < len(x):
            left = len(x) - start
            size = next((s for s in self._graphs if s <= left), None)
            if size is None:
                raise InputContractError(f"input batch: batch {len(x)} cannot be split into the exported fold batch "
                                         f"sizes {sorted(self._graphs)}; export with fold_batch_sizes including 1")
            outputs.append(self._runner(size, throughput)(x[start:start + size]))
            start += size
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    def _empty_result(self, x: np.ndarray) -> np.ndarray:
        """``[0, *output dims]``: the dims come from one zero batch of the smallest graph, once per H x W."""
        hw = x.shape[2:]
        if hw not in self._empty:
            smallest = min(self._graphs, key=lambda size: size or 1)
            probe = np.zeros((smallest or 1, *x.shape[1:]), np.float32)
            self._empty[hw] = self._runner(smallest)(probe).shape[1:]
        return np.zeros((0, *self._empty[hw]), np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The model's output for the batch ``x`` ``[N, C, H, W]`` (see the input contract).

        Raises:
            InputContractError: ``x`` breaks the input contract (the message names what was expected and what came).
            PredictorClosedError: :meth:`close` was called.
        """
        return self._predict(x)

    def predict_many(self, inputs: np.ndarray | Iterable[np.ndarray], batch_size: int | None = None,
                     workers: int | None = None) -> np.ndarray | list[np.ndarray]:
        """Throughput mode: run many batches with several calls in flight, results in order.

        Args:
            inputs: one large array ``[N, C, H, W]`` (cut into chunks of ``batch_size``; the result is one
                array ``[N, ...]``), or an iterable of batches (each run as one call; the result is a list).
            batch_size: chunk size for an array (default: the largest fold batch size, the export's fixed
                batch, or 8).
            workers: calls in flight (default: OpenVINO's optimal number of requests under its THROUGHPUT
                hint, else 2). OpenVINO runs them on a model compiled with the THROUGHPUT hint (built
                on first use, freed by :meth:`close`); Paddle on predictor clones; ONNX Runtime on its
                session.

        Returns:
            For an array, one array ``[N, ...]`` (an empty float32 ``[0, ...]`` for N=0); for an iterable, the
            list of the outputs of its batches, in order.

        Raises:
            InputContractError: an input breaks the contract (the first one, in order).
            ValueError: ``batch_size`` or ``workers`` is not a positive int.
            PredictorClosedError: :meth:`close` was called.
        """
        if batch_size is not None:
            _check_batch("batch_size", batch_size, or_none=True)
        if workers is not None:
            _check_batch("workers", workers, or_none=True)
        throughput = self.backend == "openvino"
        if workers is None:
            workers = max(2, self._runner(next(iter(self._graphs)), True).optimal_requests) if throughput else 2
        if isinstance(inputs, np.ndarray):
            whole = self.contract.check(inputs)
            if len(whole) == 0:
                return self._empty_result(whole)
            step = batch_size or next(iter(self._graphs)) or DEFAULT_MANY_BATCH
            batches: Iterable[np.ndarray] = (whole[i:i + step] for i in range(0, len(whole), step))
        else:
            batches = inputs
        results, pending = [], deque()
        with ThreadPoolExecutor(workers, thread_name_prefix="paddle-rep-predict") as pool:
            for batch in batches:
                pending.append(pool.submit(self._predict, batch, throughput))
                if len(pending) >= 2 * workers:
                    results.append(pending.popleft().result())
            results.extend(future.result() for future in pending)
        return np.concatenate(results) if isinstance(inputs, np.ndarray) else results

    def close(self) -> None:
        """Free the runtimes (weights, clones, infer requests); later calls raise :class:`PredictorClosedError`.

        Calls already running finish on the objects they hold. Closing twice is a no-op.
        """
        with self._lock:
            self._closed = True
            runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            runner.close()

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._runners)} graph(s) loaded"
        return f"Predictor(backend={self.backend!r}, precision={self.precision!r}, {state})"

