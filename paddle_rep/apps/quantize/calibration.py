"""Calibration data for int8: one checked ``[N, C, H, W]`` float32 array from whatever the user has.

Accepted sources (:func:`load_calibration`):

- an ndarray ``[N, C, H, W]`` of floats, already preprocessed as the model expects;
- a ``.npy`` file holding one (read without pickle);
- a folder of images, read with Pillow and preprocessed like the model family's evaluation
  (:class:`Preprocess`: resize the shorter side to ``crop / crop_ratio``, centre crop, scale to
  [0, 1], subtract the mean and divide by the std per channel; override any field);
- an iterable of such arrays (batches), concatenated in order.

Every sample is checked: rank, channels, spatial size (where the export fixes it), NaN/Inf. A
problem raises :class:`~paddle_rep.core.errors.CalibrationError` naming the file or the sample
index; fewer samples than asked for warn (:class:`CalibrationWarning`) and say how many there are.
"""

import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from paddle_rep.core.errors import CalibrationError, MissingPackageError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class CalibrationWarning(UserWarning):
    """The calibration data is usable but smaller than asked for."""


@dataclass(frozen=True)
class Preprocess:
    """How a folder of images becomes model input (the zoo's ImageNet evaluation transform by default).

    ``crop_ratio``: the crop's share of the resized shorter side (0.875: 256 -> 224). ``mean`` and
    ``std`` are per channel on [0, 1] pixels; a one-channel model reads greyscale images with the
    channel means of ``mean`` and ``std``.
    """

    crop_ratio: float = 0.875
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    resample: str = "bilinear"


def family_preprocess(arch: str | None = None) -> Preprocess:
    """The preprocessing of ``arch``'s family for calibration images.

    Every zoo family (RepVGG, RepVGGplus, QARepVGG, ACNet, ODConv, MobileOne, DBB) evaluates ImageNet with
    resize 256 -> centre crop 224 and ImageNet mean/std, so all get that.

    Args:
        arch: A registry name (or None).

    Returns:
        The family's :class:`Preprocess`.
    """
    del arch  # one transform serves every family today; the argument keeps call sites family-aware
    return Preprocess()


def load_calibration(data: Any, input_shape: Sequence, size: int | None = None,
                     preprocess: Preprocess | None = None) -> np.ndarray:
    """Read and check calibration data; returns a contiguous float32 ``[N, C, H, W]`` array.

    Args:
        data: an ndarray, a ``.npy`` path, a folder of images, or an iterable of ndarray batches.
        input_shape: the export's ``(C, H, W)``; H and W may be None (dynamic), except for a folder.
        size: use the first ``size`` samples; fewer available warn with the count.
        preprocess: for a folder of images (default :func:`family_preprocess`).

    Returns:
        The calibration samples.

    Raises:
        CalibrationError: wrong rank, channels or size, NaN/Inf, an empty or unreadable source, or
            a file that is not an image; the error's ``source`` names the file or sample index.
        MissingPackageError: a folder of images without Pillow installed.
    """
    channels, height, width = (None if d is None else int(d) for d in input_shape)
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise ValueError(f"size must be a positive int or None, got {size!r}")
    if isinstance(data, (str, Path)):
        path = Path(data)
        if not path.exists():
            raise CalibrationError(f"calibration data {path} does not exist", str(path))
        if path.is_dir():
            array = _read_folder(path, channels, height, width, size, preprocess or family_preprocess())
        elif path.suffix == ".npy":
            array = _checked(_read_npy(path), channels, height, width, 0, str(path))
        else:
            raise CalibrationError(f"calibration data {path} is neither a folder of images nor a .npy file", str(path))
    elif isinstance(data, np.ndarray):
        array = _checked(data, channels, height, width, 0, None)
    elif isinstance(data, Iterable):
        parts, count = [], 0
        for index, batch in enumerate(data):
            if not isinstance(batch, np.ndarray):
                raise CalibrationError(f"calibration batch {index} is a {type(batch).__name__}, not an ndarray", index)
            parts.append(_checked(batch, channels, height, width, count, f"batch {index}"))
            count += len(batch)
            if size is not None and count >= size:
                break
        if not parts:
            raise CalibrationError("the calibration iterable yielded no batches")
        array = np.concatenate(parts)
    else:
        raise CalibrationError(f"calibration data must be an ndarray, a .npy file, a folder of images or an "
                               f"iterable of batches, got {type(data).__name__}")
    if size is not None and len(array) < size:
        warnings.warn(f"calibration: {size} samples asked for, only {len(array)} available; calibrating on "
                      f"{len(array)}", CalibrationWarning, stacklevel=2)
    return np.ascontiguousarray(array[:size] if size else array)


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise CalibrationError(f"cannot read calibration array {path}: {error}", str(path)) from error


def _checked(array: np.ndarray, channels: int | None, height: int | None, width: int | None, offset: int,
             where: str | None) -> np.ndarray:
    """``array`` as float32 after the shape and finiteness checks; indices are reported from ``offset``."""
    origin = f" ({where})" if where else ""
    if array.ndim == 4 and not len(array):
        raise CalibrationError(f"the calibration data holds no samples{origin}", where)
    if array.ndim != 4:
        raise CalibrationError(f"calibration data must be [N, C, H, W], got shape {array.shape}{origin}", where)
    if not np.issubdtype(array.dtype, np.floating):
        raise CalibrationError(f"calibration data must be preprocessed floats, got dtype {array.dtype}{origin}", where)
    expected = (channels, height, width)
    for axis, (want, got) in enumerate(zip(expected, array.shape[1:], strict=True)):
        if want is not None and want != got:
            raise CalibrationError(f"calibration data has shape {array.shape}{origin}; the model takes "
                                   f"[N, {channels}, {height}, {width}] (axis {axis + 1} is {got}, not {want})", where)
    finite = np.isfinite(array).reshape(len(array), -1).all(axis=1)
    if not finite.all():
        index = offset + int(np.flatnonzero(~finite)[0])
        raise CalibrationError(f"calibration sample {index}{origin} holds NaN or Inf", index)
    return array.astype(np.float32, copy=False)


def _read_folder(folder: Path, channels: int | None, height: int | None, width: int | None, size: int | None,
                 preprocess: Preprocess) -> np.ndarray:
    try:
        from PIL import Image, UnidentifiedImageError
    except ImportError as error:
        raise MissingPackageError("calibrating on a folder of images needs Pillow: pip install pillow, or "
                                  "pip install 'paddle-rep[int8]'", "pillow", "int8") from error
    if height is None or width is None or channels not in (1, 3):
        raise CalibrationError(f"a folder of images needs a fixed input shape with 1 or 3 channels, got "
                               f"({channels}, {height}, {width}); export with H and W set", str(folder))
    try:
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    except OSError as error:
        raise CalibrationError(f"cannot list calibration folder {folder}: {error}", str(folder)) from error
    if not files:
        raise CalibrationError(f"calibration folder {folder} holds no files", str(folder))
    mean = np.asarray(preprocess.mean, np.float32)
    std = np.asarray(preprocess.std, np.float32)
    if channels == 1:
        mean, std = mean.mean(keepdims=True), std.mean(keepdims=True)
    resample = getattr(Image.Resampling, preprocess.resample.upper())
    samples = []
    for file in files[:size] if size else files:
        try:
            with Image.open(file) as image:
                image = image.convert("L" if channels == 1 else "RGB")
                samples.append(_resize_crop(image, height, width, preprocess.crop_ratio, resample))
        except (UnidentifiedImageError, OSError, ValueError) as error:
            raise CalibrationError(f"calibration file {file} is not a readable image: {error}", str(file)) from error
    array = np.stack(samples).astype(np.float32) / 255.0
    array = array[:, None] if array.ndim == 3 else array.transpose(0, 3, 1, 2)
    return np.ascontiguousarray((array - mean[:, None, None]) / std[:, None, None], dtype=np.float32)


def _resize_crop(image, height: int, width: int, crop_ratio: float, resample) -> np.ndarray:
    """Resize so the crop covers ``crop_ratio`` of the shorter side, then take the centre ``height x width``."""
    scale = max(height, width) / crop_ratio / min(image.size)
    resized = image.resize((max(width, round(image.size[0] * scale)), max(height, round(image.size[1] * scale))),
                           resample)
    left = (resized.size[0] - width) // 2
    top = (resized.size[1] - height) // 2
    return np.asarray(resized.crop((left, top, left + width, top + height)))
