"""``convert_checkpoint``: torch / timm / mmpretrain / Paddle checkpoints to Paddle or torch files.

Pipeline: read safely (:mod:`.load`) -> official torch names and layouts (:mod:`.layouts`, or
``interop.to_torch`` for a Paddle source) -> optional architecture check, fusion and self-check
(:mod:`.arch`, :mod:`.verify`) -> target names and dtype (``interop.from_torch``) -> atomic write
with a JSON sidecar (:mod:`.write`).

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
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from .. import interop
from ..errors import CheckpointError, MappingError, UnsupportedDtypeError, VerificationError
from . import arch as arch_mod
from . import verify as verify_mod
from .bf16 import float32_to_bfloat16_bits
from .layouts import OFFICIAL, apply_layout, detect_layout
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
NBT = interop.NUM_BATCHES_TRACKED


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


def _leaf(key: str) -> str:
    return key.rpartition(".")[2]


def _to_official(loaded: LoadedCheckpoint, report: ConversionReport) -> dict[str, np.ndarray]:
    """The checkpoint under official torch names and layouts (``num_batches_tracked`` included)."""
    path = loaded.path
    if loaded.framework == "torch":
        layout = detect_layout(list(loaded.state))
        report.layout = layout.name
        try:
            state, report.renamed = apply_layout(loaded.state, layout)
        except MappingError as err:
            raise CheckpointError(f"{path}: {err}", path=path) from err
        return state
    report.layout = OFFICIAL.name + " (Paddle names)"
    state = interop.to_torch(loaded.state, dtype=None, num_batches_tracked=0)
    recorded = _recorded_counters(loaded.path)
    if recorded is None:
        report.num_batches_tracked_from = "default 0 (no sidecar describing this file)"
        return state
    report.num_batches_tracked_from = "source sidecar"
    for key in state:
        if _leaf(key) == NBT and key in recorded:
            state[key] = np.array(recorded[key], dtype=np.int64)
    return state


def _recorded_counters(path: str) -> dict[str, int] | None:
    sidecar = read_sidecar(path)
    if not sidecar or sidecar.get("output", {}).get("sha256") != sha256_file(path):
        return None
    return {k: int(v) for k, v in sidecar.get("num_batches_tracked", {}).items()}


def _check_dtypes(state: Mapping[str, np.ndarray], path: str) -> None:
    for key, value in state.items():
        ok = np.issubdtype(value.dtype, np.integer) if _leaf(key) == NBT else np.issubdtype(value.dtype, np.floating)
        if not ok:
            expected = "an integer counter" if _leaf(key) == NBT else "a floating-point tensor"
            raise CheckpointError(f"{path}: key {key!r} has dtype {value.dtype}, expected {expected}; "
                                  "nothing was written", path=path, key=key)


def _cast(state: Mapping[str, np.ndarray], dtype: str | None) -> dict[str, np.ndarray]:
    if dtype is None:
        return dict(state)
    return {k: v if _leaf(k) == NBT else v.astype(dtype, copy=False) for k, v in state.items()}


def _non_finite(state: Mapping[str, np.ndarray]) -> list[str]:
    return [k for k, v in state.items() if np.issubdtype(v.dtype, np.floating) and not np.isfinite(v).all()]


def _describe_extras(extras: Mapping[str, np.ndarray]) -> dict[str, Any]:
    out = {}
    for name, value in extras.items():
        entry: dict[str, Any] = {"shape": list(value.shape), "dtype": str(value.dtype)}
        if value.size <= MAX_RECORDED_VALUES and value.dtype.kind in "iufb":
            entry["values"] = value.tolist()
        out[name] = entry
    return out


def _fuse(model, official: Mapping[str, np.ndarray], work_dtype: str, path: str) -> dict[str, np.ndarray]:
    """Load ``official`` into the Paddle ``model``, re-parameterize it, return the fused state (torch names)."""
    from ..reparam import reparameterize_model

    model.to(dtype=work_dtype)
    missing, unexpected = model.set_state_dict(interop.from_torch(official, dtype=work_dtype))
    if missing or unexpected:  # check_state ran before: this would be a bug in the model zoo
        raise CheckpointError(f"{path}: Paddle model rejected keys: missing {missing}, unexpected {unexpected}")
    reparameterize_model(model, inplace=True)
    fused = interop.to_torch(model.state_dict(), dtype=None, num_batches_tracked=0)
    for key in fused:  # surviving BNs keep their counters
        if _leaf(key) == NBT and key in official:
            fused[key] = official[key]
    return fused


def _run_verify(arch: str, model_args: Mapping[str, Any], official: Mapping[str, np.ndarray],
                fused: Mapping[str, np.ndarray] | None, vdtype: str, input_size: int, to: str,
                path: str) -> list[verify_mod.OutputComparison]:
    x = verify_mod.seeded_input(vdtype, input_size, channels=int(model_args.get("in_channels", 3)))
    reference = verify_mod.torch_outputs(arch, model_args, _cast(official, vdtype), x, path)
    pairs = [("paddle vs torch (eval)", official, False)]
    if fused is not None:
        pairs.append(("paddle fused vs torch (eval)", fused, True))
    results = []
    for what, state, is_fused in pairs:
        out = verify_mod.paddle_outputs(arch, model_args, interop.from_torch(state, dtype=vdtype), x, is_fused, path)
        results.append(verify_mod.compare(what, out, reference, vdtype))
    if to in ("torch", "hdf5") and fused is not None:  # the written file holds torch's fused model
        out = verify_mod.torch_outputs(arch, model_args, _cast(fused, vdtype), x, path, fused=True)
        results.append(verify_mod.compare("torch fused (written) vs torch (eval)", out, reference, vdtype))
    for r in results:
        logger.info("verify %s", r)
    return results


def _target_state(official: Mapping[str, np.ndarray], to: str, dtype: str | None,
                  report: ConversionReport, progress: bool | None, bf16: frozenset[str] = frozenset()
                  ) -> dict[str, np.ndarray]:
    """``official`` under the target's names; keys in ``bf16`` are rounded to bfloat16 bit patterns."""
    out: dict[str, np.ndarray] = {}
    disable = None if progress is None else not progress
    with logging_redirect_tqdm():
        for key, value in tqdm(official.items(), total=len(official), desc="convert", unit="tensor",
                               disable=disable, leave=False):
            if to == "torch":
                if key in bf16:
                    out[key] = float32_to_bfloat16_bits(value)
                else:
                    out[key] = value if _leaf(key) == NBT else value.astype(dtype or value.dtype, copy=False)
                continue
            mapped = interop.from_torch({key: value}, dtype="float32" if key in bf16 else dtype)
            if key in bf16:
                mapped = {k: float32_to_bfloat16_bits(v) for k, v in mapped.items()}
            if not mapped:
                report.dropped.append(key)
            elif _leaf(key) == interop.LINEAR_WEIGHT_LEAF and value.ndim == 2:
                report.transposed.append(key)
            out.update(mapped)
    return out


def convert_checkpoint(src: str | Path, dst: str | Path, arch: str | None = None, deploy: bool = False,
                       verify: bool = False, to: str = "paddle", dtype: str = "float32",
                       model_args: Mapping[str, Any] | None = None, input_size: int | None = None,
                       progress: bool | None = None) -> ConversionReport:
    """Convert the checkpoint ``src`` into ``dst`` (plus ``dst + '.json'``); see the module docstring.

    Without ``arch`` the conversion is a pure key/tensor mapping. With ``arch`` the state dict is
    checked strictly against ``paddle_rep.create_model(arch, **model_args)`` (arguments the checkpoint
    fixes are inferred, contradictions are errors); ``deploy`` writes the re-parameterized model;
    ``verify`` compares the Paddle model's eval outputs with the torch reference's on a seeded input
    of ``input_size`` pixels and raises :class:`VerificationError` above tolerance. Nothing is written
    when any step fails. ``dtype`` is float32, float64, float16, bfloat16 or "keep". ``to`` is "paddle",
    "torch" or "hdf5" (official names in ACNet's HDF5 layout; also chosen by an ``.hdf5``/``.h5`` ``dst``).
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
                          container, source_sha256)
    report.seconds = time.perf_counter() - start
    return report


def _convert(src: Path, dst: Path, arch: str | None, deploy: bool, verify: bool, to: str, dtype: str,
             model_args: Mapping[str, Any] | None, input_size: int | None, progress: bool | None,
             container: str, source_sha256: Future) -> ConversionReport:
    loaded = read_checkpoint(src)
    path = loaded.path
    report = ConversionReport(str(src), str(dst), to, dtype, loaded.container, loaded.framework, "", loaded.unwrapped,
                              0, arch=arch, deploy=deploy)
    official = _to_official(loaded, report)
    _check_dtypes(official, path)
    report.non_weight_entries = _describe_extras(loaded.extras)
    if loaded.extras:
        logger.warning("%s: left out non-weight entries %s (recorded in the sidecar)", path, ", ".join(loaded.extras))
    report.source_bfloat16 = [interop.paddle_key_to_torch(k) if loaded.framework == "paddle" else k
                              for k in loaded.bf16_keys]
    report.non_finite = _non_finite(official)
    if report.non_finite:
        logger.warning("%s: %d tensors hold NaN or Inf: %s", path, len(report.non_finite),
                       ", ".join(report.non_finite[:20]) + (" ..." if len(report.non_finite) > 20 else ""))
    counters = {k: int(v) for k, v in official.items() if _leaf(k) == NBT}

    fused = None
    if arch is not None:
        args = arch_mod.merge_model_args(arch_mod.infer_model_args(official, path), model_args, path)
        report.model_args = args
        arch_mod.check_state(interop.from_torch(official, dtype=None), arch_mod.expected_shapes(arch, args), arch, path)
        floats = {v.dtype for k, v in official.items() if _leaf(k) != NBT}
        work_dtype = "float64" if dtype == "float64" or (dtype == "keep" and floats == {np.dtype("float64")}) \
            else "float32"
        if deploy:
            fused = _fuse(arch_mod.build_paddle_model(arch, args), official, work_dtype, path)
        if verify and report.non_finite:
            raise VerificationError(
                f"{path}: the checkpoint itself holds non-finite values (NaN or Inf) in {len(report.non_finite)} "
                f"tensors ({', '.join(report.non_finite[:10])}{' ...' if len(report.non_finite) > 10 else ''}); "
                "outputs cannot be compared, nothing written")
        if verify:
            size = input_size or verify_mod.default_input_size(arch)
            results = _run_verify(arch, args, official, fused, work_dtype, size, to, path)
            report.verify = [r.to_dict() for r in results]
            failed = [r for r in results if not r.ok]
            if failed:
                raise VerificationError(f"{path}: verification failed, nothing written:\n  "
                                        + "\n  ".join(str(r) for r in results), tuple(results))

    final = fused if fused is not None else official
    if dtype == BFLOAT16:
        bf16 = frozenset(k for k in final if _leaf(k) != NBT)
    elif dtype == "keep" and container in BF16_CONTAINERS:
        bf16 = frozenset(report.source_bfloat16) & frozenset(final)
    else:
        bf16 = frozenset()
        if dtype == "keep" and report.source_bfloat16:
            logger.warning("%s: HDF5 has no bfloat16: %d bfloat16 tensors written as float32 (exact)", dst,
                           len(report.source_bfloat16))
    out = _target_state(final, "torch" if to == "hdf5" else to, DTYPES[dtype], report, progress, bf16)
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
