"""Write converted state dicts atomically, with a JSON sidecar describing the conversion.

Each file is built in the destination's folder and moved into place with ``os.replace`` only once
it is complete, so an existing destination is either left byte-identical or replaced whole. On
Linux the file under construction is unnamed (``O_TMPFILE``): a killed run leaves nothing, as the
kernel frees an unnamed file with its last descriptor. It gets a name only for the instant between
``linkat`` and the rename. Elsewhere (or where the filesystem refuses ``O_TMPFILE``) it is a
temporary named ``.<dst name>.paddle-rep-<pid>-<random>.tmp``; every later write into the folder
removes such files whose process is gone (only these names, never other files). The owner is
checked with ``kill(pid, 0)`` on this machine, so this cleanup runs on POSIX systems only, and a
file whose pid has been reused by a live process waits for a later run.

Containers by suffix: ``.pdparams`` (a pickled dict of numpy arrays, read by ``paddle.load``),
``.pth``/``.pt`` (``torch.save``), ``.safetensors`` (written here, no framework), ``.hdf5``/``.h5``
(ACNet's ``save_hdf5`` layout: one dataset per key, ``/`` stored as ``+``; needs h5py). A uint16
array in a state dict handed to the writers holds bfloat16 bit patterns: Paddle pickles bfloat16
that way, torch gets a bfloat16 tensor, safetensors a ``BF16`` entry; HDF5 has no bfloat16 type.
"""

import contextlib
import hashlib
import json
import logging
import os
import pickle
import platform
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from paddle_rep.core.numeric import contiguous

logger = logging.getLogger(__name__)

SIDECAR_FORMAT = "paddle-rep-convert/1"
PADDLE_SUFFIXES = (".pdparams",)
TORCH_SUFFIXES = (".pth", ".pt", ".tar", ".bin")
SAFETENSORS_SUFFIXES = (".safetensors",)
HDF5_SUFFIXES = (".hdf5", ".h5")
TEMP_TAG = "paddle-rep"
# Named temporaries of this module: ".<destination name>.paddle-rep-<pid>-<mkstemp letters>.tmp"
_TEMP_NAME = re.compile(r"^\.(?P<dst>.+)\.paddle-rep-(?P<pid>\d+)-[A-Za-z0-9_]+\.tmp$")
# Containers that can hold bfloat16 (a uint16 array in the state dict holds its bit patterns).
BF16_CONTAINERS = ("paddle", "torch", "safetensors")
_ST_NAMES = {"float64": "F64", "float32": "F32", "float16": "F16", "uint16": "BF16", "int64": "I64",
             "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}
PICKLE_PROTOCOL = 5  # see _save_paddle


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(dst: str | Path) -> Path:
    return Path(str(dst) + ".json")


def container_for(dst: str | Path, to: str) -> str:
    """The container ``dst``'s suffix asks for; a ValueError when it does not suit ``to``.

    ``to`` is "paddle", "torch" or "hdf5"; an HDF5 destination always holds official (torch) names.
    """
    suffix = Path(dst).suffix.lower()
    if suffix in HDF5_SUFFIXES and to in ("hdf5", "torch", "paddle"):
        return "hdf5"
    if to == "hdf5":
        raise ValueError(f"destination {dst}: an HDF5 checkpoint needs one of the suffixes "
                         f"{', '.join(HDF5_SUFFIXES)}, not {suffix or '(none)'!r}")
    if suffix in SAFETENSORS_SUFFIXES:
        return "safetensors"
    if to == "paddle" and suffix in PADDLE_SUFFIXES:
        return "paddle"
    if to == "torch" and suffix in TORCH_SUFFIXES:
        return "torch"
    allowed = PADDLE_SUFFIXES if to == "paddle" else TORCH_SUFFIXES
    raise ValueError(f"destination {dst}: a {to} checkpoint needs one of the suffixes "
                     f"{', '.join(allowed + SAFETENSORS_SUFFIXES + HDF5_SUFFIXES)}, not {suffix or '(none)'!r}")


def _process_alive(pid: int) -> bool:
    if os.name != "posix":  # Windows' os.kill would terminate the process: never judge, never delete
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temporaries(directory: str | Path) -> list[Path]:
    """Delete the named temporaries that a killed paddle-rep run left in ``directory``; returns them.

    Only regular files named like this module's temporaries whose writing process no longer exists
    are removed; anything else in the folder is never touched.
    """
    removed = []
    try:
        entries = list(Path(directory).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if match is None or int(match["pid"]) == os.getpid() or _process_alive(int(match["pid"])):
            continue
        if entry.is_symlink() or not entry.is_file():
            continue
        with contextlib.suppress(FileNotFoundError):  # another run may have removed it meanwhile
            entry.unlink()
            removed.append(entry)
            logger.info("removed %s, left by a paddle-rep run that was killed", entry)
    return removed


def _new_file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _supports_unnamed() -> bool:
    return hasattr(os, "O_TMPFILE") and os.link in os.supports_dir_fd and Path("/proc/self/fd").is_dir()


class _PendingFile:
    """A file under construction next to ``dst``: unnamed (O_TMPFILE) where possible, else a named temporary."""

    def __init__(self, dst: Path) -> None:
        self.dst = dst
        self.named: Path | None = None
        fd = None
        if _supports_unnamed():
            try:
                fd = os.open(dst.parent, os.O_TMPFILE | os.O_RDWR, 0o600)
            except OSError:  # e.g. a filesystem without O_TMPFILE support
                fd = None
        if fd is None:
            fd, name = tempfile.mkstemp(prefix=self._prefix(), suffix=".tmp", dir=dst.parent)
            self.named = Path(name)
        self.file = os.fdopen(fd, "w+b")

    def _prefix(self) -> str:
        return f".{self.dst.name}.{TEMP_TAG}-{os.getpid()}-"

    def finish(self) -> None:
        """Flush, set the usual file mode and fsync; the content is complete."""
        self.file.flush()
        if hasattr(os, "fchmod"):  # mkstemp and O_TMPFILE create 0600; give the output the usual mode
            os.fchmod(self.file.fileno(), _new_file_mode())
        os.fsync(self.file.fileno())

    def link_name(self) -> Path:
        """Give an unnamed file a (temporary) name; a named one already has it."""
        if self.named is None:
            # linkat(AT_SYMLINK_FOLLOW) on /proc/self/fd/N names the open unnamed file. os.link calls
            # linkat (not link, which would link the /proc symlink itself) only when given a dir fd.
            # The name comes from mkstemp, freed just before.
            fd, name = tempfile.mkstemp(prefix=self._prefix(), suffix=".tmp", dir=self.dst.parent)
            os.close(fd)
            Path(name).unlink()
            root = os.open("/", os.O_RDONLY)
            try:
                os.link(f"/proc/self/fd/{self.file.fileno()}", name, src_dir_fd=root, follow_symlinks=True)
            finally:
                os.close(root)
            self.named = Path(name)
        return self.named

    def discard(self) -> None:
        self.file.close()
        if self.named is not None:
            self.named.unlink(missing_ok=True)  # after os.replace the name is already gone


@contextlib.contextmanager
def pending_file(dst: Path) -> Iterator[_PendingFile]:
    """A :class:`_PendingFile` for ``dst``, discarded on leaving unless moved into place before."""
    pending = _PendingFile(dst)
    try:
        yield pending
    finally:
        pending.discard()


class _HashingWriter:
    """A write-only file wrapper that hashes what passes through (saves re-reading the output).

    Each chunk is hashed on a worker thread while the next one is written (hashlib and file
    writes release the GIL), so hashing costs little wall time; at most one chunk waits.
    """

    def __init__(self, file, pool: ThreadPoolExecutor) -> None:
        self._file = file
        self._pool = pool
        self._pending: Future | None = None
        self._digest = hashlib.sha256()

    def write(self, data) -> int:
        if self._pending is not None:
            self._pending.result()  # chunks must be hashed in order
        self._pending = self._pool.submit(self._digest.update, data)
        return self._file.write(data)

    def hexdigest(self) -> str:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        return self._digest.hexdigest()


def _save_paddle(state: Mapping[str, np.ndarray], f) -> str:
    # paddle.save(dict_of_numpy, path) is pickle.dump(..., protocol=4), which copies every array into a bytes
    # object first. Protocol 5 writes each array from its own memory: on a 470 MiB checkpoint about 25 %
    # faster and a third less peak memory. paddle.load reads it on any Python >= 3.8 (test_convert.py
    # checks), Paddle need not be imported, and the bytes are hashed as they are written.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as pool:
        writer = _HashingWriter(f, pool)
        pickle.dump(dict(state), writer, protocol=PICKLE_PROTOCOL)
        return writer.hexdigest()


def _save_torch(state: Mapping[str, np.ndarray], f) -> None:
    try:
        import torch
    except ImportError as err:
        from paddle_rep.core.errors import MissingPackageError

        raise MissingPackageError("writing a torch checkpoint (.pth) needs torch (pip install 'paddle-rep[torch]')",
                                  package="torch", extra="torch") from err

    def tensor(array: np.ndarray):
        value = torch.from_numpy(contiguous(array, writeable=True))
        return value.view(torch.bfloat16) if array.dtype == np.uint16 else value

    torch.save({k: tensor(v) for k, v in state.items()}, f)


def _save_safetensors(state: Mapping[str, np.ndarray], f, to: str) -> None:
    header: dict[str, Any] = {"__metadata__": {"format": "pt" if to == "torch" else "paddle",
                                               "written_by": "paddle-rep"}}
    offset = 0
    for key, value in state.items():
        name = _ST_NAMES.get(value.dtype.name)
        if name is None:
            raise ValueError(f"key {key!r}: safetensors has no dtype for {value.dtype}")
        header[key] = {"dtype": name, "shape": list(value.shape), "data_offsets": [offset, offset + value.nbytes]}
        offset += value.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data starts 8-byte aligned, as the safetensors library writes it
    f.write(len(text).to_bytes(8, "little") + text)
    for value in state.values():
        f.write(contiguous(value.astype(value.dtype.newbyteorder("<"), copy=False), writeable=True).data)


def _save_hdf5(state: Mapping[str, np.ndarray], f) -> None:
    from .load import import_h5py

    with import_h5py("writing HDF5").File(f, "w") as out:
        for key, value in state.items():
            out.create_dataset(key.replace("/", "+"), data=value)


SAVERS: dict[str, Callable[..., str | None]] = {"paddle": _save_paddle, "torch": _save_torch, "hdf5": _save_hdf5}


def write_state(state: Mapping[str, np.ndarray], f, container: str, to: str) -> str | None:
    """Write ``state`` to the open binary file ``f``; returns its sha256 when the writer computed it on the way."""
    if container == "safetensors":
        _save_safetensors(state, f, to)
        return None
    return SAVERS[container](state, f)


def _sha256_open(f) -> str:
    f.flush()
    f.seek(0)
    digest = hashlib.sha256()
    while block := f.read(1 << 20):
        digest.update(block)
    return digest.hexdigest()


def versions() -> dict[str, str | None]:
    """Installed versions, read from package metadata (no framework is imported)."""
    def version(*names: str) -> str | None:
        for name in names:
            try:
                return metadata.version(name)
            except metadata.PackageNotFoundError:
                continue
        return None

    return {
        "paddle-rep": version("paddle-rep"),
        "paddle": version("paddlepaddle", "paddlepaddle-gpu"),
        "torch": version("torch"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def write_outputs(dst: Path, state: Mapping[str, np.ndarray], container: str, to: str,
                  sidecar: dict[str, Any] | Callable[[], dict[str, Any]]) -> str:
    """Write ``state`` to ``dst`` and ``sidecar`` to ``dst + '.json'``, atomically; returns the output sha256.

    ``sidecar`` may be a function returning the dict, called once the state is written (so work
    such as hashing the source can overlap the write). Stale temporaries of killed runs in the
    destination folder are removed first (see the module docstring).
    """
    json_dst = sidecar_path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dst.parent)
    with pending_file(dst) as data, pending_file(json_dst) as meta:
        digest = write_state(state, data.file, container, to) or _sha256_open(data.file)
        if callable(sidecar):
            sidecar = sidecar()
        sidecar["output"]["sha256"] = digest
        meta.file.write((json.dumps(sidecar, indent=2, sort_keys=False, default=str) + "\n").encode())
        data.finish()
        meta.finish()
        # Both files are complete before either rename, so a failure leaves the old pair in place.
        data_name, meta_name = data.link_name(), meta.link_name()
        data_name.replace(dst)  # os.replace: atomic within one filesystem
        meta_name.replace(json_dst)
    _fsync_dir(dst.parent)
    logger.info("wrote %s (sha256 %s) and %s", dst, digest[:12], json_dst)
    return digest


def write_atomically(dst: str | Path, write: Callable[[Any], None]) -> None:
    """Create or replace ``dst`` with what ``write(binary_file)`` writes, atomically (see the module docstring).

    ``dst`` is either left untouched (an exception in ``write``, a full disk, a kill) or replaced by
    the complete, fsynced file. Stale temporaries of killed runs in its folder are removed first.
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(dst.parent)
    with pending_file(dst) as pending:
        write(pending.file)
        pending.finish()
        pending.link_name().replace(dst)
    _fsync_dir(dst.parent)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every platform/filesystem can open a directory
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_sidecar(dst: str | Path) -> dict[str, Any]:
    """Check a converted file against its sidecar's sha256; returns the sidecar, raises CheckpointError if not."""
    from paddle_rep.core.errors import CheckpointError

    dst = Path(dst)
    json_dst = sidecar_path(dst)
    if not dst.is_file():
        raise CheckpointError(f"{dst}: no such file", path=str(dst))
    try:
        sidecar = json.loads(json_dst.read_text())
    except FileNotFoundError as err:
        raise CheckpointError(f"{dst}: no sidecar {json_dst.name} next to it; nothing to check against",
                              path=str(dst)) from err
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{dst}: sidecar {json_dst.name} is unreadable: {err}", path=str(dst)) from err
    recorded = sidecar.get("output", {}).get("sha256") if isinstance(sidecar, dict) else None
    if not isinstance(recorded, str) or sidecar.get("format") != SIDECAR_FORMAT:
        raise CheckpointError(f"{dst}: {json_dst.name} is not a paddle-rep sidecar (format {SIDECAR_FORMAT})",
                              path=str(dst))
    actual = sha256_file(dst)
    if actual != recorded:
        raise CheckpointError(f"{dst}: sha256 {actual[:16]}... does not match {recorded[:16]}... recorded in "
                              f"{json_dst.name}: the file was changed or only partly replaced", path=str(dst))
    return sidecar
