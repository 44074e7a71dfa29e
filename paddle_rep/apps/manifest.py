"""An export's manifest, ``PREFIX-manifest.json``: what :func:`~paddle_rep.apps.exporter.export` wrote,
and enough to rebuild its :class:`~paddle_rep.apps.exporter.ExportedModel` in a fresh process.

It lists every file (name relative to the manifest, size, sha256), the input (name, ``[N, C, H, W]``
with ``null`` for a dynamic dim, dtype, and the dtype rule of the predictors' input contract), the
precisions each backend can run, ODConv's fold batch sizes, the library and runtime versions, and
the checks run on the export with their figures. It is written atomically (a temporary file moved
over the old one), so a reader never sees half of it.
"""

import dataclasses
import importlib.metadata
import json
import os
import platform
from pathlib import Path
from typing import Any

from paddle_rep.core.errors import ManifestError

from .convert.write import sha256_file, write_atomically

FORMAT = "paddle-rep-export/1"
# Not "PREFIX.manifest.json": paddle.jit.load(PREFIX) reads every PREFIX.<name>.json as another program of the model.
SUFFIX = "-manifest.json"
DTYPE_RULE = "float32 as is; float16 and float64 converted to float32; other dtypes refused"
_VERSIONED = ("paddle-rep", "paddlepaddle", "paddle2onnx", "onnx", "onnxruntime", "openvino", "numpy")


def manifest_path(prefix: str | Path) -> Path:
    """The manifest's path for an export prefix.

    Args:
        prefix: The export prefix (``"out/model"``), or a path already ending in ``-manifest.json``.

    Returns:
        ``PREFIX-manifest.json`` (a path already ending in it as is).
    """
    text = str(prefix)
    return Path(text if text.endswith(SUFFIX) else text + SUFFIX)


def versions() -> dict[str, str | None]:
    """Installed versions of Python, the library, Paddle, the converters and the runtimes.

    Returns:
        Package name (and ``"python"``) -> its version, None where the package is not installed.
    """
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in _VERSIONED:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def file_roles(exported: Any) -> dict[str, str]:
    """Every file of an export with its role in the manifest.

    Args:
        exported: an :class:`~paddle_rep.apps.exporter.ExportedModel`.

    Returns:
        Role -> path (``model``, ``params``, ``onnx``, ``fold_b<N>.model``, ``int8.<backend>`` ...).
    """
    roles = {"model": exported.model_file, "params": exported.params_file}
    if exported.onnx_file:
        roles["onnx"] = exported.onnx_file
    for size, (model_file, params_file) in sorted(exported.fold_paddle_files.items()):
        roles[f"fold_b{size}.model"], roles[f"fold_b{size}.params"] = model_file, params_file
    for size, onnx_file in sorted(exported.fold_onnx_files.items()):
        roles[f"fold_b{size}.onnx"] = onnx_file
    int8 = getattr(exported, "int8", None)
    if int8 is not None:
        for backend, file in sorted(int8.onnx_file.items()):
            roles.update(_int8_roles(f"int8.{backend}", backend, file))
        for backend, sizes in sorted(int8.fold_files.items()):
            for size, file in sorted(sizes.items()):
                roles.update(_int8_roles(f"fold_b{size}.int8.{backend}", backend, file))
    return roles


def _int8_roles(role: str, backend: str, file: str) -> dict[str, str]:
    """An int8 file's roles: OpenVINO's IR is an ``.xml`` and its ``.bin`` (role ``<role>.bin``), Paddle's
    program a ``.pdmodel`` and its ``.pdiparams`` (role ``<role>.params``)."""
    if backend == "paddle":
        return {role: file, f"{role}.params": str(Path(file).with_suffix(".pdiparams"))}
    if backend != "openvino":
        return {role: file}
    return {role: file, f"{role}.bin": str(Path(file).with_suffix(".bin"))}


def int8_precisions(exported: Any) -> dict[str, list[str]]:
    """The int8 precisions an export offers.

    Args:
        exported: an ``ExportedModel``.

    Returns:
        Backend -> ``["int8"]`` for each backend with int8 files for the plain graph and every fold graph.
    """
    int8 = getattr(exported, "int8", None)
    if int8 is None:
        return {}
    return {backend: ["int8"] for backend in int8.onnx_file
            if set(int8.fold_files.get(backend, {})) >= set(exported.fold_onnx_files)}


def write_manifest(exported: Any, input_name: str, dtype: str, checks: list[dict], int8: dict | None = None) -> Path:
    """Write (atomically) the manifest of ``exported`` next to its files.

    Args:
        exported: the :class:`~paddle_rep.apps.exporter.ExportedModel` (its files must exist: each is hashed).
        input_name: the graph's input name.
        dtype: the input dtype.
        checks: check records (``{"name", "passed", "figure", ...}``) run on the export.
        int8: the calibration sample count and the quantizer options, recorded as given (None: no int8).

    Returns:
        The manifest's path, ``PREFIX-manifest.json``.
    """
    target = manifest_path(exported.model_file.rsplit(".", 1)[0])
    folder = target.parent
    files = {role: {"name": os.path.relpath(path, folder), "bytes": Path(path).stat().st_size,
                    "sha256": sha256_file(path)} for role, path in file_roles(exported).items()}
    channels, height, width = exported.input_shape
    onnx_precisions = ["f32"] if exported.onnx_file else []
    int8_offered = int8_precisions(exported)
    data = {
        "format": FORMAT,
        "input": {"name": input_name, "shape": [exported.batch_size, channels, height, width], "dtype": dtype,
                  "dtype_rule": DTYPE_RULE},
        "files": files,
        "fold_batch_sizes": sorted(exported.fold_onnx_files),
        "precisions": {"paddle": ["f32"] + int8_offered.get("paddle", []),
                       "onnxruntime": onnx_precisions + int8_offered.get("onnxruntime", []),
                       "openvino": onnx_precisions + ["bf16"] + int8_offered.get("openvino", []) if onnx_precisions
                       else []},
        "versions": versions(),
        "checks": checks,
    }
    if int8 is not None:
        data["int8"] = int8
    write_atomically(target, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))
    return target


def add_checks(path: str | Path, checks: list[dict]) -> None:
    """Append check records to a manifest, atomically.

    Args:
        path: the manifest (``PREFIX-manifest.json``) or the export prefix.
        checks: check records (``{"name", "passed", "figure", ...}``).

    Raises:
        ManifestError: the manifest is missing, unreadable or not a paddle-rep export manifest.
    """
    target = manifest_path(path)
    data = _read(target)
    data["checks"] = data.get("checks", []) + checks
    write_atomically(target, lambda f: f.write((json.dumps(data, indent=2) + "\n").encode()))


def _read(target: Path) -> dict:
    if not target.is_file():
        raise ManifestError(f"{target}: no export manifest there (export writes PREFIX{SUFFIX})", str(target))
    try:
        data = json.loads(target.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ManifestError(f"{target}: unreadable manifest: {error}", str(target)) from error
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        got = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ManifestError(f"{target}: not a paddle-rep export manifest (format {got!r}, expected {FORMAT!r})",
                            str(target))
    return data


def load_manifest(path: str | Path) -> tuple[Any, dict]:
    """Read an export's manifest and rebuild its ``ExportedModel``, every file verified.

    Args:
        path: ``PREFIX-manifest.json`` or ``PREFIX``.

    Returns:
        ``(ExportedModel, manifest dict)``; the model's ``int8`` is set where the manifest lists int8 files.

    Raises:
        ManifestError: the manifest is missing, unreadable, not a paddle-rep export manifest or lacks its
            ``files`` / ``input`` entries, or a file it lists is missing or differs in size or sha256 from
            what the export wrote (the message and ``path`` name the file).
    """
    from .exporter import ExportedModel  # the exporter imports this module
    from .quantize.ptq import Int8Files

    target = manifest_path(path)
    data = _read(target)
    paths = {}
    try:
        entries = data["files"].items()
        shape = data["input"]["shape"]
    except (KeyError, AttributeError, TypeError) as error:
        raise ManifestError(f"{target}: manifest lacks {error}", str(target)) from error
    for role, entry in entries:
        file = target.parent / entry["name"]
        if not file.is_file():
            raise ManifestError(f"{file}: listed in {target} as {role!r} but missing", str(file))
        if file.stat().st_size != entry["bytes"] or sha256_file(file) != entry["sha256"]:
            raise ManifestError(f"{file}: edited since export (size or sha256 differs from {target})", str(file))
        paths[role] = str(file)
    sizes = data.get("fold_batch_sizes", [])
    exported = ExportedModel(
        paths["model"], paths["params"], paths.get("onnx"),
        {size: paths[f"fold_b{size}.onnx"] for size in sizes if f"fold_b{size}.onnx" in paths},
        {size: (paths[f"fold_b{size}.model"], paths[f"fold_b{size}.params"]) for size in sizes
         if f"fold_b{size}.model" in paths},
        input_shape=tuple(shape[1:]), batch_size=shape[0], manifest_file=str(target))
    int8_plain = {role.split(".", 1)[1]: path for role, path in paths.items()
                  if role.startswith("int8.") and not role.endswith((".bin", ".params"))}
    if int8_plain:
        folds = {backend: {size: paths[f"fold_b{size}.int8.{backend}"] for size in sizes
                           if f"fold_b{size}.int8.{backend}" in paths} for backend in int8_plain}
        exported = dataclasses.replace(exported, int8=Int8Files(int8_plain, folds,
                                                                (data.get("int8") or {}).get("keep_float", {})))
    return exported, data
