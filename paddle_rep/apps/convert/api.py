"""``convert_checkpoint``: torch / timm / mmpretrain / Paddle checkpoints to Paddle or torch files.

The pipeline is one straight line over one form (:mod:`.canonical`: official torch names and
layouts, numpy arrays): read safely (:mod:`.load`) -> canonical form (:mod:`.layouts` for other
projects' names, Paddle's names mapped back) -> strict check against ``arch`` (:mod:`.arch`) ->
fusion (``deploy``) -> self-check (:mod:`.verify`) -> target names and dtype, mapped once
(:func:`.canonical.to_target`) -> atomic write with a JSON sidecar (:mod:`.write`). A new file
format only adds a reader in :mod:`.load` and a writer in :mod:`.write`.

``num_batches_tracked`` has no Paddle counterpart. A torch -> Paddle conversion records each value
in the sidecar (``num_batches_tracked``); a Paddle -> torch conversion takes them back from the
source's sidecar when that sidecar describes this very file (its recorded output sha256 matches),
else sets 0. So torch -> Paddle -> torch returns every tensor bit for bit, the counters included.

bfloat16: sources holding bfloat16 are read as float32 (exact); ``dtype="bfloat16"`` rounds every
floating tensor to bfloat16 as torch does (round to nearest even, NaN stays NaN) and writes it to
``.pdparams`` (Paddle's uint16 arrays), ``.pth`` or ``.safetensors``; HDF5 has no bfloat16 type
(:class:`UnsupportedDtypeError`). ``dtype="keep"`` writes back as bfloat16 what was bfloat16.
Tensors holding NaN or Inf are named in a warning and in the sidecar (``non_finite``); ``verify``
refuses such a checkpoint, saying that the checkpoint itself holds them.
"""

import logging
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from paddle_rep.core.errors import CheckpointError, MappingError, UnsupportedDtypeError, VerificationError

from . import arch as arch_mod
from . import canonical
from . import verify as verify_mod
from .canonical import PaddleForm, is_counter
from .layouts import OFFICIAL, apply_layout, detect_layout, to_layout
from .load import LoadedCheckpoint, import_h5py, read_checkpoint, read_sidecar
from .write import (
    BF16_CONTAINERS,
    SIDECAR_FORMAT,
    container_for,
    sha256_file,
    sidecar_path,
    versions,
    write_outputs,
)

logger = logging.getLogger(__name__)

TARGETS = ("paddle", "torch", "hdf5")
BFLOAT16 = "bfloat16"
DTYPES: dict[str, str | None] = {"float32": "float32", "float64": "float64", "float16": "float16",
                                 BFLOAT16: "float32", "keep": None}  # bfloat16: rounded from float32 at the end
MAX_RECORDED_VALUES = 1024  # a non-weight entry up to this size is copied into the sidecar


@dataclass
class ConversionReport:
    """What a conversion read, did and wrote (also the body of the JSON sidecar)."""

    src: str
    dst: str
    to: str
    dtype: str
    source_format: str
    source_framework: str
    layout: str
    unwrapped: list[str]
    tensors: int
    renamed: int = 0
    dropped: list[str] = field(default_factory=list)
    transposed: list[str] = field(default_factory=list)
    arch: str | None = None
    model_args: dict[str, Any] = field(default_factory=dict)
    deploy: bool = False
    num_batches_tracked_from: str = "source"
    verify: list[dict[str, Any]] = field(default_factory=list)
    non_finite: list[str] = field(default_factory=list)  # source tensors holding NaN or Inf
    source_bfloat16: list[str] = field(default_factory=list)  # source tensors stored as bfloat16
    non_weight_entries: dict[str, Any] = field(default_factory=dict)  # e.g. ACNet's HDF5 ``deps``, not loaded
    source_sha256: str = ""
    output_sha256: str = ""
    seconds: float = 0.0

    @property
    def sidecar(self) -> str:
        return str(sidecar_path(self.dst))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# ---------------------------------------------------------------- read end: the source in canonical form


def _canonical(loaded: LoadedCheckpoint, report: ConversionReport) -> tuple[dict[str, np.ndarray], PaddleForm | None]:
    """The checkpoint in canonical form (official torch names and layouts, ``num_batches_tracked`` included).

    A source saved under Paddle's names also comes back as it was (its Paddle form), else None.
    """
    path = loaded.path
    if loaded.framework == "torch":
        layout = detect_layout(list(loaded.state))
        report.layout = layout.name
        try:
            state, report.renamed = apply_layout(loaded.state, layout)
        except MappingError as err:
            raise CheckpointError(f"{path}: {err}", path=path) from err
        report.source_bfloat16 = list(loaded.bf16_keys)
        return state, None
    report.layout = OFFICIAL.name + " (Paddle names)"
    try:
        state, form = canonical.from_paddle_names(loaded.state)
    except MappingError as err:
        raise CheckpointError(f"{path}: {err}", path=path) from err
    report.source_bfloat16 = [form.official_name(k) for k in loaded.bf16_keys]
    layout = detect_layout(list(state))  # a Paddle project's own names (PaddleClas's DBB ResNet-18)
    if layout is not OFFICIAL:
        report.layout = layout.name + " (Paddle names)"
        try:
            state, report.renamed = apply_layout(state, layout)
        except MappingError as err:
            raise CheckpointError(f"{path}: {err}", path=path) from err
        form = None  # its names were the other project's: the crossing to Paddle's comes later, once
    recorded = _recorded_counters(loaded.path)
    if recorded is None:
        report.num_batches_tracked_from = "default 0 (no sidecar describing this file)"
        return state, form
    report.num_batches_tracked_from = "source sidecar"
    for key in state:
        if is_counter(key) and key in recorded:
            state[key] = np.array(recorded[key], dtype=np.int64)
    return state, form


def _recorded_counters(path: str) -> dict[str, int] | None:
    sidecar = read_sidecar(path)
    if not sidecar or sidecar.get("output", {}).get("sha256") != sha256_file(path):
        return None
    return {k: int(v) for k, v in sidecar.get("num_batches_tracked", {}).items()}


def _to_paddle(official: Mapping[str, np.ndarray], path: str) -> PaddleForm:
    try:
        return canonical.to_paddle(official)
    except MappingError as err:
        raise CheckpointError(f"{path}: {err}; nothing was written", path=path) from err


def _inspect(state: Mapping[str, np.ndarray], loaded: LoadedCheckpoint, report: ConversionReport) -> None:
    """Refuse tensors of the wrong kind; record non-weight entries and non-finite tensors in the report."""
    path = loaded.path
    for key, value in state.items():
        ok = np.issubdtype(value.dtype, np.integer) if is_counter(key) else np.issubdtype(value.dtype, np.floating)
        if not ok:
            expected = "an integer counter" if is_counter(key) else "a floating-point tensor"
            raise CheckpointError(f"{path}: key {key!r} has dtype {value.dtype}, expected {expected}; "
                                  "nothing was written", path=path, key=key)
    report.non_weight_entries = _describe_extras(loaded.extras)
    if loaded.extras:
        logger.warning("%s: left out non-weight entries %s (recorded in the sidecar)", path, ", ".join(loaded.extras))
    report.non_finite = [k for k, v in state.items()
                         if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]
    if report.non_finite:
        logger.warning("%s: %d tensors hold NaN or Inf: %s", path, len(report.non_finite),
                       ", ".join(report.non_finite[:20]) + (" ..." if len(report.non_finite) > 20 else ""))


def _describe_extras(extras: Mapping[str, np.ndarray]) -> dict[str, Any]:
    out = {}
    for name, value in extras.items():
        entry: dict[str, Any] = {"shape": list(value.shape), "dtype": str(value.dtype)}
        if value.size <= MAX_RECORDED_VALUES and value.dtype.kind in "iufb":
            entry["values"] = value.tolist()
        out[name] = entry
    return out


# ---------------------------------------------------------------- check, fuse, verify: one Paddle model


def _cast(state: Mapping[str, np.ndarray], dtype: str | None) -> dict[str, np.ndarray]:
    if dtype is None:
        return dict(state)
    return {k: v if is_counter(k) else v.astype(dtype, copy=False) for k, v in state.items()}


def _model_args(state: Mapping[str, np.ndarray], model_args: Mapping[str, Any] | None, path: str) -> dict[str, Any]:
    """The model arguments: given ones plus those the checkpoint fixes (a contradiction is an error)."""
    return arch_mod.merge_model_args(arch_mod.infer_model_args(state, path), model_args, path)


def _check(official: Mapping[str, np.ndarray], form: PaddleForm | None, shapes: Mapping[str, tuple[int, ...]],
           arch: str, path: str) -> None:
    """The strict check, once: raises unless the checkpoint holds exactly the keys and shapes of the model.

    It compares ``form`` (the checkpoint under Paddle's names) with the model's ``shapes``. Only when
    they differ, or when no faithful Paddle form exists (``form`` is None: a torch-named key ends in a
    Paddle-only leaf), are the model's shapes put into canonical names, to list the faults under the
    checkpoint's own names.
    """
    if form is not None and canonical.fits(form, shapes):
        return
    arch_mod.check_state(canonical.weights_only(official), canonical.official_shapes(shapes), arch, path)
    arch_mod.check_state(form.state if form else {}, shapes, arch, path, layout="paddle")  # raises: they differ


def _work_dtype(state: Mapping[str, np.ndarray], dtype: str) -> str:
    """The dtype fusion and the self-check run in: float64 when asked for or kept, else float32."""
    floats = {v.dtype for k, v in state.items() if not is_counter(k)}
    keep64 = dtype == "keep" and floats == {np.dtype("float64")}
    return "float64" if dtype == "float64" or keep64 else "float32"


class _SelfCheck:
    """``verify``: outputs compared with the torch reference's on one seeded input; raises at :meth:`finish`."""

    def __init__(self, arch: str, model_args: Mapping[str, Any], official: Mapping[str, np.ndarray], dtype: str,
                 input_size: int, report: ConversionReport, path: str) -> None:
        if report.non_finite:
            raise VerificationError(
                f"{path}: the checkpoint itself holds non-finite values (NaN or Inf) in {len(report.non_finite)} "
                f"tensors ({', '.join(report.non_finite[:10])}{' ...' if len(report.non_finite) > 10 else ''}); "
                "outputs cannot be compared, nothing written")
        self.arch, self.model_args, self.dtype, self.report, self.path = arch, model_args, dtype, report, path
        self.x = verify_mod.seeded_input(dtype, input_size, channels=int(model_args.get("in_channels", 3)))
        self.reference = verify_mod.torch_outputs(arch, model_args, _cast(official, dtype), self.x, path)
        self.results: list[verify_mod.OutputComparison] = []

    def paddle(self, what: str, model) -> None:
        self.results.append(verify_mod.compare(what, verify_mod.paddle_outputs(model, self.x), self.reference,
                                               self.dtype))

    def torch(self, what: str, fused: Mapping[str, np.ndarray]) -> None:
        out = verify_mod.torch_outputs(self.arch, self.model_args, _cast(fused, self.dtype), self.x, self.path,
                                       fused=True)
        self.results.append(verify_mod.compare(what, out, self.reference, self.dtype))

    def finish(self) -> None:
        for r in self.results:
            logger.info("verify %s", r)
        self.report.verify = [r.to_dict() for r in self.results]
        if not all(r.ok for r in self.results):
            raise VerificationError(f"{self.path}: verification failed, nothing written:\n  "
                                    + "\n  ".join(str(r) for r in self.results), tuple(self.results))


def _arch_steps(arch: str, args: Mapping[str, Any], official: Mapping[str, np.ndarray], form: PaddleForm | None,
                deploy: bool, verify: bool, work_dtype: str, input_size: int, names: str,
                report: ConversionReport, path: str) -> dict[str, np.ndarray] | PaddleForm | None:
    """Check, verify, fuse and verify again, all on one Paddle model of ``arch``; returns the fused state or None.

    The fused state is a :class:`PaddleForm` for Paddle names, else canonical (one mapping back).
    """
    if not (deploy or verify):  # the check only: shapes of a model built without initialising it
        _check(official, form, arch_mod.expected_shapes(arch, args), arch, path)
        return None
    model = arch_mod.build_paddle_model(arch, args)
    model.to(dtype=work_dtype)
    _check(official, form, arch_mod.paddle_shapes(model), arch, path)
    missing, unexpected = canonical.load_paddle_model(model, form, work_dtype)
    if missing or unexpected:  # the strict check passed: this would be a bug in the model zoo
        raise CheckpointError(f"{path}: Paddle model rejected keys: missing {missing}, unexpected {unexpected}")
    check = _SelfCheck(arch, args, official, work_dtype, input_size, report, path) if verify else None
    if check:
        check.paddle("paddle vs torch (eval)", model)
    fused: dict[str, np.ndarray] | PaddleForm | None = None
    if deploy:
        from paddle_rep.reparam import reparameterize_model

        reparameterize_model(model, inplace=True)
        if check:
            check.paddle("paddle fused vs torch (eval)", model)
        if names == "paddle":
            fused = canonical.fused_form(model, form)
        else:  # the written file holds torch's fused model; surviving BNs keep their counters
            fused = canonical.paddle_model_state(model, counters=official)
            if check:
                check.torch("torch fused (written) vs torch (eval)", fused)
    if check:
        check.finish()
    return fused


# ---------------------------------------------------------------- write end: target names, dtype, container


def _bf16_keys(final: list[str], dtype: str, container: str, report: ConversionReport,
               dst: Path) -> frozenset[str]:
    """The canonical keys (of ``final``, the written ones) to store as bfloat16."""
    if dtype == BFLOAT16:
        return frozenset(k for k in final if not is_counter(k))
    if dtype == "keep" and container in BF16_CONTAINERS:
        return frozenset(report.source_bfloat16) & frozenset(final)
    if dtype == "keep" and report.source_bfloat16:
        logger.warning("%s: HDF5 has no bfloat16: %d bfloat16 tensors written as float32 (exact)", dst,
                       len(report.source_bfloat16))
    return frozenset()


def convert_checkpoint(src: str | Path, dst: str | Path, arch: str | None = None, deploy: bool = False,
                       verify: bool = False, to: str = "paddle", dtype: str = "float32",
                       model_args: Mapping[str, Any] | None = None, input_size: int | None = None,
                       progress: bool | None = None, layout: str | None = None) -> ConversionReport:
    """Convert the checkpoint ``src`` into ``dst`` (plus ``dst + '.json'``); see the module docstring.

    Without ``arch`` the conversion is a pure key/tensor mapping. With ``arch`` the state dict is
    checked strictly against ``paddle_rep.create_model(arch, **model_args)`` (arguments the checkpoint
    fixes are inferred, contradictions are errors); ``deploy`` writes the re-parameterized model;
    ``verify`` compares the Paddle model's eval outputs with the torch reference's on a seeded input
    of ``input_size`` pixels and raises :class:`VerificationError` above tolerance. Nothing is written
    when any step fails. ``dtype`` is float32, float64, float16, bfloat16 or "keep". ``to`` is "paddle",
    "torch" or "hdf5" (official names in ACNet's HDF5 layout; also chosen by an ``.hdf5``/``.h5`` ``dst``).
    ``layout`` writes another project's names (``layouts.WRITABLE``, e.g. "paddleclas-resnet18-dbb") instead
    of the official ones, after every check ran on the official names.
    """
    start = time.perf_counter()
    src, dst = Path(src), Path(dst)
    if to not in TARGETS:
        raise ValueError(f"to={to!r}: expected one of {TARGETS}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype={dtype!r}: expected one of {tuple(DTYPES)}")
    container = container_for(dst, to)
    if container == "hdf5":
        to = "hdf5"  # ACNet's layout: official (torch) names
    if dtype == BFLOAT16 and container not in BF16_CONTAINERS:
        raise UnsupportedDtypeError(f"destination {dst}: HDF5 has no bfloat16 type; write bfloat16 to .pdparams, "
                                    ".pth or .safetensors, or choose --dtype float32/float16 for HDF5")
    if arch is None and (deploy or verify or model_args):
        raise ValueError("deploy, verify and model arguments need an arch (--arch NAME)")
    if input_size is not None and input_size < 8:
        raise ValueError(f"input_size={input_size}: expected at least 8 pixels")
    if verify and dtype in ("float16", BFLOAT16):
        raise ValueError("verify compares float32 or float64 outputs; use dtype float32/float64 with verify")
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        raise ValueError(f"{dst}: the destination is the source file")
    if container == "hdf5":  # fail before any work, and import h5py before a later step imports paddle
        import_h5py("writing HDF5")

    # The source is hashed on a worker thread while it is read, converted and written.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as pool:
        source_sha256 = pool.submit(sha256_file, src)
        report = _convert(src, dst, arch, deploy, verify, to, dtype, model_args, input_size, progress,
                          container, source_sha256, layout)
    report.seconds = time.perf_counter() - start
    return report


def _convert(src: Path, dst: Path, arch: str | None, deploy: bool, verify: bool, to: str, dtype: str,
             model_args: Mapping[str, Any] | None, input_size: int | None, progress: bool | None,
             container: str, source_sha256: Future, layout: str | None = None) -> ConversionReport:
    """read -> canonical -> Paddle form (mapped once) -> check -> verify -> fuse -> verify -> cast -> write."""
    loaded = read_checkpoint(src)
    path = loaded.path
    report = ConversionReport(str(src), str(dst), to, dtype, loaded.container, loaded.framework, "", loaded.unwrapped,
                              0, arch=arch, deploy=deploy)
    official, form = _canonical(loaded, report)  # form: a Paddle source as it was, else None
    _inspect(official, loaded, report)
    counters = {k: int(v) for k, v in official.items() if is_counter(k)}
    names = "paddle" if to == "paddle" else "torch"  # HDF5 holds official (torch) names
    if form is None and (arch is not None or names == "paddle") and not canonical.paddle_leaf_keys(official):
        form = _to_paddle(official, path)  # the one crossing canonical -> Paddle

    final: dict[str, np.ndarray] | PaddleForm | None = None
    if arch is not None:
        report.model_args = args = _model_args(official, model_args, path)
        size = input_size or verify_mod.default_input_size(arch)
        final = _arch_steps(arch, args, official, form, deploy, verify, _work_dtype(official, dtype), size, names,
                            report, path)
    if final is None:  # a torch-named key ending in a Paddle-only leaf (no arch to refuse it) is mapped as it is
        final = official if names == "torch" else form or _to_paddle(official, path)
    if layout is not None:  # another project's names: renamed from the official ones, after every check
        official_final = (canonical.from_paddle_names(final.state)[0] if isinstance(final, PaddleForm) and deploy
                          else official)
        try:
            renamed = to_layout(official_final, layout, deploy=deploy)
        except MappingError as err:
            raise CheckpointError(f"{path}: {err}", path=path) from err
        report.layout = f"{report.layout} -> {layout}"
        final = renamed if names == "torch" else _to_paddle(renamed, path)
    final_keys = [final.official_name(k) for k in final.state] if isinstance(final, PaddleForm) else list(final)
    target = canonical.to_target(final, DTYPES[dtype], _bf16_keys(final_keys, dtype, container, report, dst),
                                 progress)
    report.dropped, report.transposed = target.dropped, target.transposed
    out = target.state
    report.tensors = len(out)
    if container == "hdf5":
        out.update(loaded.extras)  # ACNet's own files carry ``deps`` next to the weights

    def sidecar() -> dict[str, Any]:  # called after the state is written, when the source hash is ready
        report.source_sha256 = source_sha256.result()
        summary = {k: v for k, v in report.to_dict().items() if k not in ("output_sha256", "seconds")}
        return {"format": SIDECAR_FORMAT, **summary, "output": {"path": dst.name, "container": container},
                "num_batches_tracked": counters, "versions": versions()}

    report.output_sha256 = write_outputs(dst, out, container, to, sidecar)
    return report
