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
from .canonical import is_counter
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


def _canonical(loaded: LoadedCheckpoint, report: ConversionReport) -> dict[str, np.ndarray]:
    """The checkpoint in canonical form (official torch names and layouts, ``num_batches_tracked`` included)."""
    path = loaded.path
    if loaded.framework == "torch":
        layout = detect_layout(list(loaded.state))
        report.layout = layout.name
        try:
            state, report.renamed = apply_layout(loaded.state, layout)
        except MappingError as err:
            raise CheckpointError(f"{path}: {err}", path=path) from err
        report.source_bfloat16 = list(loaded.bf16_keys)
        return state
    report.layout = OFFICIAL.name + " (Paddle names)"
    report.source_bfloat16 = [canonical.official_name(k) for k in loaded.bf16_keys]
    state = canonical.from_paddle_names(loaded.state)
    layout = detect_layout(list(state))  # a Paddle project's own names (PaddleClas's DBB ResNet-18)
    if layout is not OFFICIAL:
        report.layout = layout.name + " (Paddle names)"
        try:
            state, report.renamed = apply_layout(state, layout)
        except MappingError as err:
            raise CheckpointError(f"{path}: {err}", path=path) from err
    recorded = _recorded_counters(loaded.path)
    if recorded is None:
        report.num_batches_tracked_from = "default 0 (no sidecar describing this file)"
        return state
    report.num_batches_tracked_from = "source sidecar"
    for key in state:
        if is_counter(key) and key in recorded:
            state[key] = np.array(recorded[key], dtype=np.int64)
    return state


def _recorded_counters(path: str) -> dict[str, int] | None:
    sidecar = read_sidecar(path)
    if not sidecar or sidecar.get("output", {}).get("sha256") != sha256_file(path):
        return None
    return {k: int(v) for k, v in sidecar.get("num_batches_tracked", {}).items()}


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


# ---------------------------------------------------------------- check, fuse, verify: canonical in, canonical out


def _cast(state: Mapping[str, np.ndarray], dtype: str | None) -> dict[str, np.ndarray]:
    if dtype is None:
        return dict(state)
    return {k: v if is_counter(k) else v.astype(dtype, copy=False) for k, v in state.items()}


def _check(state: Mapping[str, np.ndarray], arch: str, model_args: Mapping[str, Any] | None,
           path: str) -> dict[str, Any]:
    """The model arguments (given and inferred); raises unless ``state`` fits ``arch`` strictly."""
    args = arch_mod.merge_model_args(arch_mod.infer_model_args(state, path), model_args, path)
    expected = canonical.official_shapes(arch_mod.expected_shapes(arch, args))
    arch_mod.check_state(canonical.weights_only(state), expected, arch, path)  # counters do not reach Paddle
    return args


def _work_dtype(state: Mapping[str, np.ndarray], dtype: str) -> str:
    """The dtype fusion and the self-check run in: float64 when asked for or kept, else float32."""
    floats = {v.dtype for k, v in state.items() if not is_counter(k)}
    keep64 = dtype == "keep" and floats == {np.dtype("float64")}
    return "float64" if dtype == "float64" or keep64 else "float32"


def _fuse(state: Mapping[str, np.ndarray], arch: str, model_args: Mapping[str, Any], work_dtype: str,
          path: str) -> dict[str, np.ndarray]:
    """The re-parameterized (deploy) form of ``state``, fused by the Paddle model of ``arch``."""
    from paddle_rep.reparam import reparameterize_model

    model = arch_mod.build_paddle_model(arch, model_args)
    model.to(dtype=work_dtype)
    missing, unexpected = canonical.load_paddle_model(model, state, work_dtype)
    if missing or unexpected:  # the strict check ran before: this would be a bug in the model zoo
        raise CheckpointError(f"{path}: Paddle model rejected keys: missing {missing}, unexpected {unexpected}")
    reparameterize_model(model, inplace=True)
    return canonical.paddle_model_state(model, counters=state)  # surviving BNs keep their counters


def _verify(arch: str, model_args: Mapping[str, Any], official: Mapping[str, np.ndarray],
            fused: Mapping[str, np.ndarray] | None, vdtype: str, input_size: int, names: str,
            report: ConversionReport, path: str) -> None:
    """Compare the Paddle model (and the fused ones) with the torch reference; raises when one is off."""
    if report.non_finite:
        raise VerificationError(
            f"{path}: the checkpoint itself holds non-finite values (NaN or Inf) in {len(report.non_finite)} "
            f"tensors ({', '.join(report.non_finite[:10])}{' ...' if len(report.non_finite) > 10 else ''}); "
            "outputs cannot be compared, nothing written")
    x = verify_mod.seeded_input(vdtype, input_size, channels=int(model_args.get("in_channels", 3)))
    reference = verify_mod.torch_outputs(arch, model_args, _cast(official, vdtype), x, path)
    pairs = [("paddle vs torch (eval)", official, False)]
    if fused is not None:
        pairs.append(("paddle fused vs torch (eval)", fused, True))
    results = []
    for what, state, is_fused in pairs:
        out = verify_mod.paddle_outputs(arch, model_args, _cast(state, vdtype), x, is_fused, path)
        results.append(verify_mod.compare(what, out, reference, vdtype))
    if names == "torch" and fused is not None:  # the written file holds torch's fused model
        out = verify_mod.torch_outputs(arch, model_args, _cast(fused, vdtype), x, path, fused=True)
        results.append(verify_mod.compare("torch fused (written) vs torch (eval)", out, reference, vdtype))
    for r in results:
        logger.info("verify %s", r)
    report.verify = [r.to_dict() for r in results]
    if not all(r.ok for r in results):
        raise VerificationError(f"{path}: verification failed, nothing written:\n  "
                                + "\n  ".join(str(r) for r in results), tuple(results))


# ---------------------------------------------------------------- write end: target names, dtype, container


def _bf16_keys(final: Mapping[str, np.ndarray], dtype: str, container: str, report: ConversionReport,
               dst: Path) -> frozenset[str]:
    """The canonical keys to store as bfloat16."""
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
    """read -> canonical -> check -> fuse -> verify -> map -> write; the middle steps see canonical form only."""
    loaded = read_checkpoint(src)
    path = loaded.path
    report = ConversionReport(str(src), str(dst), to, dtype, loaded.container, loaded.framework, "", loaded.unwrapped,
                              0, arch=arch, deploy=deploy)
    official = _canonical(loaded, report)
    _inspect(official, loaded, report)
    counters = {k: int(v) for k, v in official.items() if is_counter(k)}
    names = "paddle" if to == "paddle" else "torch"  # HDF5 holds official (torch) names

    fused = None
    if arch is not None:
        report.model_args = args = _check(official, arch, model_args, path)
        work_dtype = _work_dtype(official, dtype)
        if deploy:
            fused = _fuse(official, arch, args, work_dtype, path)
        if verify:
            size = input_size or verify_mod.default_input_size(arch)
            _verify(arch, args, official, fused, work_dtype, size, names, report, path)

    final = fused if fused is not None else official
    if layout is not None:
        try:
            final = to_layout(final, layout, deploy=fused is not None)
        except MappingError as err:
            raise CheckpointError(f"{path}: {err}", path=path) from err
        report.layout = f"{report.layout} -> {layout}"
    target = canonical.to_target(final, names, DTYPES[dtype], _bf16_keys(final, dtype, container, report, dst),
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
